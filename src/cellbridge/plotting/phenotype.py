"""Figures of POPPY stage 2: response prediction per cohort and per-cell attributions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy.stats import spearmanr

from cellbridge.errors import InputError
from cellbridge.plotting._titles import table_provenance, with_provenance

__all__ = ["plot_attribution", "plot_cohort_auroc", "plot_score_agreement"]

_AUROC_COLUMNS = ("cohort", "method", "auroc", "low", "high")


def plot_cohort_auroc(table: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Grouped bars of the AUROC per held-out cohort and method, with intervals (Figure 4b).

    One group of bars per cohort, one bar per method (cohorts and methods in order of
    first appearance), each with an error bar from ``low`` to ``high`` (e.g. the
    bootstrap interval of :func:`cellbridge.metrics.auroc_with_ci`). A dashed line marks
    chance (0.5). A method with no row for a cohort leaves a gap there.

    Parameters
    ----------
    table
        Columns ``cohort``, ``method``, ``auroc``, ``low``, ``high``, one row per
        (cohort, method); an optional ``data`` column names the provenance and is shown
        in the title.
    title
        Figure title.

    Raises
    ------
    InputError
        Missing columns, no rows, missing or non-finite values, a repeated
        (cohort, method) pair, or an interval that does not hold its AUROC.
    """
    _require_columns(table, "table", _AUROC_COLUMNS, "one row per cohort and method")
    keys = table[["cohort", "method"]]
    if keys.isna().any().any():
        rows = table.index[keys.isna().any(axis=1)].tolist()
        raise InputError("table", "cohort or method missing in rows", values=rows)
    repeated = table.duplicated(["cohort", "method"], keep=False)
    if repeated.any():
        pairs = sorted({(str(c), str(m)) for c, m in keys[repeated].itertuples(index=False)})
        raise InputError(
            "table", "repeated (cohort, method) pairs", values=pairs, fix="one row per pair"
        )
    values = table[["auroc", "low", "high"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise InputError(
            "table",
            "missing or non-finite auroc/low/high in rows",
            values=table.index[bad].tolist(),
        )
    auroc, low, high = values.T
    outside = (low > auroc) | (auroc > high)
    if outside.any():
        raise InputError(
            "table",
            "intervals that do not hold their AUROC (need low <= auroc <= high), rows",
            values=table.index[outside].tolist(),
        )

    cohorts = list(pd.unique(table["cohort"]))
    methods = list(pd.unique(table["method"]))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(
        figsize=(max(5.0, 0.35 * len(cohorts) * len(methods) + 3.0), 4.2),
        layout="constrained",
    )
    cmap = plt.get_cmap("tab10")
    for m, method in enumerate(methods):
        rows = (table["method"] == method).to_numpy()
        x = np.array([cohorts.index(c) for c in table["cohort"][rows]], dtype=np.float64)
        x += (m - (len(methods) - 1) / 2) * width
        height = auroc[rows]
        ax.bar(
            x,
            height,
            width=width,
            color=cmap(m % 10),
            label=str(method),
            yerr=np.vstack([height - low[rows], high[rows] - height]),
            capsize=3,
            error_kw={"elinewidth": 1, "ecolor": "black"},
        )
    ax.axhline(0.5, color="0.3", ls="--", lw=1, label="chance")
    ax.set_xticks(np.arange(len(cohorts)), [str(c) for c in cohorts])
    ax.set_ylabel("AUROC")
    ax.set_xlabel("held-out cohort")
    ax.set_ylim(0.0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(
        with_provenance(
            title or "Response prediction per held-out cohort", table_provenance(table), width=50
        ),
        fontsize=10,
    )
    return fig


def plot_attribution(
    scores: pd.DataFrame,
    *,
    group_key: str = "cell_type",
    score_key: str = "responder_score",
    title: str | None = None,
) -> Figure:
    """Per-group distribution of a per-cell score, groups sorted by mean (Figure 4d).

    One box per group (cell type or gene program): median line, quartile box, whiskers
    to the furthest cell within 1.5 IQR; individual outlying cells are not drawn (there
    are too many at atlas scale), the box counts every cell. A diamond marks each group's
    mean; groups run left to right from the highest mean to the lowest. A dashed line
    at 0.5 separates responder-enriched (above) from non-responder-enriched cells.

    Parameters
    ----------
    scores
        One row per cell with columns ``group_key`` and ``score_key``.
    group_key
        The grouping column.
    score_key
        The per-cell score, e.g. :func:`cellbridge.metrics.label_enrichment` or the
        attention-derived responder score.
    title
        Figure title.

    Raises
    ------
    InputError
        Missing columns, no rows, missing groups, or missing or non-finite scores.
    """
    _require_columns(scores, "scores", (group_key, score_key), "one row per cell")
    groups = scores[group_key]
    if groups.isna().any():
        raise InputError(
            f"scores[{group_key!r}]",
            f"{int(groups.isna().sum())} cells without a group, rows",
            values=scores.index[groups.isna()].tolist(),
            fix="label or remove those cells",
        )
    values = _finite(scores[score_key], f"scores[{score_key!r}]")
    by_group = pd.Series(values, index=scores.index).groupby(groups.to_numpy(), sort=False)
    means = by_group.mean().sort_values(ascending=False, kind="stable")
    order = means.index.tolist()
    data = [by_group.get_group(g).to_numpy() for g in order]

    positions = np.arange(1, len(order) + 1)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(order) + 2), 4.5), layout="constrained")
    ax.boxplot(data, positions=positions, widths=0.6, showfliers=False)
    ax.scatter(positions, means.to_numpy(), marker="D", color="tab:red", zorder=3, label="mean")
    ax.axhline(0.5, color="0.3", ls="--", lw=1)
    ax.set_xticks(positions, [str(g) for g in order], rotation=45, ha="right")
    ax.set_ylabel(score_key)
    ax.set_xlabel(group_key)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or f"{score_key} per {group_key} ({len(values)} cells)")
    return fig


