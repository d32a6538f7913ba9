"""Exact kNN under graph W1 without all pairs: the same neighbours, bits and kernel as the
full matrix (POPPY Eq. 1 and 6), the certified bound it rests on, and bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.errors import InputError
from cellbridge.ot import (
    Graph,
    NeighbourDistances,
    diffusion_kernel,
    knn_graph_emd,
    pairwise_graph_emd,
)
from cellbridge.ot import _knn_search as ks
from cellbridge.ot.graph_emd import _Network

if TYPE_CHECKING:
    from conftest import OntologyGraph

HYP = settings(max_examples=30, deadline=None, derandomize=True)


def dense_knn(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The oracle: sigma and the kNN relation of the full matrix, as diffusion_kernel does."""
    off = D.copy()
    np.fill_diagonal(off, np.inf)
    sigma = np.partition(off, k - 1, axis=1)[:, k - 1]
    return sigma, off <= sigma[:, None]


def assert_same_as_full(nn: NeighbourDistances, D: np.ndarray, k: int) -> None:
    sigma, knn = dense_knn(D, k)
    assert np.array_equal(nn.sigma, sigma)
    dist = nn.distances.tocsr()
    pattern = np.zeros_like(knn)
    rows = np.repeat(np.arange(len(D)), np.diff(dist.indptr))
    pattern[rows, dist.indices] = True
    assert np.array_equal(pattern, knn)
    assert np.array_equal(dist.data, D[rows, dist.indices])  # the same bits
    for i in range(len(D)):  # columns sorted within each row
        cols = dist.indices[dist.indptr[i] : dist.indptr[i + 1]]
        assert np.all(np.diff(cols) > 0)


def cohorts(og: OntologyGraph, rng: np.random.Generator, n: int, n_groups: int) -> np.ndarray:
    """Cohort-structured compositions (the case the search is built for) plus duplicates."""
    centres = rng.dirichlet(np.full(len(og.leaves), 0.3), size=n_groups)
    group = rng.integers(n_groups, size=n)
    comp = np.stack([rng.dirichlet(centres[g] * 30 + 1e-3) for g in group])
    X = comp @ og.up.T
    return X / X.sum(axis=1, keepdims=True)


# --- exactness against the full matrix -------------------------------------------------------


@pytest.mark.parametrize("k", [1, 7, 40])
def test_same_neighbours_bits_and_sigma_as_the_full_matrix(cl_graph: OntologyGraph, k: int) -> None:
    rng = np.random.default_rng(k)
    X = cohorts(cl_graph, rng, 240, 6)
    D = pairwise_graph_emd(X, graph=cl_graph.graph)
    nn = knn_graph_emd(X, graph=cl_graph.graph, k=k)
    assert nn.k == k
    assert_same_as_full(nn, D, k)


def test_prunes_most_pairs_on_structured_cohorts(cl_graph: OntologyGraph) -> None:
    """The point of the search: far fewer solves than the N(N-1)/2 of the full matrix."""
    rng = np.random.default_rng(0)
    n = 600
    X = cohorts(cl_graph, rng, n, 30)
    nn = knn_graph_emd(X, graph=cl_graph.graph, k=5)
    assert nn.n_solved < 0.25 * n * (n - 1) / 2


def test_ties_duplicates_and_rows_with_more_tied_neighbours_than_room(
    cl_graph: OntologyGraph,
) -> None:
    rng = np.random.default_rng(1)
    base = cl_graph.propagated(rng, 60)
    # 40 copies of one sample: 39 neighbours at distance 0 each, more than the 2k + 16
    # the first pass has room for; and a few pairs of duplicates elsewhere
    X = np.concatenate([base, np.repeat(base[:1], 40, axis=0), base[5:10]])
    D = pairwise_graph_emd(X, graph=cl_graph.graph)
    nn = knn_graph_emd(X, graph=cl_graph.graph, k=5)
    assert_same_as_full(nn, D, 5)
    assert nn.distances[60].nnz >= 40  # explicit zeros kept: the pattern is the relation
    assert (nn.distances[60].data == 0).sum() >= 40


def test_threads_potentials_and_seed_change_the_work_not_the_result(
    cl_graph: OntologyGraph,
) -> None:
    rng = np.random.default_rng(2)
    X = cohorts(cl_graph, rng, 200, 5)
    ref = knn_graph_emd(X, graph=cl_graph.graph, k=10)
    for kwargs in ({"n_jobs": 2}, {"n_potentials": 1, "seed": 3}, {"n_potentials": 700}):
        other = knn_graph_emd(X, graph=cl_graph.graph, k=10, **kwargs)  # type: ignore[arg-type]
        assert np.array_equal(other.sigma, ref.sigma)
        assert (other.distances != ref.distances).nnz == 0
        assert np.array_equal(other.distances.indices, ref.distances.indices)


@st.composite
def small_graphs(draw: st.DrawFn) -> Graph:
    """A random connected graph: a random tree plus chords, non-integer lengths."""
    n = draw(st.integers(3, 9))
    pairs = [(i, draw(st.integers(0, i - 1))) for i in range(1, n)]
    spare = [(i, j) for i in range(n) for j in range(i) if (i, j) not in pairs]
    pairs += draw(st.lists(st.sampled_from(spare), min_size=1, max_size=n, unique=True))
    lengths = draw(
        st.lists(st.floats(0.1, 5.0), min_size=len(pairs), max_size=len(pairs)).map(np.array)
    )
    return Graph(n, np.array(pairs), lengths, root=draw(st.integers(0, n - 1)))


