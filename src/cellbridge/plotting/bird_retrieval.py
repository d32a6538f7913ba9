"""Figures of BiRD's zero-shot retrieval (Figs. 4–5) and separability (Table 1)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cellbridge.errors import InputError
from cellbridge.plotting._titles import with_provenance

__all__ = ["plot_cross_line_auroc", "plot_retrieval_roc", "plot_separability"]


def plot_retrieval_roc(
    curves: dict[str, pd.DataFrame], *, title: str | None = None, data: str | None = None
) -> Figure:
    """Micro-averaged ROC curves of Eq. 5's retrieval, averaged over cell lines (Fig. 4).

    Parameters
    ----------
    curves
        Embedding name -> :attr:`cellbridge.bird.RetrievalResult.roc` (``fpr``, one column
        per line, ``mean``). The mean curve is drawn, with the range across lines shaded.
    title, data
        Title and the provenance shown under it.
    """
    if not curves:
        raise InputError("curves", "is empty", fix="pass {embedding: RetrievalResult.roc}")
    fig, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    for name, roc in curves.items():
        if not {"fpr", "mean"} <= set(roc.columns):
            raise InputError(f"curves[{name!r}]", "needs 'fpr' and 'mean' columns")
        lines = [c for c in roc.columns if c not in ("fpr", "mean")]
        area = float(np.trapezoid(roc["mean"], roc["fpr"]))
        (drawn,) = ax.plot(roc["fpr"], roc["mean"], label=f"{name} (AUROC {area:.3f})")
        if len(lines) > 1:
            ax.fill_between(
                roc["fpr"],
                roc[lines].min(axis=1),
                roc[lines].max(axis=1),
                color=drawn.get_color(),
                alpha=0.15,
                linewidth=0,
            )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    head = title or "Zero-shot drug retrieval of held-out drugs (Eq. 5), mean over cell lines"
    ax.set_title(with_provenance(head, data, width=60), fontsize=9)
    return fig


def plot_cross_line_auroc(
    auroc: pd.DataFrame, *, title: str | None = None, data: str | None = None
) -> Figure:
    """Heatmap of retrieval AUROC, trained line (rows) x tested line (columns) (Fig. 5).

    Parameters
    ----------
    auroc
        Trained line x tested line AUROCs, finite (:attr:`cellbridge.bird.RetrievalResult.auroc`).
    title, data
        Title and the provenance shown under it.
    """
    A = auroc.to_numpy(dtype=np.float64)
    if A.ndim != 2 or A.size == 0 or not np.isfinite(A).all():
        raise InputError("auroc", "must be a non-empty finite matrix of AUROCs")
    size = 0.9 * max(A.shape) + 2.4
    fig, ax = plt.subplots(figsize=(size + 1.0, size), layout="constrained")
    im = ax.imshow(A, cmap="viridis", vmin=0.5, vmax=1.0)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            color = "black" if A[i, j] > 0.8 else "white"
            ax.text(j, i, f"{A[i, j]:.2f}", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(A.shape[1]), [str(c) for c in auroc.columns], rotation=30, ha="right")
    ax.set_yticks(range(A.shape[0]), [str(r) for r in auroc.index])
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    fig.colorbar(im, ax=ax, shrink=0.8, label="micro AUROC (held-out drugs)")
    head = title or "Retrieval across cell lines"
    ax.set_title(with_provenance(head, data, width=int(9 * size)), fontsize=9)
    return fig


def plot_separability(
    summary: pd.DataFrame, *, title: str | None = None, data: str | None = None
) -> Figure:
    """Grouped bars of the scIB scores per embedding (Table 1).

    Parameters
    ----------
    summary
        One row per embedding with scIB score columns (``isolated_labels``,
        ``kmeans_nmi``, ``kmeans_ari``, ``silhouette_label``, ``aggregate``), e.g.
        :func:`cellbridge.bird.compare_drug_spaces`'s summary.
    title, data
        Title and the provenance shown under it.
    """
    columns = [
        c
        for c in ("isolated_labels", "kmeans_nmi", "kmeans_ari", "silhouette_label", "aggregate")
        if c in summary.columns
    ]
    if not columns or summary.empty:
        raise InputError("summary", "needs scIB score columns", fix="pass compare_drug_spaces()[0]")
    values = summary[columns].to_numpy(dtype=np.float64)
    n_rows = len(summary)
    width = 0.8 / n_rows
    fig, ax = plt.subplots(figsize=(1.3 * len(columns) + 2.5, 4.4), layout="constrained")
    x = np.arange(len(columns))
    for i, name in enumerate(summary.index):
        ax.bar(x + (i - (n_rows - 1) / 2) * width, values[i], width, label=str(name))
    ax.set_xticks(x, [c.replace("_", " ") for c in columns])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (1 = labels separate)")
    fig.legend(loc="outside lower center", fontsize=8, ncols=min(n_rows, 5))
    head = title or "Separability of the held-out drugs' cells (scIB, Table 1)"
    ax.set_title(with_provenance(head, data, width=80), fontsize=9)
    return fig
