"""The ground space: Graph construction, its shortest-path metric and its spanning tree."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components, shortest_path

from cellbridge.errors import InputError
from cellbridge.ot import Graph

if TYPE_CHECKING:
    from conftest import OntologyGraph


def test_edges_are_deduplicated_to_the_shortest_and_loops_dropped(
    fw: Callable[..., np.ndarray],
) -> None:
    edges = np.array([[0, 1], [1, 0], [1, 2], [2, 2], [2, 3], [3, 0], [1, 0]])
    weights = np.array([5.0, 2.5, 1.0, 0.1, 4.0, 9.0, 3.0])
    g = Graph(4, edges, weights)
    got = {(int(a), int(b)): float(w) for (a, b), w in zip(g.edges, g.weights, strict=True)}
    assert got == {(0, 1): 2.5, (1, 2): 1.0, (2, 3): 4.0, (0, 3): 9.0}
    np.testing.assert_allclose(g.shortest_paths(), fw(4, edges, weights), rtol=0, atol=1e-12)
    assert not g.is_tree()
    assert Graph(4, edges[[0, 2, 4]]).is_tree()


def test_adjacency_is_symmetric_with_edge_lengths() -> None:
    g = Graph(3, np.array([[2, 0], [0, 1]]), np.array([1.5, 0.25]))
    A = g.adjacency.toarray()
    np.testing.assert_array_equal(A, [[0, 0.25, 1.5], [0.25, 0, 0], [1.5, 0, 0]])


def test_shortest_paths_match_floyd_warshall_on_the_cell_ontology(
    cl_graph: OntologyGraph, fw: Callable[..., np.ndarray]
) -> None:
    D = cl_graph.graph.shortest_paths()
    np.testing.assert_array_equal(D, fw(cl_graph.n_nodes, cl_graph.edges))
    # Hop counts: the distance from the root to a term is its shortest ancestor path.
    assert D[cl_graph.graph.root].max() >= 3


def test_spanning_tree_is_a_shortest_path_tree(
    cl_graph: OntologyGraph, fw: Callable[..., np.ndarray]
) -> None:
    g = cl_graph.graph
    mask = g.spanning_tree
    assert mask.dtype == bool
    assert mask.sum() == g.n_nodes - 1
    tree_edges, tree_w = g.edges[mask], g.weights[mask]
    tree = Graph(g.n_nodes, tree_edges, tree_w, root=g.root)
    assert tree.is_tree()
    assert connected_components(tree.adjacency, directed=False)[0] == 1
    # Every node is as far from the root along the tree as in the whole graph.
    on_graph = fw(g.n_nodes, cl_graph.edges)[g.root]
    on_tree = fw(g.n_nodes, tree_edges, tree_w)[g.root]
    np.testing.assert_array_equal(on_tree, on_graph)


def test_spanning_tree_on_a_weighted_cycle_avoids_the_long_way() -> None:
    # Square 0-1-2-3-0 with the long edge 2-3: the shortest-path tree from 0 drops it.
    g = Graph(4, np.array([[0, 1], [1, 2], [2, 3], [3, 0]]), np.array([1.0, 1.0, 5.0, 1.0]))
    kept = {tuple(e) for e in g.edges[g.spanning_tree].tolist()}
    assert kept == {(0, 1), (1, 2), (0, 3)}


def test_subtree_matrix_gives_the_mass_below_each_node() -> None:
    # 0 is the root; 1 and 2 hang from 0, 3 and 4 from 1.
    g = Graph(5, np.array([[1, 0], [2, 0], [3, 1], [4, 1]]), np.array([1.0, 2.0, 3.0, 4.0]))
    T, lengths = g.subtree_matrix(tree=np.ones(g.n_edges, dtype=bool))
    p = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    below = {1: 0.2 + 0.15 + 0.25, 2: 0.3, 3: 0.15, 4: 0.25}
    edge_len = {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}
    got = sorted(zip((T @ p).round(12).tolist(), lengths.tolist(), strict=True))
    assert got == sorted((round(below[v], 12), edge_len[v]) for v in below)


def test_single_node_graph() -> None:
    g = Graph(1, np.zeros((0, 2), dtype=np.int64))
    assert g.is_tree()
    assert g.n_edges == 0
    np.testing.assert_array_equal(g.shortest_paths(), [[0.0]])


def test_shortest_paths_agree_with_scipy_dijkstra_on_random_weights(
    fw: Callable[..., np.ndarray],
) -> None:
    rng = np.random.default_rng(3)
    n = 40
    edges = np.array([(i, rng.integers(i)) for i in range(1, n)] + [(0, 39), (5, 30), (7, 8)])
    w = rng.uniform(0.1, 3.0, size=len(edges))
    g = Graph(n, edges, w, root=7)
    np.testing.assert_allclose(g.shortest_paths(), fw(n, edges, w), rtol=0, atol=1e-12)
    dist = shortest_path(g.adjacency, directed=False, indices=7)
    np.testing.assert_allclose(dist, fw(n, edges, w)[7], rtol=0, atol=1e-12)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "match"),
    [
        (np.array([[0, 1], [1, 5]]), r"outside 0\.\.3 \(5\)"),
        (np.array([[0, 1], [-1, 2], [2, 7], [3, 9]]), r"outside 0\.\.3 \(-1, 7, 9\)"),
        (np.array([[0.0, 1.0]]), r"integer array, got shape \(1, 2\) of float64"),
        (np.array([0, 1, 2]), r"got shape \(3,\)"),
        (np.array([[0, 1, 2]]), r"got shape \(1, 3\)"),
    ],
)
def test_bad_edges_are_refused(edges: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Graph(4, edges)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0, 0.0, 2.0], r"positive and finite \(0\.0\)"),
        ([1.0, -2.0, 2.0], r"\(-2\.0\)"),
        ([np.nan, 1.0, 2.0], r"\(nan\)"),
        ([1.0, 1.0, np.inf], r"\(inf\)"),
        ([1.0, 2.0], r"one value per edge \(3\)"),
    ],
)
def test_bad_weights_are_refused(weights: list[float], match: str) -> None:
    with pytest.raises(InputError, match=match):
        Graph(3, np.array([[0, 1], [1, 2], [0, 2]]), np.array(weights))


def test_disconnected_graph_names_the_stray_nodes() -> None:
    with pytest.raises(InputError, match=r"disconnected \(2 components\).*\(3, 4\)"):
        Graph(5, np.array([[0, 1], [1, 2], [3, 4]]))
    # An isolated node counts too, also when it is the only stray one.
    with pytest.raises(InputError, match=r"disconnected.*\(2\)"):
        Graph(3, np.array([[0, 1]]))


def test_disconnected_relative_to_the_root() -> None:
    with pytest.raises(InputError, match=r"disconnected.*\(0, 1\)"):
        Graph(4, np.array([[0, 1], [2, 3]]), root=3)


@pytest.mark.parametrize(
    ("n_nodes", "root", "match"),
    [(0, 0, r"n_nodes: must be at least 1, got 0"), (3, 3, r"root: .*0\.\.2, got 3")],
)
def test_bad_sizes_and_roots(n_nodes: int, root: int, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Graph(n_nodes, np.zeros((0, 2), dtype=np.int64), root=root)
