"""Input checks shared by every layer: each raises an InputError naming field and values."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from cellbridge.errors import InputError

__all__ = [
    "LOG_MAX",
    "expression_matrix",
    "is_integer",
    "looks_log_transformed",
    "obs_labels",
    "require_finite",
    "require_unique",
    "require_unique_axes",
]


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


def obs_labels(adata: AnnData, key: str, *, field: str) -> pd.Series:
    """The ``obs`` column ``key``; refuses a missing column or cells without a value."""
    if key not in adata.obs.columns:
        raise InputError(
            field, "not an obs column", values=[key], fix=f"use one of {list(adata.obs.columns)}"
        )
    column = adata.obs[key]
    missing = column.isna().to_numpy()
    if missing.any():
        raise InputError(
            f"adata.obs[{key!r}]",
            f"{int(missing.sum())} cells without a value, e.g.",
            values=adata.obs_names[missing].tolist(),
            fix="label or remove those cells",
        )
    return column


def require_finite(
    X: sp.spmatrix | np.ndarray, field: str, *, non_negative: bool = False, negative_fix: str = ""
) -> np.ndarray:
    """Refuse non-numeric, NaN/inf (and, if asked, negative) expression; return the values.

    For a sparse matrix only the stored values are checked (the implicit zeros are fine).
    """
    values: np.ndarray = np.asarray(X.data if sp.issparse(X) else X).ravel()
    if not np.issubdtype(values.dtype, np.number):
        raise InputError(field, f"expression must be numeric, got dtype {values.dtype}")
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(
            field,
            f"{int(bad.sum())} NaN or infinite values",
            fix="fix the matrix upstream; cellbridge does not impute",
        )
    negative = values < 0
    if non_negative and negative.any():
        raise InputError(
            field,
            f"{int(negative.sum())} negative values, e.g.",
            values=np.unique(values[negative])[:5].tolist(),
            fix=negative_fix or "pass raw counts",
        )
    return values


# log1p of normalised expression stays well under this (~15 in practice); non-integer data
# whose maximum is below it is taken as already log-transformed.
LOG_MAX = 50.0


def expression_matrix(
    adata: AnnData, layer: str | None, *, field: str = "layer"
) -> sp.spmatrix | np.ndarray:
    """``adata.X``, or ``adata.layers[layer]``; a missing layer or an empty X is refused."""
    if layer is None:
        if adata.X is None:
            raise InputError(field, "adata.X is empty", fix="pass layer=... or set adata.X")
        return adata.X
    if layer not in adata.layers:
        raise InputError(
            field,
            "not in adata.layers",
            values=[layer],
            fix=f"use one of {list(adata.layers.keys())} or layer=None for adata.X",
        )
    return adata.layers[layer]


def is_integer(values: np.ndarray) -> bool:
    """Whether every value is a whole number (raw counts are)."""
    return bool(np.all(values == np.round(values)))


def looks_log_transformed(values: np.ndarray, *, log1p_marked: bool) -> bool:
    """scanpy's ``uns["log1p"]`` mark, or non-integer values that all stay below LOG_MAX."""
    if log1p_marked:
        return True
    return values.size > 0 and not is_integer(values) and float(values.max()) <= LOG_MAX