def plot_score_agreement(
    x: ArrayLike,
    y: ArrayLike,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> Figure:
    r"""Scatter of two per-cell scores with their Spearman correlation (Figure 4c).

    E.g. the label-derived enrichment against the attention-derived responder score of
    the same cells; POPPY §3.5 reports :math:`\rho = 0.59` between the two. The title
    ends with ``Spearman rho = <value> (n = <cells>)``, the value from
    ``scipy.stats.spearmanr`` rounded to 3 decimals.

    Parameters
    ----------
    x, y
        ``(n,)`` finite scores of the same cells, in the same order, ``n >= 3``; neither
        constant.
    xlabel, ylabel
        Axis labels (what each score is).
    title
        First line of the title.

    Raises
    ------
    InputError
        Arrays that are not 1-D, of different lengths, shorter than 3, non-finite, or
        constant (no correlation).
    """
    a = _finite(x, "x")
    b = _finite(y, "y")
    if a.size != b.size:
        raise InputError(
            "y", f"has {b.size} entries but x has {a.size}", fix="pass scores of the same cells"
        )
    if a.size < 3:
        raise InputError("x", "needs at least 3 cells for a correlation", values=[a.size])
    for field, v in (("x", a), ("y", b)):
        if np.all(v == v[0]):
            raise InputError(field, "is constant; the Spearman correlation is undefined")
    rho = float(spearmanr(a, b).statistic)
    fig, ax = plt.subplots(figsize=(4.8, 4.5), layout="constrained")
    ax.scatter(a, b, s=6, alpha=0.4, color="tab:blue", linewidths=0, rasterized=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    line = f"Spearman rho = {rho:.3f} (n = {a.size})"
    ax.set_title(f"{title}\n{line}" if title else line)
    return fig


def _require_columns(frame: pd.DataFrame, field: str, columns: tuple[str, ...], fix: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(field, "lacks columns", values=missing, fix=f"pass {fix}")
    if frame.empty:
        raise InputError(field, "is empty", fix=f"pass {fix}")


def _finite(values: ArrayLike, field: str) -> np.ndarray:
    """A 1-D float array with no NaN or infinite entries."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(field, f"must be 1-D, got shape {array.shape}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise InputError(field, f"must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise InputError(
            field,
            f"{int(bad.sum())} missing or non-finite values, at positions",
            values=np.flatnonzero(bad).tolist(),
            fix="remove those cells or fix the scores; figures do not drop points",
        )
    return array
