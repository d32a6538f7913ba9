"""Input checks shared by every layer: each raises an InputError naming field and values."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from cellbridge.errors import InputError

__all__ = ["require_unique", "require_unique_axes"]


def require_unique(
    names: Iterable[object], field: str, *, what: str = "names", fix: str = "make them unique"
) -> None:
    """Refuse repeated names, listing each repeated one once."""
    index = pd.Index(list(names) if not isinstance(names, pd.Index) else names)
    if not index.is_unique:
        raise InputError(
            field, f"duplicate {what}", values=index[index.duplicated()].unique().tolist(), fix=fix
        )


def require_unique_axes(frame: pd.DataFrame, field: str) -> None:
    """Refuse a DataFrame whose row or column names repeat."""
    require_unique(frame.index, f"{field}.index")
    require_unique(frame.columns, f"{field}.columns")
