"""Composition signals on the pruned ontology and their propagation (POPPY §2.1, A.1).

A sample's composition over cell types is propagated up the graph: a node receives the
mass of every type it is or lies above, so the root "cell" holds 1.0. This module holds
the result type and the propagation itself; :mod:`cellbridge.ontology.compositions`
builds the per-type counts from an AnnData.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellbridge._checks import require_unique_axes
from cellbridge.errors import InputError
from cellbridge.ontology.graph import OntologyGraph
from cellbridge.ontology.programs import is_program_node

__all__ = ["Compositions", "compositions_from_proportions", "propagate"]

_SUM_TOL = 1e-6


@dataclass(frozen=True)
class Compositions:
    """Propagated compositions of samples over the nodes of an :class:`OntologyGraph`.

    Parameters
    ----------
    proportions
        Samples x ``graph.nodes``: propagated proportions (root column 1.0).
    counts
        Cells per sample that were used; 0 where proportions were given directly.
    dropped
        Unmapped label -> cells dropped (only with ``strict=False``).
    graph
        The graph whose nodes are the columns.
    """

    proportions: pd.DataFrame
    counts: pd.Series
    dropped: dict[str, int]
    graph: OntologyGraph

    def signals(self) -> np.ndarray:
        """Propagated proportions rescaled to unit mass, for balanced OT (POPPY Eq. 1).

        .. math:: p_{sv} = \\frac{s_{sv}}{\\sum_{u} s_{su}}

        where :math:`s_{sv}` is the propagated proportion of node :math:`v` in sample
        :math:`s`. Propagation makes the total mass :math:`\\sum_u s_{su}` differ between
        samples (a cell of a deeper type adds to more ancestors), while the exact W1 /
        EMD of Eq. 1 transports between distributions of equal mass, so each row is
        divided by its own total.

        Returns
        -------
        numpy.ndarray
            float64, samples x nodes, each row summing to 1.
        """
        values = self.proportions.to_numpy(dtype=np.float64)
        return values / values.sum(axis=1, keepdims=True)


def propagate(direct: np.ndarray, graph: OntologyGraph) -> np.ndarray:
    """Propagate per-node mass up the graph: ``out[s, v] = sum_u A[v, u] direct[s, u]``.

    ``A`` is :meth:`OntologyGraph.ancestor_matrix` (``A[v, u] = 1`` if ``v`` is ``u`` or
    an ancestor of ``u``), so each unit of mass reaches every ancestor exactly once,
    whatever the number of paths (POPPY A.1).

    Parameters
    ----------
    direct
        Samples x nodes, the mass placed directly on each node.
    graph
        The graph; every node holding mass must lie below its root.

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``direct``.
    """
    ancestors = graph.ancestor_matrix()
    held = np.flatnonzero(np.asarray(direct).any(axis=0))
    # A hand-built graph may hold nodes that do not reach its root; the root would then
    # hold less than the whole sample.
    outside = [graph.nodes[u] for u in held.tolist() if ancestors[graph.root, u] == 0]
    if outside:
        raise InputError(
            "graph",
            f"nodes holding mass are not below the graph root {graph.nodes[graph.root]}",
            values=outside,
            fix="build the graph with prune(...) over these types",
        )
    return np.asarray(ancestors @ np.asarray(direct, dtype=np.float64).T).T


def compositions_from_proportions(props: pd.DataFrame, graph: OntologyGraph) -> Compositions:
    """Propagate known cell-type proportions (e.g. of in-silico bulk) over ``graph``.

    Each row is a composition over cell-type node ids (columns); node ``v`` receives the
    sum of the proportions of the types it is or is an ancestor of (POPPY A.1).

    Parameters
    ----------
    props
        Samples x cell-type ids; rows non-negative, finite and summing to 1 within 1e-6
        (they are then rescaled to sum to exactly 1). Graph nodes without a column are 0.
    graph
        Must contain every column as a cell-type node.

    Returns
    -------
    Compositions
        ``counts`` is 0 (no cells were counted) and ``dropped`` is empty.

    Raises
    ------
    InputError
        Duplicate names, unknown or program-node columns, non-numeric columns, or rows
        that are negative, non-finite or do not sum to 1 (rows named).
    """
    require_unique_axes(props, "props")
    unknown = [c for c in props.columns if str(c) not in graph or is_program_node(str(c))]
    if unknown:
        raise InputError(
            "props.columns",
            "not cell-type nodes of the graph",
            values=unknown,
            fix="use CL ids that the graph was pruned to",
        )
    not_numeric = [c for c in props.columns if not pd.api.types.is_numeric_dtype(props[c])]
    if not_numeric:
        raise InputError("props", "non-numeric columns", values=not_numeric, fix="convert to float")
    values = props.to_numpy(dtype=np.float64)
    totals = values.sum(axis=1)
    bad = (
        ~np.isfinite(values).all(axis=1)
        | (values < 0).any(axis=1)
        | ~(np.abs(totals - 1.0) <= _SUM_TOL)
    )
    if bad.any():
        raise InputError(
            "props",
            "rows must be finite, non-negative and sum to 1 (within 1e-6)",
            values=[
                f"{s} (sum {t:.6g})" for s, t in zip(props.index[bad], totals[bad], strict=True)
            ],
            fix="normalise each row to proportions",
        )
    direct = np.zeros((len(props), len(graph.nodes)), dtype=np.float64)
    direct[:, [graph.index(str(c)) for c in props.columns]] = values / totals[:, np.newaxis]
    index = pd.Index(props.index.astype(str), name=props.index.name)
    return Compositions(
        proportions=pd.DataFrame(
            propagate(direct, graph), index=index, columns=pd.Index(graph.nodes, name="node")
        ),
        counts=pd.Series(np.zeros(len(props), dtype=np.int64), index=index.copy(), name="n_cells"),
        dropped={},
        graph=graph,
    )
