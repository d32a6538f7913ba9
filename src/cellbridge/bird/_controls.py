"""Control cells marked by their drug (``control_drug``) instead of a flag column.

Screens such as Tahoe-100M name their controls' vehicle as a drug (``"DMSO_TF"``) and
carry no boolean control column; every function that takes ``control_key`` also takes
``control_drug`` and derives the flag here.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from cellbridge.errors import InputError

__all__ = ["check_control_drug", "control_flags", "controls_by_drug", "no_control_drug"]


def check_control_drug(control_drug: object) -> None:
    """Refuse a ``control_drug`` that is neither ``None`` nor a non-empty string."""
    if control_drug is not None and (not isinstance(control_drug, str) or not control_drug):
        raise InputError(
            "control_drug",
            "must be a drug name (a non-empty string) or None",
            values=[control_drug],
            fix='name the drug of the control cells, e.g. "DMSO_TF"',
        )


def controls_by_drug(drugs: pd.Series, control_drug: str, *, drug_key: str) -> np.ndarray:
    """``drugs == control_drug`` as a boolean array, or an :class:`InputError` when no
    cell has ``control_drug``."""
    named = drugs.notna().to_numpy()
    is_control = named & (drugs.astype(str) == control_drug).to_numpy()
    if not is_control.any():
        raise no_control_drug(control_drug, set(drugs[named].astype(str)), drug_key=drug_key)
    return is_control


def no_control_drug(control_drug: str, drugs: Collection[str], *, drug_key: str) -> InputError:
    """The error of a ``control_drug`` that no cell has, listing some of the drugs."""
    seen = sorted(drugs)
    more = f" (and {len(seen) - 10} more)" if len(seen) > 10 else ""
    return InputError(
        "control_drug",
        f"no cell has obs[{drug_key!r}] == {control_drug!r}",
        values=[control_drug],
        fix=f"use the controls' drug, one of: {', '.join(seen[:10])}{more}",
    )


def control_flags(
    obs: pd.DataFrame,
    *,
    drug_key: str,
    control_key: str | None,
    control_drug: str | None,
    where: str = "obs",
) -> np.ndarray:
    """Whether each cell is a control, as a boolean array.

    ``obs[drug_key] == control_drug`` when ``control_drug`` is given; otherwise the
    boolean column ``obs[control_key]``, or no controls at all when ``control_key`` is
    ``None``. ``where`` names ``obs`` in the errors (e.g. ``"cells.obs"``).

    Raises
    ------
    InputError
        A bad ``control_drug`` or one that no cell has, a missing column, a control column
        that is not boolean or has missing values.
    """
    check_control_drug(control_drug)
    key = drug_key if control_drug is not None else control_key
    if key is None:
        return np.zeros(len(obs), dtype=bool)
    if key not in obs:
        raise InputError(
            where,
            f"has no column {key!r}",
            values=list(obs.columns),
            fix="name the column of the drugs (drug_key) or of the control flags (control_key)",
        )
    if control_drug is not None:
        return controls_by_drug(obs[drug_key], control_drug, drug_key=drug_key)
    column = obs[key]
    if not pd.api.types.is_bool_dtype(column) or column.isna().any():
        raise InputError(
            f"{where}[{key!r}]",
            "must be boolean (True for control cells), without missing values",
            values=[str(column.dtype)],
            fix="mark the controls with True and the treated cells with False, or mark "
            "the controls by their drug with control_drug",
        )
    return column.to_numpy(dtype=bool)
