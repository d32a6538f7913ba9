"""Sample-sample similarity from cell-type composition transport — POPPY §2.1 and A.2.

compositions on the Cell Ontology -> exact W1 between them (Eq. 1) -> kNN diffusion
kernel (Eq. 6). The result is the soft supervision ``S`` of the contrastive loss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import anndata
import numpy as np
import pandas as pd

from cellbridge._version import __version__
from cellbridge.errors import InputError
from cellbridge.ontology import (
    Compositions,
    Ontology,
    OntologyGraph,
    compositions,
    compositions_from_proportions,
    load_cell_ontology,
    prune,
)
from cellbridge.ot import Graph, diffusion_kernel, knn_graph_emd, pairwise_graph_emd

if TYPE_CHECKING:  # pragma: no cover - typing only
    from distributed import Client

__all__ = ["ontology_graph_metric", "proportion_similarity", "sample_similarity"]

log = logging.getLogger(__name__)


def ontology_graph_metric(graph: OntologyGraph) -> Graph:
    """The ground space of Eq. 1: the pruned ontology, undirected, every edge of length 1.

    The shortest path between two terms counts ontology edges (is_a / part_of and
    program links alike), as in POPPY §2.1.

    Parameters
    ----------
    graph
        The pruned ontology (:func:`cellbridge.ontology.prune`), rooted at its root.
    """
    return Graph(len(graph.nodes), np.asarray(graph.edges), root=graph.root)


def sample_similarity(
    adata: anndata.AnnData,
    *,
    sample_key: str = "sample",
    cell_type_key: str = "cell_type",
    ontology: Ontology | None = None,
    graph: OntologyGraph | None = None,
    mapping: Mapping[str, str] | None = None,
    programs: pd.DataFrame | None = None,
    strict: bool = True,
    min_cells: int = 1,
    k: int = 100,
    symmetrize: Literal["union", "intersection"] = "union",
    method: Literal["auto", "exact", "tree"] = "auto",
    distances: Literal["all", "knn"] = "all",
    n_jobs: int = 1,
    client: Client | Literal["local"] | None = None,
    progress: bool = False,
) -> anndata.AnnData:
    """Compositions, exact ontology W1 and the diffusion-kernel similarity of every sample.

    Parameters
    ----------
    adata
        Cells with ``obs[sample_key]`` and ``obs[cell_type_key]`` (free-text labels or CL
        ids; see :func:`cellbridge.ontology.map_labels`).
    sample_key, cell_type_key, ontology, graph, mapping, programs, strict, min_cells
        Passed to :func:`cellbridge.ontology.compositions`.
    k, symmetrize
        Passed to :func:`cellbridge.ot.diffusion_kernel` (paper: ``k = 100``).
    method, n_jobs, client, progress
        Passed to :func:`cellbridge.ot.pairwise_graph_emd`; ``client`` (a
        :class:`dask.distributed.Client` or ``"local"``) solves the exact W1 on a Dask
        cluster with the same result (``docs/cluster.md``).
    distances
        ``"all"``: every pairwise W1, kept in ``obsp["emd"]``. ``"knn"``: only each
        sample's ``k`` nearest, found exactly without the other pairs
        (:func:`cellbridge.ot.knn_graph_emd`; for cohorts of tens of thousands, where
        the full matrix is out of reach), kept sparse in ``obsp["emd_knn"]``. The kernel
        ``obsp["similarity"]`` is identical either way. Threads only (no ``client``).

    Returns
    -------
    anndata.AnnData
        One row per sample, one column per ontology node:

        - ``X``: propagated proportions (root = 1); ``layers["signal"]``: rows
          normalised to unit mass, the inputs of Eq. 1;
        - ``obs["n_cells"]``; ``var["label"]``;
        - ``obsp["emd"]``: exact W1 distances (Eq. 1) — or, with ``distances="knn"``,
          ``obsp["emd_knn"]``: each row's exact W1 to its ``k`` nearest (sparse, zero
          distances stored) and ``obs["sigma"]``, the k-th nearest distance;
        - ``obsp["similarity"]``: the sparse kernel ``S`` (Eq. 6);
        - ``uns["cellbridge"]``: ontology version, parameters, dropped labels, timings,
          and the provenance of ``adata`` when it has one.
    """
    ontology = load_cell_ontology() if ontology is None and graph is None else ontology
    t0 = time.perf_counter()
    if not isinstance(adata, anndata.AnnData) or adata.n_obs == 0:
        raise InputError(
            "cells", "has no cells", fix="pass an AnnData with the cells of each sample"
        )
    comp = compositions(
        adata,
        sample_key=sample_key,
        cell_type_key=cell_type_key,
        ontology=ontology,
        graph=graph,
        mapping=mapping,
        programs=programs,
        strict=strict,
        min_cells=min_cells,
    )
    return _similarity(
        comp,
        ontology=ontology,
        k=k,
        symmetrize=symmetrize,
        method=method,
        distances=distances,
        n_jobs=n_jobs,
        client=client,
        progress=progress,
        params={"sample_key": sample_key, "cell_type_key": cell_type_key},
        provenance=adata.uns.get("cellbridge", {}).get("provenance"),
        seconds_compositions=time.perf_counter() - t0,
    )


def proportion_similarity(
    proportions: pd.DataFrame,
    *,
    ontology: Ontology | None = None,
    graph: OntologyGraph | None = None,
    k: int = 100,
    symmetrize: Literal["union", "intersection"] = "union",
    method: Literal["auto", "exact", "tree"] = "auto",
    distances: Literal["all", "knn"] = "all",
    n_jobs: int = 1,
    client: Client | Literal["local"] | None = None,
    progress: bool = False,
) -> anndata.AnnData:
    """:func:`sample_similarity` for samples known by their cell-type proportions.

    For in-silico bulk and simulated tumours (POPPY A.3.2, §3.4), whose compositions are
    the mixing ratios rather than counted cells.

    Parameters
    ----------
    proportions
        Samples x cell-type ids (CL terms); rows non-negative and summing to 1.
    ontology, graph
        The ontology to prune to the columns (default: the shipped Cell Ontology), or an
        already pruned graph containing every column.
    k, symmetrize, method, distances, n_jobs, client, progress
        As in :func:`sample_similarity`.

    Returns
    -------
    anndata.AnnData
        The same layout as :func:`sample_similarity` (``obs["n_cells"]`` is 0).
    """
    t0 = time.perf_counter()
    if graph is None:
        ontology = load_cell_ontology() if ontology is None else ontology
        graph = prune(ontology, [str(c) for c in proportions.columns])
    comp = compositions_from_proportions(proportions, graph)
    return _similarity(
        comp,
        ontology=ontology,
        k=k,
        symmetrize=symmetrize,
        method=method,
        distances=distances,
        n_jobs=n_jobs,
        client=client,
        progress=progress,
        params={"proportions": True},
        provenance=None,
        seconds_compositions=time.perf_counter() - t0,
    )


def _similarity(
    comp: Compositions,
    *,
    ontology: Ontology | None,
    k: int,
    symmetrize: Literal["union", "intersection"],
    method: Literal["auto", "exact", "tree"],
    distances: Literal["all", "knn"],
    n_jobs: int,
    client: Client | Literal["local"] | None,
    progress: bool,
    params: dict[str, object],
    provenance: str | None,
    seconds_compositions: float,
) -> anndata.AnnData:
    """Signals -> exact W1 (Eq. 1) -> kernel (Eq. 6), packed as a samples AnnData."""
    if distances not in ("all", "knn"):
        raise InputError("distances", f"must be 'all' or 'knn', got {distances!r}")
    if distances == "knn" and client is not None:
        raise InputError(
            "client",
            "is not used by distances='knn' (the neighbour search runs in threads)",
            fix="drop client, or use distances='all' on the cluster",
        )
    signals = comp.signals()
    t1 = time.perf_counter()
    metric = ontology_graph_metric(comp.graph)
    obsp: dict[str, object] = {}
    sigma: np.ndarray | None = None
    if distances == "all":
        D = pairwise_graph_emd(
            signals, graph=metric, method=method, n_jobs=n_jobs, client=client, progress=progress
        )
        t2 = time.perf_counter()
        K = diffusion_kernel(D, k=k, symmetrize=symmetrize)
        obsp["emd"] = D
    else:
        nn = knn_graph_emd(
            signals, graph=metric, k=k, method=method, n_jobs=n_jobs, progress=progress
        )
        t2 = time.perf_counter()
        K = diffusion_kernel(nn, k=max(1, nn.k), symmetrize=symmetrize)
        obsp["emd_knn"] = nn.distances
        sigma = nn.sigma
    t3 = time.perf_counter()
    var = pd.DataFrame({"label": list(comp.graph.labels)}, index=list(comp.graph.nodes))
    obs = pd.DataFrame(
        {"n_cells": comp.counts.reindex(comp.proportions.index).to_numpy()},
        index=comp.proportions.index.astype(str),
    )
    if sigma is not None:
        obs["sigma"] = sigma
    out = anndata.AnnData(
        X=comp.proportions.to_numpy(dtype=np.float64),
        obs=obs,
        var=var,
        layers={"signal": signals},
        obsp={**obsp, "similarity": K},
    )
    info: dict[str, object] = {
        "version": __version__,
        "ontology": "" if ontology is None else f"{ontology.name} {ontology.version}",
        "ontology_source": "" if ontology is None else ontology.source,
        "graph_nodes": len(comp.graph.nodes),
        "graph_edges_child_parent": np.asarray(comp.graph.edges),
        "graph_relations": list(comp.graph.relations),
        "graph_root": comp.graph.nodes[comp.graph.root],
        "graph_is_tree": bool(metric.is_tree()),
        "params": {
            **params,
            "k": k,
            "k_used": min(k, max(1, out.n_obs - 1)),
            "symmetrize": symmetrize,
            "method": method,
            "distances": distances,
        },
        "dropped_cells": {str(a): int(b) for a, b in comp.dropped.items()},
        "seconds": {"compositions": seconds_compositions, "emd": t2 - t1, "kernel": t3 - t2},
    }
    if provenance:
        info["provenance"] = provenance
    out.uns["cellbridge"] = info
    log.info("similarity: %d samples, %d nodes, %.2fs W1", out.n_obs, out.n_vars, t2 - t1)
    return out
