"""Exact W1 (earth mover's distance) between signals on a graph — POPPY Eq. 1."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.spatial.distance import cdist

from cellbridge._progress import progress_bar
from cellbridge.distributed import check_client, dask_client, map_chunks
from cellbridge.errors import CellbridgeError, InputError
from cellbridge.ot import _network_simplex as ns
from cellbridge.ot.graph import Graph

if TYPE_CHECKING:  # pragma: no cover - typing only
    from distributed import Client

__all__ = ["graph_emd", "pairwise_graph_emd"]

log = logging.getLogger(__name__)

Method = Literal["auto", "exact", "tree"]

# Relative tolerances: a flow below _TOL_FLOW times a row's total mass is treated as zero,
# a dual violation below _TOL_PRICE times the longest edge as none. Absolute ones would
# stop the solver early when masses or lengths are small (lengths ~1e-12: off by ~30%).
# For proportions the error this allows is at most _TOL_FLOW * sum(weights), far under
# the 1e-9 agreement with POT.
_TOL_FLOW = 1e-14
_TOL_PRICE = 1e-12
# Work is handed to threads in this many row chunks (about equal numbers of pairs), often
# enough for a smooth progress bar. Each pair is solved from the same starting tree, so the
# chunking never changes a value.
_N_CHUNKS = 256
# On a Dask cluster: this many chunks per worker thread, enough to even out chunks of
# unequal cost without paying the per-task overhead (a few ms) more often than needed.
_CHUNKS_PER_DASK_THREAD = 8
# The solver gives up on a pair after this many pivots per edge (plus a constant); far
# above what any CL graph needs (a few per edge).
_PIVOTS_PER_EDGE = 50
_PIVOTS_MIN = 1000


def _check_signals(name: str, X: np.ndarray, n_nodes: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != n_nodes:
        raise InputError(
            name,
            f"must be (samples, {n_nodes} nodes), got shape {X.shape}",
            fix="give one column per graph node, in the graph's node order",
        )
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise InputError(name, f"must be real numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad_rows.size:
        raise InputError(
            name,
            "contains NaN or infinite mass in rows",
            values=bad_rows.tolist(),
            fix="fix or remove those samples upstream; cellbridge does not impute",
        )
    neg_rows = np.flatnonzero((X < 0).any(axis=1))
    if neg_rows.size:
        raise InputError(
            name,
            "contains negative mass in rows",
            values=neg_rows.tolist(),
            fix="signals are proportions: every entry must be >= 0",
        )
    return X


def _row_name(i: int, n_x: int) -> str:
    return f"X row {i}" if i < n_x else f"Y row {i - n_x}"


def _check_balanced(X: np.ndarray, Y: np.ndarray | None) -> None:
    """All rows of ``X`` and ``Y`` carry the same mass; ``Y`` is None in the symmetric form."""
    totals = X.sum(axis=1) if Y is None else np.concatenate([X.sum(axis=1), Y.sum(axis=1)])
    if totals.size == 0:
        return
    ref = totals[0]
    off = np.flatnonzero(np.abs(totals - ref) > 1e-9 * abs(ref))
    if off.size:
        raise InputError(
            "signals",
            f"rows do not all carry the same total mass (first row: {ref:.12g}); exact W1 is "
            "balanced OT",
            values=[f"{_row_name(int(i), len(X))}: {totals[i]:.12g}" for i in off],
            fix="normalise each row to sum to 1 (Compositions.signals() does this)",
        )
    if ref <= 0:
        raise InputError("signals", "rows carry no mass", fix="give each sample a composition")


def _resolve_method(graph: Graph, method: Method) -> Literal["exact", "tree", "closed"]:
    if method not in ("auto", "exact", "tree"):
        raise InputError("method", f"must be 'auto', 'exact' or 'tree', got {method!r}")
    if graph.is_tree():
        return "closed"
    if method == "tree":
        log.info(
            "graph W1 on a spanning tree of a graph with cycles: an upper bound on the exact "
            "value (tree paths are never shorter than graph paths)"
        )
        return "tree"
    return "exact"


def _tree_embedding(X: np.ndarray, graph: Graph, tree: np.ndarray | None) -> np.ndarray:
    """Weighted subtree masses: W1 on a tree is the L1 distance between these rows."""
    T, lengths = graph.subtree_matrix(tree=tree)
    return np.asarray((T @ X.T).T * lengths)


def _usable_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. in containers)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1  # pragma: no cover - platforms without affinity


def _row_chunks(n_rows: int, symmetric: bool, n_chunks: int) -> list[np.ndarray]:
    """Split rows into chunks of about equal numbers of pairs (rows shrink if symmetric)."""
    cost = (n_rows - np.arange(n_rows)) if symmetric else np.ones(n_rows)
    edges = np.searchsorted(np.cumsum(cost), np.linspace(0, cost.sum(), n_chunks + 1)[1:-1])
    return [c for c in np.split(np.arange(n_rows), edges) if c.size]


def pairwise_graph_emd(
    X: np.ndarray,
    Y: np.ndarray | None = None,
    *,
    graph: Graph,
    method: Method = "auto",
    n_jobs: int = 1,
    client: Client | Literal["local"] | None = None,
    progress: bool = False,
) -> np.ndarray:
    r"""Exact W1 between every pair of signals on a graph with its shortest-path metric.

    Implements POPPY Eq. 1,

    .. math::

        \mathrm{EMD}(i, j) = \min_{T \in \Pi(p_i, p_j)} \sum_{k,l} T_{kl}\, d_{kl},

    with :math:`d_{kl}` the shortest-path length between nodes :math:`k, l` of ``graph``.
    It is solved in its equivalent flow form on the graph's own edges,
    :math:`\min_f \sum_e w_e |f_e|` subject to :math:`B f = p_i - p_j`, which gives the same
    value exactly and is much smaller than the dense :math:`K \times K` problem.

    Parameters
    ----------
    X
        ``(N, n_nodes)`` non-negative signals, every row with the same total mass
        (:meth:`cellbridge.ontology.Compositions.signals` gives rows summing to 1).
    Y
        ``(M, n_nodes)`` second set for the cross form; ``None`` for the symmetric
        ``N x N`` form.
    graph
        The ground space; connected, positive edge lengths.
    method
        ``"auto"``/``"exact"``: exact W1 (closed form when the graph is a tree, network
        simplex otherwise). ``"tree"``: the closed form on a shortest-path spanning tree
        of a graph with cycles — an *upper bound* on the exact value, used only when asked.
    n_jobs
        Threads (``-1`` = all cores). The compiled solver releases the GIL. Ignored when
        ``client`` is given.
    client
        Run the network simplex on a Dask cluster: a :class:`dask.distributed.Client`
        (left open), ``"local"`` (a two-worker :class:`~dask.distributed.LocalCluster` on
        loopback, started and closed for this call) or ``None`` (this process; default).
        Rows are cut into chunks of about equal numbers of pairs; the signals and the
        graph's solver arrays are sent to every worker once, each worker returns its
        block, and the blocks are assembled here. Each pair is solved from the same
        starting tree, so the result is bit-identical to ``client=None``. The closed forms
        (tree graphs, ``method="tree"``) are one ``cdist`` and always run here. See
        ``docs/cluster.md``.
    progress
        Show a progress bar.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` symmetric with a zero diagonal, or ``(N, M)``; float64.

    Raises
    ------
    InputError
        Bad signals, ``method``, ``n_jobs`` or ``client``.
    CellbridgeError
        The solver hit its pivot limit for some pair (in this process or on a worker).

    Examples
    --------
    >>> import numpy as np
    >>> from cellbridge.ot import Graph, pairwise_graph_emd
    >>> path = Graph(3, np.array([[0, 1], [1, 2]]))
    >>> pairwise_graph_emd(np.array([[1.0, 0, 0], [0, 0, 1.0]]), graph=path)
    array([[0., 2.],
           [2., 0.]])
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer):
        raise InputError("n_jobs", f"must be an integer, got {n_jobs!r}")
    if n_jobs < 1 and n_jobs != -1:
        raise InputError("n_jobs", f"must be >= 1 or -1 (all cores), got {n_jobs}")
    check_client(client)
    X = _check_signals("X", X, graph.n_nodes)
    symmetric = Y is None
    Yc = X if Y is None else _check_signals("Y", Y, graph.n_nodes)
    _check_balanced(X, None if symmetric else Yc)
    how = _resolve_method(graph, method)
    if how in ("closed", "tree"):
        # One cdist over subtree masses: cheaper than sending the signals to a cluster.
        tree = None if how == "tree" else np.ones(graph.n_edges, dtype=bool)
        EX = _tree_embedding(X, graph, tree)
        EY = EX if symmetric else _tree_embedding(Yc, graph, tree)
        D = cdist(EX, EY, metric="cityblock")
        if symmetric:
            np.fill_diagonal(D, 0.0)
        return D
    net = _Network.build(graph, mass=float(X[0].sum()) if len(X) else 1.0)
    if client is None or X.shape[0] == 0 or Yc.shape[0] == 0:
        out, status = _exact_pairs(
            net, X, Yc, symmetric=symmetric, n_jobs=n_jobs, progress=progress
        )
    else:
        with dask_client(client) as dask:
            assert dask is not None  # client is not None here
            out, status = _exact_pairs_dask(
                dask, net, X, None if symmetric else Yc, progress=progress
            )
    failed = np.argwhere(status != 0)
    if failed.size:
        raise CellbridgeError(
            f"graph W1 did not converge for {len(failed)} pairs (first: {failed[:3].tolist()}); "
            "please report this with the inputs"
        )
    if symmetric:
        out = out + out.T
    return out


@dataclass(frozen=True)
class _Network:
    """What the solver needs of the graph: built once, shared by threads or Dask workers.

    ``tree0`` (the shortest-path tree from the root) with ``order0``/``parent0``/
    ``pedge0``/``depth0`` (its BFS from node 0) is the starting basis of every pair.
    """

    weights: np.ndarray
    adj_ptr: np.ndarray
    adj_nbr: np.ndarray
    adj_edge: np.ndarray
    tree0: np.ndarray
    order0: np.ndarray
    parent0: np.ndarray
    pedge0: np.ndarray
    depth0: np.ndarray
    eu: np.ndarray
    ev: np.ndarray
    tol_flow: float
    tol_price: float
    max_pivots: int

    @classmethod
    def build(cls, graph: Graph, *, mass: float) -> _Network:
        """The solver's arrays for ``graph``; ``mass`` is the mass every row carries."""
        eu, ev = graph.edges[:, 0].copy(), graph.edges[:, 1].copy()
        # CSR adjacency listing, for every neighbour, the edge index that reaches it.
        nbr = np.concatenate([ev, eu])
        src = np.concatenate([eu, ev])
        eid = np.concatenate([np.arange(graph.n_edges), np.arange(graph.n_edges)])
        order = np.argsort(src, kind="stable")
        adj_ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=graph.n_nodes))])
        adj_nbr, adj_edge = nbr[order].astype(np.int64), eid[order].astype(np.int64)
        # The solver roots its trees at node 0 (any root gives the same optimum).
        tree0 = graph.spanning_tree.copy()
        n = graph.n_nodes
        order0, parent0, pedge0, depth0 = (np.empty(n, dtype=np.int64) for _ in range(4))
        ns.bfs_tree(0, adj_ptr, adj_nbr, adj_edge, tree0, order0, parent0, pedge0, depth0)
        return cls(
            weights=graph.weights,
            adj_ptr=adj_ptr,
            adj_nbr=adj_nbr,
            adj_edge=adj_edge,
            tree0=tree0,
            order0=order0,
            parent0=parent0,
            pedge0=pedge0,
            depth0=depth0,
            eu=eu,
            ev=ev,
            tol_flow=_TOL_FLOW * mass,
            tol_price=_TOL_PRICE * float(graph.weights.max()),
            max_pivots=_PIVOTS_PER_EDGE * graph.n_edges + _PIVOTS_MIN,
        )

    @property
    def graph_arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays the compiled kernels take after the weights, in their order."""
        return (
            self.adj_ptr,
            self.adj_nbr,
            self.adj_edge,
            self.tree0,
            self.order0,
            self.parent0,
            self.pedge0,
            self.depth0,
            self.eu,
            self.ev,
        )

    def solve_rows(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        rows: np.ndarray,
        symmetric: bool,
        out: np.ndarray,
        status: np.ndarray,
    ) -> int:
        """W1 of ``X[i]`` to every ``Y[j]`` (``j > i`` if symmetric) into ``out[i, j]``."""
        # (mypy reads numba's dispatcher signature, not the compiled function's)
        return int(
            ns.solve_rows(  # type: ignore[call-arg]
                X,
                Y,
                rows,
                symmetric,
                self.weights,
                *self.graph_arrays,
                self.tol_flow,
                self.tol_price,
                self.max_pivots,
                out,
                status,
            )
        )


def _n_pairs(rows: np.ndarray, n_x: int, n_y: int, symmetric: bool) -> int:
    return int((n_x - rows - 1).sum()) if symmetric else rows.size * n_y


def _exact_pairs(
    net: _Network,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    symmetric: bool,
    n_jobs: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve every pair in this process; returns the values (upper triangle if symmetric)
    and the solver status of each pair."""
    n_threads = _usable_cores() if n_jobs == -1 else n_jobs
    out = np.zeros((X.shape[0], Y.shape[0]))
    status = np.zeros(out.shape, dtype=np.int8)
    chunks = _row_chunks(X.shape[0], symmetric, _N_CHUNKS)

    def work(rows: np.ndarray) -> int:
        return net.solve_rows(X, Y, rows, symmetric, out, status)

    def n_pairs(rows: np.ndarray) -> int:
        return _n_pairs(rows, X.shape[0], Y.shape[0], symmetric)

    with progress_bar("graph W1", total=sum(map(n_pairs, chunks)), enabled=progress) as advance:
        if n_threads == 1:
            for rows in chunks:
                work(rows)
                advance(n_pairs(rows))
        else:
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                for rows, _ in zip(chunks, pool.map(work, chunks), strict=True):
                    advance(n_pairs(rows))
    return out, status


def _solve_block(
    bounds: tuple[int, int], net: _Network, X: np.ndarray, Y: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One Dask task: rows ``lo:hi`` of the pairwise matrix, as their own block.

    Symmetric form (``Y is None``): the block holds columns ``lo:`` only (pairs ``j > i``);
    ``X[lo:]`` stands for both sides, so local indices keep the order of the global ones
    and every pair is the same computation as in :func:`_exact_pairs`. Cross form: the
    block holds every column.
    """
    lo, hi = bounds
    Xb, Yb = (X[lo:], X[lo:]) if Y is None else (X[lo:hi], Y)
    out = np.zeros((hi - lo, Yb.shape[0]))
    status = np.zeros(out.shape, dtype=np.int8)
    net.solve_rows(Xb, Yb, np.arange(hi - lo, dtype=np.int64), Y is None, out, status)
    return out, status


def _exact_pairs_dask(
    client: Client, net: _Network, X: np.ndarray, Y: np.ndarray | None, *, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_exact_pairs` on a Dask cluster: blocks of rows solved by the workers."""
    symmetric = Y is None
    n_y = X.shape[0] if Y is None else Y.shape[0]
    threads = sum(client.nthreads().values())  # 0 while an adaptive cluster has no workers
    n_chunks = _CHUNKS_PER_DASK_THREAD * threads if threads else _N_CHUNKS
    chunks = _row_chunks(X.shape[0], symmetric, n_chunks)
    blocks = map_chunks(
        client,
        _solve_block,
        [(int(rows[0]), int(rows[-1]) + 1) for rows in chunks],
        shared=(net, X) if Y is None else (net, X, Y),
        weights=[_n_pairs(rows, X.shape[0], n_y, symmetric) for rows in chunks],
        progress=progress,
        description="graph W1 (dask)",
    )
    out = np.zeros((X.shape[0], n_y))
    status = np.zeros(out.shape, dtype=np.int8)
    for rows, (block, block_status) in zip(chunks, blocks, strict=True):
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        cols = slice(lo, None) if symmetric else slice(None)
        out[lo:hi, cols] = block
        status[lo:hi, cols] = block_status
    return out, status


def graph_emd(p: np.ndarray, q: np.ndarray, *, graph: Graph, method: Method = "auto") -> float:
    """Exact W1 between two signals on ``graph`` (see :func:`pairwise_graph_emd`).

    Parameters
    ----------
    p, q
        ``(n_nodes,)`` non-negative signals with the same total mass.
    graph
        The ground space; connected, positive edge lengths.
    method
        ``"auto"``/``"exact"``: exact W1; ``"tree"``: the upper bound on a shortest-path
        spanning tree (as for :func:`pairwise_graph_emd`).
    """
    return float(
        pairwise_graph_emd(np.atleast_2d(p), np.atleast_2d(q), graph=graph, method=method)[0, 0]
    )
