"""Relative change of a metric table against a baseline table (POPPY §3.3–3.4)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cellbridge.errors import InputError

__all__ = ["improvement"]


def improvement(
    new: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    on: Sequence[str] = ("metric", "subset"),
    value: str = "value",
) -> pd.DataFrame:
    r"""Percent change of each metric from the baseline to the new method.

    .. math::

        \mathrm{percent\_change} = 100 \cdot \frac{v_{\mathrm{new}} - v_{\mathrm{baseline}}}
        {|v_{\mathrm{baseline}}|}

    the form behind "up to 73% improvement in silhouette score" and "up to 714%" for
    cross-cohort correlation (POPPY §3.3–3.4). Dividing by :math:`|v_{\mathrm{baseline}}|`
    keeps the sign meaning "better when the metric goes up" also for a negative baseline
    (a correlation of -0.1 rising to 0.1 is +200%). Rows are joined on the ``on`` columns,
    never on row order. Where either value is NaN (a metric that is undefined upstream,
    with its reason there) the change is NaN.

    Parameters
    ----------
    new
        Table of the new method: the ``on`` columns and a ``value`` column.
    baseline
        The same rows for the baseline.
    on
        Columns that name a row; unique in each table.
    value
        The column holding the metric values.

    Returns
    -------
    pandas.DataFrame
        The ``on`` columns, then ``new``, ``baseline``, ``change`` (new - baseline) and
        ``percent_change``, in the row order of ``new``.

    Raises
    ------
    InputError
        Missing columns, repeated row names, rows present in only one table, or a
        baseline value of exactly 0 (no relative change exists).

    Examples
    --------
    >>> import pandas as pd
    >>> new = pd.DataFrame({"metric": ["asw"], "subset": ["all"], "value": [0.52]})
    >>> old = pd.DataFrame({"metric": ["asw"], "subset": ["all"], "value": [0.4]})
    >>> round(float(improvement(new, old)["percent_change"].iloc[0]), 6)
    30.0
    """
    keys = list(on)
    for name, table in (("new", new), ("baseline", baseline)):
        missing = [c for c in [*keys, value] if c not in table.columns]
        if missing:
            raise InputError(
                name,
                "missing columns",
                values=missing,
                fix=f"use columns from {list(table.columns)}",
            )
        repeated = table[table.duplicated(keys, keep=False)]
        if len(repeated):
            raise InputError(
                name,
                f"rows repeat on {keys}",
                values=repeated[keys].drop_duplicates().to_records(index=False).tolist(),
                fix="pass one row per metric and subset",
            )
    merged = new[[*keys, value]].merge(
        baseline[[*keys, value]], on=keys, how="outer", suffixes=("_new", "_base"), indicator=True
    )
    unmatched = merged[merged["_merge"] != "both"]
    if len(unmatched):
        raise InputError(
            "baseline",
            "rows present in only one table",
            values=unmatched[keys].to_records(index=False).tolist(),
            fix="compare tables with the same metrics and subsets",
        )
    order = new[keys].merge(merged, on=keys, how="left")
    v_new = order[f"{value}_new"].to_numpy(dtype=np.float64)
    v_old = order[f"{value}_base"].to_numpy(dtype=np.float64)
    zero = v_old == 0
    if zero.any():
        raise InputError(
            "baseline",
            "a baseline value of 0 has no relative change, at rows",
            values=order.loc[zero, keys].to_records(index=False).tolist(),
            fix="compare the absolute change instead",
        )
    change = v_new - v_old
    with np.errstate(invalid="ignore"):
        percent = 100.0 * change / np.abs(v_old)
    out = order[keys].copy()
    out["new"] = v_new
    out["baseline"] = v_old
    out["change"] = change
    out["percent_change"] = percent
    return out.reset_index(drop=True)
