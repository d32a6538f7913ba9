"""Fixtures: real Cell Ontology graphs read straight from the shipped JSON, and oracles.

The ontology graphs are built here from the raw ``cellxgene-ontology-guide`` file, not with
``cellbridge.ontology``, so that the transport tests do not share code with what they feed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pytest
import zstandard
from scipy.sparse.csgraph import shortest_path

from cellbridge.ot import Graph

ROOT = "CL:0000000"
CL_FILE = "CL-ontology-v2026-03-26.json.zst"
CL_SIZES = (30, 100, 250)


def floyd_warshall(
    n_nodes: int, edges: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """All-pairs shortest paths (scipy Floyd–Warshall) from a raw, possibly messy edge list.

    Parallel edges keep their shortest length and self-loops are ignored, which is what a
    metric on the graph means; built densely here so it shares nothing with ``Graph``.
    """
    edges = np.asarray(edges)
    w = np.ones(len(edges)) if weights is None else np.asarray(weights, dtype=np.float64)
    A = np.full((n_nodes, n_nodes), np.inf)
    for (a, b), x in zip(edges, w, strict=True):
        if a != b:
            A[a, b] = A[b, a] = min(A[a, b], x)
    A[~np.isfinite(A)] = 0.0  # dense csgraph input: 0 means "no edge"
    return np.asarray(shortest_path(A, method="FW", directed=False))


@dataclass(frozen=True)
class OntologyGraph:
    """A pruned Cell Ontology: kept terms, their graph, and the leaf-to-ancestor indicator."""

    terms: list[str]
    graph: Graph
    leaves: np.ndarray
    up: np.ndarray  # (n_nodes, n_leaves): 1 where the leaf is the node or lies below it
    edges: np.ndarray  # the raw child -> parent pairs the graph was built from

    @property
    def n_nodes(self) -> int:
        return len(self.terms)

    def propagated(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Dirichlet compositions over the leaves, summed up to every ancestor, then to 1."""
        comp = rng.dirichlet(np.ones(len(self.leaves)), size=n)
        X = comp @ self.up.T
        return X / X.sum(axis=1, keepdims=True)

    def dirichlet(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Plain Dirichlet signals over all nodes."""
        return rng.dirichlet(np.full(self.n_nodes, 0.5), size=n)

    def sparse(self, rng: np.random.Generator, n: int, nnz: int = 3) -> np.ndarray:
        """Signals with a handful of non-zero nodes: the most degenerate flow problems."""
        X = np.zeros((n, self.n_nodes))
        for row in X:
            at = rng.choice(self.n_nodes, size=nnz, replace=False)
            row[at] = rng.dirichlet(np.ones(nnz))
        return X

    def signals(self, kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
        make: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
            "propagated": self.propagated,
            "dirichlet": self.dirichlet,
            "sparse": self.sparse,
        }
        return make[kind](rng, n)


def prune_cl(cl: dict[str, Any], target: int, seed: int) -> OntologyGraph:
    """Random live CL terms plus all their ancestors, grown to about ``target`` nodes."""
    live = sorted(
        t
        for t, entry in cl.items()
        if t.startswith("CL:") and not entry["deprecated"] and ROOT in entry["ancestors"]
    )
    rng = np.random.default_rng(seed)
    kept = {ROOT}
    for term in rng.permutation(live):
        grown = kept | {term} | set(cl[term]["ancestors"])
        if len(grown) <= target:
            kept = grown
        if len(kept) >= 0.9 * target:
            break
    terms = sorted(kept)
    index = {t: i for i, t in enumerate(terms)}
    # Direct parents are the ancestors at distance 1; every ancestor of a kept term is kept.
    edges = np.array(
        [
            (index[child], index[parent])
            for child in terms
            for parent, dist in cl[child]["ancestors"].items()
            if dist == 1
        ]
    )
    has_child = np.zeros(len(terms), dtype=bool)
    has_child[edges[:, 1]] = True
    leaves = np.flatnonzero(~has_child)
    up = np.zeros((len(terms), len(leaves)))
    for k, leaf in enumerate(leaves):
        below = [terms[leaf], *cl[terms[leaf]]["ancestors"]]
        up[[index[t] for t in below], k] = 1.0
    graph = Graph(len(terms), edges, root=index[ROOT])
    return OntologyGraph(terms=terms, graph=graph, leaves=leaves, up=up, edges=edges)


@pytest.fixture(scope="session")
def cl_json() -> dict[str, Any]:
    """The Cell Ontology release shipped with cellxgene-ontology-guide, as raw JSON."""
    path = resources.files("cellxgene_ontology_guide") / "data" / CL_FILE
    with path.open("rb") as handle:
        data: dict[str, Any] = json.loads(zstandard.ZstdDecompressor().stream_reader(handle).read())
    return data


@pytest.fixture(scope="session", params=CL_SIZES, ids=[f"CL{n}" for n in CL_SIZES])
def cl_graph(request: pytest.FixtureRequest, cl_json: dict[str, Any]) -> OntologyGraph:
    """Pruned real Cell Ontology graphs of about 30, 100 and 250 terms (with cycles)."""
    og = prune_cl(cl_json, request.param, seed=request.param)
    # The premises the tests rely on: the right size, real multi-parent terms, one root.
    assert 0.8 * request.param <= og.n_nodes <= request.param
    assert not og.graph.is_tree()
    assert og.terms[og.graph.root] == ROOT
    return og


@pytest.fixture(scope="session")
def fw() -> Callable[..., np.ndarray]:
    """The Floyd–Warshall ground-metric oracle, for tests that cannot import conftest."""
    return floyd_warshall
