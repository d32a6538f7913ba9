"""Per-sample cell-type compositions of an AnnData as ontology signals (POPPY §2.1, A.1).

The AnnData edge of the ontology subpackage: check ``obs``, map labels to CL ids, count
cells per (sample, type) and per (sample, program), prune the graph if none is given,
and propagate (:func:`cellbridge.ontology.signals.propagate`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata
import numpy as np
import pandas as pd

from cellbridge._checks import obs_labels, require_unique, require_unique_axes
from cellbridge.errors import InputError
from cellbridge.ontology.core import Ontology
from cellbridge.ontology.graph import OntologyGraph, prune
from cellbridge.ontology.io import load_cell_ontology
from cellbridge.ontology.mapping import map_labels
from cellbridge.ontology.programs import program_node_id
from cellbridge.ontology.signals import Compositions, propagate

__all__ = ["compositions"]

logger = logging.getLogger(__name__)


def _check_obs(adata: anndata.AnnData, sample_key: str, cell_type_key: str) -> None:
    missing = [k for k in (sample_key, cell_type_key) if k not in adata.obs.columns]
    if missing:
        raise InputError(
            "adata.obs",
            "missing columns",
            values=missing,
            fix=f"pass sample_key/cell_type_key among {list(adata.obs.columns)}",
        )
    require_unique(
        adata.obs_names,
        "adata.obs_names",
        what="cell names",
        fix="call adata.obs_names_make_unique()",
    )
    samples = obs_labels(adata, sample_key, field="sample_key")
    labels = adata.obs[cell_type_key]
    if labels.isna().any():
        where = samples[labels.isna().to_numpy()].astype(str).value_counts()
        raise InputError(
            f"adata.obs[{cell_type_key!r}]",
            "cells without a cell type (NaN), per sample",
            values=[f"{s}: {n}" for s, n in where.items()],
            fix="annotate or remove those cells",
        )


def _membership(programs: pd.DataFrame, obs_names: pd.Index) -> np.ndarray:
    require_unique_axes(programs, "programs")
    not_bool = [c for c in programs.columns if not pd.api.types.is_bool_dtype(programs[c])]
    if not_bool:
        raise InputError(
            "programs",
            "expected boolean membership columns",
            values=not_bool,
            fix="pass assign_programs(loadings), which thresholds the loadings",
        )
    absent = obs_names.difference(programs.index)
    if len(absent):
        raise InputError(
            "programs",
            "no membership row for cells",
            values=absent.tolist(),
            fix="give one row per cell of adata",
        )
    extra = programs.index.difference(obs_names)
    if len(extra):
        logger.info("programs: ignoring %d rows for cells that are not in adata", len(extra))
    return programs.reindex(obs_names).to_numpy(dtype=bool)


def _sample_order(samples: pd.Series) -> list[str]:
    if isinstance(samples.dtype, pd.CategoricalDtype):
        names = [str(c) for c in samples.cat.categories]
    else:
        names = sorted({str(s) for s in samples})
    return names


def compositions(
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
) -> Compositions:
    """Propagated cell-type (and gene-program) proportions per sample (POPPY §2.1, A.1).

    With :math:`C_s` the cells of sample :math:`s` and :math:`t(c)` the CL type of cell
    :math:`c`, the value of cell-type node :math:`v` is

    .. math:: s_{sv} = \\frac{|\\{c \\in C_s : v = t(c) \\text{ or } v \\text{ is an
              ancestor of } t(c)\\}|}{|C_s|},

    each cell counted once per node whatever the number of paths, so the root is 1.0.
    A program node :math:`(t, k)` holds the fraction of :math:`C_s` with type :math:`t`
    that belong to program :math:`k` (it is a leaf: program members are not added again
    to the cell types above it, they are already counted through their type).

    Parameters
    ----------
    adata
        Cells, with a sample column and a cell-type label column in ``obs``.
    sample_key, cell_type_key
        The ``obs`` columns.
    ontology
        For label mapping (and pruning); the shipped CL by default.
    graph
        The node set to report; by default ``prune(ontology, used types, programs=...)``.
        Pass one shared graph to compare datasets on the same nodes.
    mapping
        Label -> CL id overrides, see :func:`~cellbridge.ontology.map_labels`.
    programs
        Cells x programs of bool (:func:`~cellbridge.ontology.assign_programs`), indexed by
        ``obs_names``. A program gets a node under every cell type with member cells.
    strict
        If False, cells with unmapped labels are dropped (logged, returned in ``dropped``).
    min_cells
        Samples with fewer used cells are refused.

    Returns
    -------
    Compositions
        Indexed by sample name (categories order for a categorical column, else sorted).

    Raises
    ------
    InputError
        Missing ``obs`` columns, duplicate ``obs_names``, cells without sample or label,
        unmapped labels (``strict=True``), samples with fewer than ``min_cells`` cells
        (named), or types/program nodes absent from a given ``graph``.
    """
    if isinstance(min_cells, bool) or not isinstance(min_cells, int) or min_cells < 1:
        raise InputError("min_cells", "must be an integer >= 1", values=[min_cells])
    _check_obs(adata, sample_key, cell_type_key)
    ontology = ontology if ontology is not None else load_cell_ontology()
    samples = adata.obs[sample_key]
    labels = adata.obs[cell_type_key].astype(str).to_numpy(dtype=object)
    mapped = map_labels(
        labels, ontology, mapping=mapping, strict=strict, field=f"adata.obs[{cell_type_key!r}]"
    )
    used = np.array([t is not None for t in mapped.ids], dtype=bool)
    types = mapped.ids[used]
    member = _membership(programs, adata.obs_names)[used] if programs is not None else None
    program_names = [str(p) for p in programs.columns] if programs is not None else []

    per_type: dict[str, list[str]] = {}
    if member is not None:
        for j, name in enumerate(program_names):
            for cell_type in sorted(set(types[member[:, j]])):
                per_type.setdefault(cell_type, []).append(name)
    if graph is None:
        graph = prune(ontology, sorted(set(types)), programs=per_type)
    needed = sorted(set(types)) + [program_node_id(t, p) for t, ps in per_type.items() for p in ps]
    absent = [n for n in needed if n not in graph]
    if absent:
        raise InputError(
            "graph",
            "nodes needed by the data are missing",
            values=absent,
            fix="build the graph with prune(...) over these types and programs",
        )

    order = _sample_order(samples)
    sample_code = pd.Categorical(samples.astype(str).to_numpy()[used], categories=order).codes
    n_cells = np.bincount(sample_code, minlength=len(order))
    thin = [f"{s} ({n} cells)" for s, n in zip(order, n_cells, strict=True) if n < min_cells]
    if thin:
        raise InputError(
            f"adata.obs[{sample_key!r}]",
            f"samples with fewer than {min_cells} usable cells",
            values=thin,
            fix="remove those samples (or unused categories) or lower min_cells",
        )

    n_nodes = len(graph.nodes)
    # Work on distinct types, not cells: atlases have millions of cells, few types.
    distinct, type_code = np.unique(types.astype(str), return_inverse=True)
    node_of_type = np.array([graph.index(t) for t in distinct], dtype=np.int64)
    direct = np.zeros((len(order), n_nodes), dtype=np.float64)
    np.add.at(direct, (sample_code, node_of_type[type_code]), 1.0)
    counts = propagate(direct, graph)
    if member is not None:
        # Program nodes are leaves added after propagation: their members are already
        # counted in the types above through their own cell type.
        for j, name in enumerate(program_names):
            cells = member[:, j]
            node = {
                t: graph.index(program_node_id(t, name)) for t in per_type if name in per_type[t]
            }
            node_of_program = np.array([node.get(t, -1) for t in distinct], dtype=np.int64)
            np.add.at(counts, (sample_code[cells], node_of_program[type_code[cells]]), 1.0)
    index = pd.Index(order, name=sample_key)
    proportions = pd.DataFrame(
        counts / n_cells[:, np.newaxis], index=index, columns=pd.Index(graph.nodes, name="node")
    )
    return Compositions(
        proportions=proportions,
        counts=pd.Series(n_cells.astype(np.int64), index=index.copy(), name="n_cells"),
        dropped=dict(mapped.dropped),
        graph=graph,
    )
