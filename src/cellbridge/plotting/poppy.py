"""Figures of POPPY stage 1: metrics against the baseline, and the bulk embeddings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata
import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from cellbridge.errors import InputError
from cellbridge.plotting._titles import table_provenance, with_provenance

__all__ = [
    "plot_alignment_metrics",
    "plot_bulk_embeddings",
    "plot_recall_at_k",
    "principal_coordinate",
    "project_2d",
]

_METRIC_COLUMNS = ("metric", "subset", "value", "baseline")
_LABELS = {"X_baseline": "frozen encoder, no alignment", "X_poppy": "POPPY"}


def plot_alignment_metrics(metrics: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Paired bars of each metric: POPPY against its baseline (Figures 2–3).

    Parameters
    ----------
    metrics
        The table of :func:`cellbridge.poppy.evaluate_alignment` (or several concatenated;
        an optional ``data`` column names the provenance and is shown in the title).
    title
        Figure title.
    """
    missing = [c for c in _METRIC_COLUMNS if c not in metrics]
    if missing:
        raise InputError(
            "metrics",
            "lacks columns",
            values=missing,
            fix="pass the output of cellbridge.poppy.evaluate_alignment",
        )
    if metrics.empty:
        raise InputError("metrics", "is empty", fix="evaluate at least one metric")
    truth = metrics["truth"] if "truth" in metrics else pd.Series("", index=metrics.index)
    labels = [
        " · ".join(str(p) for p in (m, t, s) if p)
        for m, t, s in zip(metrics["metric"], truth, metrics["subset"], strict=True)
    ]
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(labels) + 1.6), layout="constrained")
    ax.barh(y - 0.2, metrics["baseline"], height=0.4, color="0.65", label="baseline")
    ax.barh(y + 0.2, metrics["value"], height=0.4, color="tab:blue", label="POPPY")
    for yi, value in zip(y, metrics["value"], strict=True):
        ax.text(value, yi + 0.2, f" {value:.2f}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("score (higher is better)")
    scores = metrics[["value", "baseline"]].to_numpy(dtype=float)
    ax.set_xlim(min(0.0, float(np.nanmin(scores))), max(1.0, float(np.nanmax(scores))) + 0.08)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    head = title or "POPPY stage 1 against the frozen encoder"
    ax.set_title(with_provenance(head, table_provenance(metrics), width=70), fontsize=10)
    return fig


def principal_coordinate(distances: np.ndarray) -> np.ndarray:
    """First classical-MDS coordinate of a distance matrix (a 1-d summary of the truth).

    Double-centres :math:`-D^2/2` and returns the leading eigenvector scaled by the square
    root of its eigenvalue (0 when that eigenvalue is not positive).

    Parameters
    ----------
    distances
        ``(n, n)`` finite distance matrix (e.g. ``obsp["emd"]``).
    """
    D = np.asarray(distances, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or not np.isfinite(D).all():
        raise InputError(
            "distances", "must be a finite square matrix", values=[D.shape], fix="pass obsp"
        )
    n = D.shape[0]
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ (D**2) @ J
    values, vectors = np.linalg.eigh((B + B.T) / 2)
    top = max(float(values[-1]), 0.0)
    coord = vectors[:, -1] * np.sqrt(top)
    # eigh's sign is arbitrary: fix it so the largest |entry| is positive (reproducible).
    return coord * (1.0 if coord[np.argmax(np.abs(coord))] >= 0 else -1.0)


def project_2d(X: np.ndarray, *, method: str = "umap", seed: int = 0) -> np.ndarray:
    """Two coordinates per row of ``X`` for a scatter plot: UMAP (umap-learn, neighbours
    ``min(15, n - 1)``, fixed ``seed``) or the first two principal components."""
    X = np.asarray(X, dtype=np.float64)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(X)
    if method != "umap":
        raise InputError("projection", "must be 'umap' or 'pca'", values=[method])
    with warnings.catch_warnings():
        # umap-learn says on import that its optional TensorFlow part is missing, and that
        # a fixed seed makes it run on one thread: both expected here
        warnings.filterwarnings("ignore", category=ImportWarning, module="umap")
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden")
        import umap

        reducer = umap.UMAP(
            n_neighbors=max(2, min(15, X.shape[0] - 1)), init="random", random_state=seed
        )
        return np.asarray(reducer.fit_transform(X))


def plot_bulk_embeddings(
    bulk: anndata.AnnData,
    *,
    keys: Sequence[str] = ("X_baseline", "X_poppy"),
    color_key: str = "cohort",
    value_key: str | None = None,
    value_label: str | None = None,
    truth_key: str | None = "emd",
    projection: str = "umap",
    title: str | None = None,
) -> Figure:
    """UMAP of bulk embeddings side by side, coloured by cohort and by composition.

    Parameters
    ----------
    bulk
        Bulk profiles with the embeddings ``obsm[key]``.
    keys
        The embeddings to compare, one column each (default: frozen encoder, POPPY).
    color_key
        ``obs`` column of groups for the top row (cohorts should mix after alignment,
        Figure 2b–c).
    value_key
        ``obs`` column of numbers for the bottom row, e.g. the T-cell proportion: a smooth
        gradient means the embedding follows composition (Figure 3).
    value_label
        Colour-bar label of ``value_key`` (default: the column name).
    truth_key
        Without ``value_key``: the bottom row shows the first principal coordinate of the
        distances ``obsp[truth_key]`` (when present).
    projection
        ``"umap"`` (default) or ``"pca"``.
    title
        Figure title.
    """
    for key in keys:
        if key not in bulk.obsm:
            raise InputError(
                "keys", f"{key!r} is not in obsm", values=list(bulk.obsm), fix="embed first"
            )
    if color_key not in bulk.obs:
        raise InputError(
            "color_key", f"{color_key!r} is not an obs column", values=list(bulk.obs.columns)
        )
    if bulk.n_obs < 3:
        raise InputError("bulk", "needs at least 3 profiles to plot", values=[bulk.n_obs])
    gradient, gradient_label = _bottom_row(bulk, value_key, truth_key)
    gradient_label = value_label or gradient_label
    rows = 2 if gradient is not None else 1
    fig, axes = plt.subplots(
        rows, len(keys), figsize=(4.6 * len(keys), 4.2 * rows), layout="constrained", squeeze=False
    )
    groups = bulk.obs[color_key].astype(str)
    names = sorted(groups.unique())
    cmap = plt.get_cmap("tab10")
    axis = "UMAP" if projection == "umap" else "PC"
    for col, key in enumerate(keys):
        xy = project_2d(np.asarray(bulk.obsm[key]), method=projection)
        ax = axes[0, col]
        for i, name in enumerate(names):
            at = (groups == name).to_numpy()
            ax.scatter(xy[at, 0], xy[at, 1], s=22, color=cmap(i % 10), label=name)
        ax.set_title(_LABELS.get(key, key))
        ax.set_xlabel(f"{axis}1")
        ax.set_ylabel(f"{axis}2")
        if col == len(keys) - 1:
            ax.legend(title=color_key, fontsize=8, loc="best")
        if gradient is not None:
            ax = axes[1, col]
            points = ax.scatter(xy[:, 0], xy[:, 1], s=22, c=gradient, cmap="viridis")
            ax.set_xlabel(f"{axis}1")
            ax.set_ylabel(f"{axis}2")
            if col == len(keys) - 1:
                fig.colorbar(points, ax=ax, shrink=0.8, label=gradient_label)
    head = title or f"{bulk.n_obs} bulk profiles"
    provenance = bulk.uns.get("cellbridge", {}).get("provenance")
    if provenance:
        head += f"\n({str(provenance).split(':')[0]} data)"
    fig.suptitle(head)
    return fig


def _bottom_row(
    bulk: anndata.AnnData, value_key: str | None, truth_key: str | None
) -> tuple[np.ndarray | None, str]:
    if value_key is not None:
        if value_key not in bulk.obs:
            raise InputError(
                "value_key",
                f"{value_key!r} is not an obs column",
                values=list(bulk.obs.columns),
            )
        values = pd.to_numeric(bulk.obs[value_key], errors="coerce").to_numpy(dtype=float)
        bad = bulk.obs_names[~np.isfinite(values)]
        if len(bad):
            raise InputError(
                f"obs[{value_key!r}]",
                "must be finite numbers",
                values=list(bad[:5]),
                fix="fill or drop those profiles",
            )
        return values, value_key.replace("_", " ")
    if truth_key is not None and truth_key in bulk.obsp:
        truth = bulk.obsp[truth_key]
        dense = truth.toarray() if hasattr(truth, "toarray") else np.asarray(truth)
        return principal_coordinate(dense), f"composition axis ({truth_key})"
    return None, ""


def plot_recall_at_k(metrics: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Recall@k of bulk -> cells retrieval against k: POPPY, its baseline and chance.

    Parameters
    ----------
    metrics
        The table of :func:`cellbridge.poppy.evaluate_alignment`; its ``recall@k`` rows
        are drawn (chance, ``k / n``, where the table has the ``n`` column).
    title
        Figure title.
    """
    if "metric" not in metrics:
        raise InputError("metrics", "lacks columns", values=["metric"])
    rows = metrics[metrics["metric"].astype(str).str.fullmatch(r"recall@\d+")]
    if rows.empty:
        raise InputError(
            "metrics",
            "has no recall@k rows",
            values=sorted(set(metrics["metric"].astype(str)))[:5],
            fix="evaluate with recall at some k",
        )
    k = rows["metric"].astype(str).str.removeprefix("recall@").astype(int).to_numpy()
    order = np.argsort(k)
    fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    ax.plot(k[order], rows["value"].to_numpy()[order], "o-", color="tab:blue", label="POPPY")
    ax.plot(k[order], rows["baseline"].to_numpy()[order], "s--", color="0.5", label="baseline")
    if "n" in rows:
        chance = np.minimum(1.0, k[order] / rows["n"].to_numpy(dtype=float)[order])
        ax.plot(k[order], chance, ":", color="black", label="chance (k / n)")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k (bulk -> cells)")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(np.unique(k))
    ax.legend(loc="lower right")
    head = title or "Retrieval of each bulk profile's own cells"
    ax.set_title(with_provenance(head, table_provenance(metrics), width=60), fontsize=10)
    return fig
