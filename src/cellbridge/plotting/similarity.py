"""Heatmaps of the ontology W1 distances and the kernel similarity, grouped by a label."""

from __future__ import annotations

import anndata
import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cellbridge.errors import InputError

__all__ = ["plot_similarity"]


def plot_similarity(
    sim: anndata.AnnData, *, group_key: str | None = None, title: str | None = None
) -> Figure:
    """Side-by-side heatmaps of ``obsp["emd"]`` and ``obsp["similarity"]``.

    Parameters
    ----------
    sim
        The output of :func:`cellbridge.poppy.sample_similarity`.
    group_key
        An ``obs`` column (e.g. cohort) to order and mark samples by.
    title
        Figure title; the provenance of the data is appended when recorded.
    """
    for key in ("emd", "similarity"):
        if key not in sim.obsp:
            raise InputError(
                f"obsp['{key}']", "missing", fix="pass the output of sample_similarity"
            )
    order = np.arange(sim.n_obs)
    groups = None
    if group_key is not None:
        if group_key not in sim.obs:
            raise InputError(
                "group_key", f"{group_key!r} is not an obs column", values=list(sim.obs.columns)
            )
        groups = sim.obs[group_key].astype(str).to_numpy()
        order = np.argsort(groups, kind="stable")
    D = np.asarray(sim.obsp["emd"])[np.ix_(order, order)]
    K = sim.obsp["similarity"].toarray()[np.ix_(order, order)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    panels = (
        (D, "ontology W1 distance (Eq. 1)", "viridis"),
        (K, "kernel similarity S (Eq. 6)", "magma"),
    )
    for ax, (M, name, cmap) in zip(axes, panels, strict=True):
        im = ax.imshow(M, cmap=cmap, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("sample")
        ax.set_ylabel("sample")
        fig.colorbar(im, ax=ax, shrink=0.8)
        if groups is not None:
            g = groups[order]
            cuts = np.flatnonzero(g[1:] != g[:-1]) + 0.5
            for c in cuts:
                ax.axhline(c, color="white", lw=0.8)
                ax.axvline(c, color="white", lw=0.8)
    head = title or f"{sim.n_obs} samples on {sim.n_vars} ontology nodes"
    provenance = sim.uns.get("cellbridge", {}).get("provenance")
    if provenance:
        head += f"\n({provenance.split(':')[0]} data)"
    fig.suptitle(head)
    return fig
