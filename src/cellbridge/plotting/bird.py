"""Figures of the BiRD k-NN evaluation (Fig. 3): MAE ECDF, win rates, gene-set enrichment."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cellbridge.bird.knn import mae_ecdf, win_rates
from cellbridge.errors import InputError
from cellbridge.plotting._titles import table_provenance, with_provenance

__all__ = ["plot_enrichment", "plot_mae_ecdf", "plot_win_rates"]

_BAND = (0.025, 0.975)


def plot_mae_ecdf(
    table: pd.DataFrame, *, title: str | None = None, data: str | None = None
) -> Figure:
    """Empirical CDF of the k-NN MAE per embedding, with the spread across cell lines (Fig. 3A).

    One line per embedding: the ECDF of the MAE over all its (drug, cell line) settings
    (:func:`cellbridge.bird.mae_ecdf`). With two or more cell lines, the shaded band is the
    2.5-97.5 % range, across cell lines, of the per-line ECDFs evaluated on a common grid.
    A curve further left (higher) means lower errors.

    Parameters
    ----------
    table
        :attr:`cellbridge.bird.KnnResult.table` (``embedding``, ``cell_line``, ``drug``,
        ``mae``).
    title
        Figure title.
    data
        Provenance shown under the title; default ``table.attrs["data"]`` (set by
        :func:`cellbridge.bird.knn_evaluation` when the AnnData records it).
    """
    curves = mae_ecdf(table)
    per_line = mae_ecdf(table, by="cell_line")
    n_lines = table["cell_line"].nunique()
    grid = np.linspace(float(table["mae"].min()), float(table["mae"].max()), 200)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    for i, (name, curve) in enumerate(curves.groupby("embedding", sort=False)):
        color = f"C{i}"
        x = np.r_[curve["mae"].iloc[0], curve["mae"].to_numpy()]
        y = np.r_[0.0, curve["ecdf"].to_numpy()]
        ax.step(x, y, where="post", color=color, label=f"{name} (n={int(curve['n'].iloc[0])})")
        if n_lines >= 2:
            rows = per_line[per_line["embedding"] == name]
            F = np.vstack(
                [
                    _step(g["mae"].to_numpy(), g["ecdf"].to_numpy(), grid)
                    for _, g in rows.groupby("cell_line", sort=False)
                ]
            )
            low, high = np.quantile(F, _BAND, axis=0)
            ax.fill_between(grid, low, high, step="post", color=color, alpha=0.15, lw=0)
    ax.set_xlabel("MAE of the k-NN prediction (per drug and cell line)")
    ax.set_ylabel("fraction of settings with MAE ≤ x")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    band = f"; band: 2.5-97.5 % over {n_lines} cell lines" if n_lines >= 2 else ""
    head = title or f"k-NN post-perturbation prediction (BiRD Eq. 4){band}"
    ax.set_title(with_provenance(head, table_provenance(table, data)), fontsize=9)
    return fig


def _step(x: np.ndarray, F: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A right-continuous step ECDF (jumps at ``x`` to ``F``) evaluated on ``grid``."""
    idx = np.searchsorted(x, grid, side="right") - 1
    return np.where(idx >= 0, F[np.clip(idx, 0, None)], 0.0)


