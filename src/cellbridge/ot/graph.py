"""A weighted undirected graph held as arrays, the ground space of graph W1."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components, shortest_path

from cellbridge.errors import InputError

__all__ = ["Graph"]


@dataclass(frozen=True, eq=False)
class Graph:
    """An undirected graph with positive edge lengths, checked on construction.

    Parameters
    ----------
    n_nodes
        Number of nodes; nodes are ``0 .. n_nodes - 1``.
    edges
        ``(E, 2)`` integer array of node pairs. The direction is ignored; parallel edges
        keep the shortest length.
    weights
        ``(E,)`` positive, finite edge lengths; ``None`` means all 1 (hop counts, as for
        the Cell Ontology in POPPY §2.1).
    root
        The node the spanning trees hang from (``CL:0000000`` for the ontology).
    """

    n_nodes: int
    edges: np.ndarray
    weights: np.ndarray
    root: int = 0

    def __init__(
        self,
        n_nodes: int,
        edges: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        root: int = 0,
    ) -> None:
        edges = np.asarray(edges)
        if edges.ndim != 2 or edges.shape[1] != 2 or not np.issubdtype(edges.dtype, np.integer):
            raise InputError(
                "edges",
                f"must be an (E, 2) integer array, got shape {edges.shape} of {edges.dtype}",
                fix="pass node index pairs, e.g. np.array([[child, parent], ...])",
            )
        if n_nodes < 1:
            raise InputError("n_nodes", f"must be at least 1, got {n_nodes}")
        bad = np.unique(edges[(edges < 0) | (edges >= n_nodes)])
        if bad.size:
            raise InputError(
                "edges",
                f"refer to nodes outside 0..{n_nodes - 1}",
                values=bad.tolist(),
                fix="number nodes from 0 and pass n_nodes = the number of nodes",
            )
        w = np.ones(len(edges)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(edges),):
            raise InputError("weights", f"must have one value per edge ({len(edges)})")
        bad_w = w[~np.isfinite(w) | (w <= 0)]
        if bad_w.size:
            raise InputError(
                "weights",
                "edge lengths must be positive and finite",
                values=bad_w.tolist(),
                fix="drop zero-length edges by merging their nodes, or give them a length",
            )
        loops = edges[:, 0] == edges[:, 1]
        edges, w = edges[~loops], w[~loops]
        # One edge per node pair, with the shortest length: the metric only sees that one.
        lo, hi = np.minimum(edges[:, 0], edges[:, 1]), np.maximum(edges[:, 0], edges[:, 1])
        key = lo.astype(np.int64) * n_nodes + hi
        order = np.lexsort((w, key))
        first = np.ones(len(order), dtype=bool)
        first[1:] = key[order][1:] != key[order][:-1]
        keep = order[first]
        object.__setattr__(self, "n_nodes", int(n_nodes))
        object.__setattr__(self, "edges", np.stack([lo[keep], hi[keep]], axis=1).astype(np.int64))
        object.__setattr__(self, "weights", w[keep])
        if not 0 <= root < n_nodes:
            raise InputError("root", f"must be a node index in 0..{n_nodes - 1}, got {root}")
        object.__setattr__(self, "root", int(root))
        n_comp, labels = connected_components(self.adjacency, directed=False)
        if n_comp > 1:
            stray = np.flatnonzero(labels != labels[self.root])
            raise InputError(
                "edges",
                f"the graph is disconnected ({n_comp} components); W1 between signals on "
                "different components is undefined",
                values=stray.tolist(),
                fix="prune the ontology to terms that reach the root, or add the missing edges",
            )

    @property
    def n_edges(self) -> int:
        """Number of (deduplicated) edges."""
        return int(self.edges.shape[0])

    @cached_property
    def adjacency(self) -> sp.csr_matrix:
        """Symmetric sparse adjacency with edge lengths as values."""
        e, w, n = self.edges, self.weights, self.n_nodes
        a = sp.coo_matrix(
            (
                np.concatenate([w, w]),
                (np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]])),
            ),
            shape=(n, n),
        )
        return a.tocsr()

    def is_tree(self) -> bool:
        """Whether the (connected) graph has no cycle."""
        return self.n_edges == self.n_nodes - 1

    def shortest_paths(self) -> np.ndarray:
        """Dense all-pairs shortest-path lengths (the ground metric d_kl of POPPY Eq. 1)."""
        return np.asarray(shortest_path(self.adjacency, directed=False))

    @cached_property
    def spanning_tree(self) -> np.ndarray:
        """Boolean mask over edges of a shortest-path (Dijkstra) tree from the root.

        On the ontology this keeps, for every term, one parent on a shortest route to
        ``cell``; it is the tree of the optional tree approximation.
        """
        dist, pred = shortest_path(
            self.adjacency, directed=False, indices=self.root, return_predecessors=True
        )
        del dist
        child = np.flatnonzero(pred >= 0)
        lookup = {(int(a), int(b)): i for i, (a, b) in enumerate(self.edges)}
        mask = np.zeros(self.n_edges, dtype=bool)
        for v in child:
            u = int(pred[v])
            mask[lookup[(min(u, int(v)), max(u, int(v)))]] = True
        return mask

    def subtree_matrix(self, *, tree: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
        """Subtree indicators of a spanning tree and the length of each node's parent edge.

        Returns ``(T, w)`` with ``T[v, u] = 1`` when ``u`` lies in the subtree of ``v``
        (non-root ``v`` only) so that ``T @ p`` is the mass each parent edge carries.
        """
        mask = self.spanning_tree if tree is None else tree
        e, w = self.edges[mask], self.weights[mask]
        n = self.n_nodes
        adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
        order, pred = breadth_first_order(adj, self.root, directed=False)
        edge_len = {(int(a), int(b)): float(x) for (a, b), x in zip(e, w, strict=True)}
        rows: list[int] = []
        cols: list[int] = []
        # Walk nodes deepest first; each node's subtree is itself plus its children's.
        members: dict[int, list[int]] = {int(v): [int(v)] for v in order}
        for v in order[::-1]:
            p = int(pred[v])
            if p >= 0:
                members[p].extend(members[int(v)])
        non_root = [int(v) for v in order if pred[v] >= 0]
        lengths = np.empty(len(non_root))
        for k, v in enumerate(non_root):
            rows.extend([k] * len(members[v]))
            cols.extend(members[v])
            p = int(pred[v])
            lengths[k] = edge_len[(min(p, v), max(p, v))]
        T = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(non_root), n))
        return T, lengths
