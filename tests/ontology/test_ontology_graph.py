"""Pruning (POPPY A.1): closure under ancestors, program children, index form."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.errors import InputError
from cellbridge.ontology import Ontology, OntologyGraph, load_cell_ontology, prune

ROOT = "CL:0000000"


def _sample_terms() -> list[str]:
    cl = load_cell_ontology()
    live = sorted(
        t for t, term in cl.terms.items() if not term.deprecated and ROOT in cl.ancestors(t)
    )
    return np.random.default_rng(3).choice(live, size=200, replace=False).tolist()


SAMPLE = _sample_terms()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(SAMPLE), min_size=0, max_size=8))
def test_prune_is_the_ancestor_closure(terms: list[str]) -> None:
    cl = load_cell_ontology()
    graph = prune(cl, terms)
    expected = {ROOT}.union(*({t} | cl.ancestors(t) for t in terms))
    assert set(graph.nodes) == expected
    assert list(graph.nodes) == sorted(expected)
    assert graph.nodes[graph.root] == ROOT
    # Edges are exactly the ontology's edges among kept nodes.
    kept_edges = {(c, p) for c, p, _ in cl.edges if c in expected and p in expected}
    assert {(graph.nodes[c], graph.nodes[p]) for c, p in graph.edges.tolist()} == kept_edges
    assert graph.labels == tuple(cl.label(n) for n in graph.nodes)
    # Every kept node reaches the root.
    nxg = graph.to_networkx()
    assert all(n == ROOT or nx.has_path(nxg, n, ROOT) for n in graph.nodes)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(SAMPLE), min_size=1, max_size=6))
def test_ancestor_matrix_matches_networkx(terms: list[str]) -> None:
    graph = prune(load_cell_ontology(), terms)
    nxg = graph.to_networkx()
    dense = graph.ancestor_matrix().toarray()
    for u, node in enumerate(graph.nodes):
        above = nx.descendants(nxg, node) | {node}  # child -> parent edges
        assert {graph.nodes[v] for v in np.flatnonzero(dense[:, u])} == above


def test_programs_are_children_of_their_type(cl: Ontology) -> None:
    graph = prune(cl, ["CL:0000084"], programs={"CL:0000236": ["MP1", "MP2"]})
    node = graph.index("CL:0000236/program:MP1")
    assert graph.labels[node] == "MP1 (B cell)"
    rows = np.flatnonzero(graph.edges[:, 0] == node)
    assert len(rows) == 1
    assert graph.nodes[graph.edges[rows[0], 1]] == "CL:0000236"
    assert graph.relations[rows[0]] == "program_of"
    assert "CL:0000084" in graph and "CL:0000945" in graph
    assert graph.ancestor_matrix()[graph.index("CL:0000236"), node] == 1


def test_merged_relations_and_tree_check(toy: Ontology) -> None:
    graph = prune(toy, ["CL:0000010", "CL:0000002"])
    assert graph.nodes == (ROOT, "CL:0000001", "CL:0000002", "CL:0000003", "CL:0000010")
    pair = {
        (graph.nodes[c], graph.nodes[p]): r
        for (c, p), r in zip(graph.edges.tolist(), graph.relations, strict=True)
    }
    assert pair[("CL:0000010", "CL:0000003")] == "develops_from|is_a"
    assert graph.is_tree()
    assert not prune(load_cell_ontology(), ["CL:0000236"]).is_tree()  # B cell has a DAG above


def test_is_tree_needs_connected() -> None:
    graph = OntologyGraph(
        ("a", "b", "c"), ("a", "b", "c"), np.array([[1, 0], [0, 1]]), ("x", "x"), 0
    )
    assert not graph.is_tree()
    path = OntologyGraph(
        ("a", "b", "c"), ("a", "b", "c"), np.array([[1, 0], [2, 1]]), ("x", "x"), 0
    )
    assert path.is_tree()
    assert not path.edges.flags.writeable


def test_deterministic(cl: Ontology) -> None:
    a = prune(cl, ["CL:0000236", "CL:0000084"], programs={"CL:0000084": ["P"]})
    b = prune(cl, ["CL:0000084", "CL:0000236"], programs={"CL:0000084": ["P"]})
    assert a.nodes == b.nodes and np.array_equal(a.edges, b.edges) and a.relations == b.relations
    assert a == b and hash(a) == hash(b)
    assert a != prune(cl, ["CL:0000236", "CL:0000084"])


@pytest.mark.parametrize(
    ("terms", "programs", "expected"),
    [
        (["CL:0000236", "CL:9999999"], None, "CL:9999999"),
        (["CL:0000003"], None, r"CL:0000003 -> CL:0000000"),
        (["CL:0017503"], None, "CL:0017503"),  # sub-cellular term, no edge to "cell"
        ("CL:0000236", None, "one string"),
        ([], {"CL:0000236": "MP1"}, "MP1"),
        ([], {"CL:0000236": ["MP1", "MP1"]}, "MP1"),
        ([], {"CL:9999998": ["MP1"]}, "CL:9999998"),
    ],
)
def test_bad_terms_raise(
    cl: Ontology, terms: list[str], programs: dict[str, list[str]] | None, expected: str
) -> None:
    with pytest.raises(InputError, match=expected):
        prune(cl, terms, programs=programs)


def test_unknown_root_and_node(cl: Ontology) -> None:
    with pytest.raises(InputError, match="CL:1234567"):
        prune(cl, ["CL:0000236"], root="CL:1234567")
    with pytest.raises(InputError, match="CL:0000084"):
        prune(cl, ["CL:0000236"]).index("CL:0000084")


def test_graph_validates_arrays() -> None:
    with pytest.raises(InputError, match="duplicate"):
        OntologyGraph(("a", "a"), ("a", "a"), np.zeros((0, 2)), (), 0)
    with pytest.raises(InputError, match="indices"):
        OntologyGraph(("a", "b"), ("a", "b"), np.array([[1, 5]]), ("x",), 0)
    with pytest.raises(InputError, match="self-loops"):
        OntologyGraph(("a", "b"), ("a", "b"), np.array([[1, 1]]), ("x",), 0)
    with pytest.raises(InputError, match="root"):
        OntologyGraph(("a", "b"), ("a", "b"), np.array([[1, 0]]), ("x",), 2)