def plot_win_rates(
    matrix: pd.DataFrame, *, title: str | None = None, data: str | None = None
) -> Figure:
    """Heatmap of pairwise win rates, annotated in percent (Fig. 3B).

    Cell (row ``a``, column ``b``) is the percentage of (drug, cell line) settings in
    which ``a`` has the lower MAE than ``b`` (ties count half;
    :func:`cellbridge.bird.win_rates`). The diagonal is left blank.

    Parameters
    ----------
    matrix
        Square win-rate matrix, values in ``[0, 1]`` (NaN on the diagonal allowed), or a
        k-NN table (``embedding``, ``cell_line``, ``drug``, ``mae``) to compute it from.
    title
        Figure title.
    data
        Provenance shown under the title; default ``matrix.attrs["data"]``.
    """
    provenance = table_provenance(matrix, data)
    if {"embedding", "mae"} <= set(matrix.columns):
        matrix = win_rates(matrix)
    if matrix.shape[0] != matrix.shape[1] or list(matrix.index) != list(matrix.columns):
        raise InputError(
            "matrix",
            "must be square with the same names on rows and columns",
            values=[matrix.shape],
            fix="pass the output of cellbridge.bird.win_rates",
        )
    W = matrix.to_numpy(dtype=np.float64)
    off = ~np.eye(len(W), dtype=bool)
    if not (np.isfinite(W[off]).all() and (W[off] >= 0).all() and (W[off] <= 1).all()):
        raise InputError("matrix", "off-diagonal values must be fractions in [0, 1]")
    names = [str(n) for n in matrix.index]
    size = 1.1 * len(names) + 2.2
    fig, ax = plt.subplots(figsize=(size + 1.0, size), layout="constrained")
    shown = np.where(off, W, np.nan)
    im = ax.imshow(100 * shown, cmap="RdBu_r", vmin=0, vmax=100)
    for i in range(len(names)):
        for j in range(len(names)):
            if i == j:
                continue
            value = 100 * W[i, j]
            color = "white" if abs(value - 50) > 30 else "black"
            ax.text(j, i, f"{value:.1f}%", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("column method")
    ax.set_ylabel("row method wins (lower MAE)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="% of (drug, cell line) settings")
    head = title or "Pairwise win rates of k-NN prediction (ties count half)"
    ax.set_title(with_provenance(head, provenance, width=int(9 * size)), fontsize=9)
    return fig


def plot_enrichment(
    table: pd.DataFrame,
    *,
    top: int = 15,
    title: str | None = None,
    data: str | None = None,
) -> Figure:
    """Bars of :math:`-\\log_{10} q` of the most enriched gene sets (Fig. 3C).

    The ``top`` rows of ``table`` with the smallest p-values, most significant at the top,
    each labelled with its overlap and size; a dashed line marks ``q = 0.05``.

    Parameters
    ----------
    table
        :func:`cellbridge.bird.enrichment` output (``set``, ``size``, ``overlap``, ``pval``,
        ``qval``).
    top
        Number of gene sets drawn (fewer when the table is shorter).
    title
        Figure title.
    data
        Provenance shown under the title; default ``table.attrs["data"]``.
    """
    needed = ["set", "size", "overlap", "pval", "qval"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(
            "table", "lacks columns", values=missing, fix="pass cellbridge.bird.enrichment"
        )
    if table.empty:
        raise InputError("table", "is empty", fix="test at least one gene set")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InputError("top", "must be a positive integer", values=[top])
    shown = table.sort_values(["pval", "set"], kind="stable").head(top)
    q = shown["qval"].to_numpy(dtype=np.float64)
    score = -np.log10(np.clip(q, np.finfo(np.float64).tiny, 1.0))
    y = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(shown) + 1.8), layout="constrained")
    ax.barh(y, score, color=np.where(q <= 0.05, "tab:red", "0.6"))
    for yi, s, a, k in zip(y, score, shown["overlap"], shown["size"], strict=True):
        ax.text(float(s), float(yi), f" {int(a)}/{int(k)}", va="center", fontsize=8)
    ax.set_yticks(y, [textwrap.shorten(str(s), 60) for s in shown["set"]], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(-np.log10(0.05), color="black", ls="--", lw=0.8, label="q = 0.05")
    ax.set_xlabel("-log10 q (Benjamini-Hochberg)")
    ax.set_xlim(0, max(float(score.max()), -np.log10(0.05)) * 1.15)
    ax.legend(loc="lower right", fontsize=8)
    head = title or f"Gene-set enrichment, top {len(shown)} of {len(table)} sets"
    ax.set_title(with_provenance(head, table_provenance(table, data)), fontsize=9)
    return fig