@HYP
@given(graph=small_graphs(), seed=st.integers(0, 2**16), n=st.integers(2, 40), k=st.integers(1, 45))
def test_random_graphs_and_signals(graph: Graph, seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.full(graph.n_nodes, 0.7), size=n)
    X[rng.random(n) < 0.2] = X[0]  # ties
    D = pairwise_graph_emd(X, graph=graph)
    if k >= n:
        with pytest.warns(UserWarning, match="using k="):
            nn = knn_graph_emd(X, graph=graph, k=k)
        k = n - 1
    else:
        nn = knn_graph_emd(X, graph=graph, k=k)
    assert_same_as_full(nn, D, k)


# --- the bound -----------------------------------------------------------------------------


@HYP
@given(graph=small_graphs(), seed=st.integers(0, 2**16))
def test_every_solve_returns_a_certified_lower_bound(graph: Graph, seed: int) -> None:
    """Kantorovich–Rubinstein: the returned potential is 1-Lipschitz on every edge, attains
    W1 on its own pair, and bounds W1 from below on every other pair."""
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.full(graph.n_nodes, 0.5), size=12)
    pairs = rng.integers(12, size=(10, 2))
    net = _Network.build(graph, mass=1.0)
    U, status = ks.potentials(X, pairs, graph.weights, *net.graph_arrays, 1e-14, 1e-12, 100_000)
    assert not status.any()
    D = pairwise_graph_emd(X, graph=graph)
    a, b = graph.edges[:, 0], graph.edges[:, 1]
    assert np.all(np.abs(U[:, a] - U[:, b]) <= graph.weights * (1 + 1e-9))
    for t, (p, q) in enumerate(pairs):
        assert abs((X[p] - X[q]) @ U[t]) == pytest.approx(D[p, q], abs=1e-12)
    bounds = np.abs((X[:, None, :] - X[None, :, :]) @ U.T).max(axis=2)
    assert np.all(bounds <= D + 1e-12)


# --- trees, the tree method and the kernel -------------------------------------------------


def test_closed_form_on_a_tree_and_the_tree_method(cl_graph: OntologyGraph) -> None:
    rng = np.random.default_rng(3)
    X = cohorts(cl_graph, rng, 150, 4)
    g = cl_graph.graph
    tree = Graph(g.n_nodes, g.edges[g.spanning_tree], g.weights[g.spanning_tree], root=g.root)
    for graph, method in ((tree, "auto"), (g, "tree")):
        D = pairwise_graph_emd(X, graph=graph, method=method)  # type: ignore[arg-type]
        nn = knn_graph_emd(X, graph=graph, k=9, method=method)  # type: ignore[arg-type]
        assert_same_as_full(nn, D, 9)


@pytest.mark.parametrize("symmetrize", ["union", "intersection"])
def test_kernel_from_neighbours_is_the_kernel_from_the_full_matrix(
    cl_graph: OntologyGraph, symmetrize: str
) -> None:
    rng = np.random.default_rng(4)
    X = cohorts(cl_graph, rng, 220, 6)
    X[100:110] = X[:10]  # zero distances and zero bandwidths
    X[150:162] = X[11]
    D = pairwise_graph_emd(X, graph=cl_graph.graph)
    for k in (1, 6, 25):
        nn = knn_graph_emd(X, graph=cl_graph.graph, k=k)
        full = diffusion_kernel(D, k=k, symmetrize=symmetrize)  # type: ignore[arg-type]
        sparse = diffusion_kernel(nn, k=k, symmetrize=symmetrize)  # type: ignore[arg-type]
        assert isinstance(sparse, sp.csr_matrix)
        assert np.array_equal(full.toarray(), sparse.toarray())


def test_kernel_refuses_another_k() -> None:
    X = np.eye(4)
    square = Graph(4, np.array([[0, 1], [1, 2], [2, 3], [0, 3]]))
    nn = knn_graph_emd(X, graph=square, k=2)
    with pytest.raises(InputError, match=r"k.*found for k=2"):
        diffusion_kernel(nn, k=3)


def test_single_sample() -> None:
    path = Graph(3, np.array([[0, 1], [1, 2]]))
    nn = knn_graph_emd(np.array([[0.2, 0.3, 0.5]]), graph=path, k=5)
    assert nn.distances.shape == (1, 1)
    assert nn.distances.nnz == 0
    assert diffusion_kernel(nn, k=5).toarray().tolist() == [[1.0]]


# --- bad input -------------------------------------------------------------------------------

SQUARE = Graph(4, np.array([[0, 1], [1, 2], [2, 3], [0, 3]]))


@pytest.mark.parametrize(
    ("X", "kwargs", "field"),
    [
        (np.eye(4), {"k": 0}, "k"),
        (np.eye(4), {"k": 1.5}, "k"),
        (np.eye(4), {"k": True}, "k"),
        (np.eye(4), {"n_potentials": 0}, "n_potentials"),
        (np.eye(4), {"n_jobs": 0}, "n_jobs"),
        (np.eye(4), {"method": "fast"}, "method"),
        (np.full((2, 4), np.nan), {}, "X"),
        (-np.eye(4), {}, "X"),
        (np.eye(3), {}, "X"),
        (np.array([[1.0, 0, 0, 0], [0, 2.0, 0, 0]]), {}, "signals"),
        (np.empty((0, 4)), {}, "X"),
    ],
)
def test_bad_input_names_the_field(X: np.ndarray, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        knn_graph_emd(X, graph=SQUARE, **{"k": 1, **kwargs})  # type: ignore[arg-type]
    assert err.value.field == field
