"""Per-cell attributions aggregated per cell type and per gene program (POPPY §3.5, Fig. 4d)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellbridge.errors import InputError

__all__ = ["aggregate_attribution"]


def aggregate_attribution(
    table: pd.DataFrame,
    *,
    by: str | pd.DataFrame = "cell_type",
    score_key: str = "responder_score",
) -> pd.DataFrame:
    """Mean, median and spread of a per-cell score per group, sorted by the mean.

    Parameters
    ----------
    table
        One row per cell (e.g. :meth:`cellbridge.poppy.POPPY.attribute`), indexed by cell.
    by
        An ``obs`` column of ``table`` (e.g. ``"cell_type"``), or a boolean cells x
        programs membership table (:func:`cellbridge.ontology.assign_programs`) whose
        index holds ``table``'s cells: a cell counts in every program it belongs to.
    score_key
        The column to aggregate.

    Returns
    -------
    pandas.DataFrame
        One row per group (index ``group``), columns ``n_cells``, ``mean``, ``median``,
        ``q25``, ``q75``, sorted by ``mean`` descending (ties: by group name).
    """
    if score_key not in table:
        raise InputError(
            "score_key",
            f"{score_key!r} is not a column of the table",
            values=list(table.columns),
            fix="attribute with labels (label_key) to get responder_score",
        )
    scores = table[score_key]
    if not np.isfinite(scores.to_numpy(dtype=float)).all():
        raise InputError(
            f"table[{score_key!r}]",
            "has non-finite values for cells",
            values=list(table.index[~np.isfinite(scores.to_numpy(dtype=float))]),
        )
    if isinstance(by, pd.DataFrame):
        missing = table.index.difference(by.index)
        if len(missing):
            raise InputError(
                "by",
                "the membership table lacks cells of the attribution table",
                values=list(missing),
                fix="compute program membership for every reference cell",
            )
        member = by.loc[table.index]
        if not all(pd.api.types.is_bool_dtype(member[c]) for c in member.columns):
            raise InputError("by", "membership columns must be boolean", values=list(member.dtypes))
        groups = {str(c): scores[member[c].to_numpy()] for c in member.columns}
    else:
        if by not in table:
            raise InputError(
                "by", f"{by!r} is not a column of the table", values=list(table.columns)
            )
        groups = {str(k): g for k, g in scores.groupby(table[by], observed=True)}
    rows = {
        name: {
            "n_cells": int(values.size),
            "mean": float(values.mean()) if values.size else np.nan,
            "median": float(values.median()) if values.size else np.nan,
            "q25": float(values.quantile(0.25)) if values.size else np.nan,
            "q75": float(values.quantile(0.75)) if values.size else np.nan,
        }
        for name, values in groups.items()
    }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "group"
    return out.sort_index().sort_values("mean", ascending=False, kind="stable", na_position="last")
