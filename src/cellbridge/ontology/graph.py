"""The pruned Cell Ontology graph that composition signals live on (POPPY A.1).

POPPY keeps the annotated cell types, all their ancestors up to the root "cell"
(CL:0000000), and gene-program nodes as children of their cell type (248 nodes in the
paper). :class:`OntologyGraph` is that graph in integer form, ready for the OT code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from cellbridge.errors import InputError
from cellbridge.ontology.core import Ontology
from cellbridge.ontology.programs import program_node_id

__all__ = ["PROGRAM_RELATION", "OntologyGraph", "prune"]

#: Relation of the edge from a program node to its cell type.
PROGRAM_RELATION = "program_of"
ROOT_ID = "CL:0000000"


@dataclass(frozen=True)
class OntologyGraph:
    """A pruned ontology as index arrays; edges point from child to parent.

    Parameters
    ----------
    nodes
        Node ids (CL ids and program node ids), unique.
    labels
        One label per node.
    edges
        ``(E, 2)`` int64 array of ``(child index, parent index)``; stored read-only.
    relations
        One relation per edge; ``"a|b"`` where the ontology links the pair by several
        relations (or by an untyped is_a/part_of edge).
    root
        Index of the root node (``"CL:0000000"``, "cell", by default).
    """

    nodes: tuple[str, ...]
    labels: tuple[str, ...]
    edges: np.ndarray
    relations: tuple[str, ...]
    root: int
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        nodes, labels, relations = tuple(self.nodes), tuple(self.labels), tuple(self.relations)
        index = {node: i for i, node in enumerate(nodes)}
        if len(index) != len(nodes):
            dups = sorted({n for n in nodes if nodes.count(n) > 1})
            raise InputError("nodes", "duplicate node ids", values=dups, fix="make node ids unique")
        if len(labels) != len(nodes):
            raise InputError("labels", f"expected {len(nodes)} labels", values=[len(labels)])
        edges = np.array(self.edges, dtype=np.int64).reshape(-1, 2)
        if edges.size and (edges.min() < 0 or edges.max() >= len(nodes)):
            raise InputError(
                "edges", f"indices must lie in [0, {len(nodes)})", values=[edges.min(), edges.max()]
            )
        loops = np.flatnonzero(edges[:, 0] == edges[:, 1])
        if loops.size:
            raise InputError("edges", "self-loops at rows", values=loops.tolist(), fix="drop them")
        if len(relations) != len(edges):
            raise InputError(
                "relations",
                f"expected one relation per edge ({len(edges)})",
                values=[len(relations)],
            )
        if not 0 <= int(self.root) < len(nodes):
            raise InputError("root", f"must index a node in [0, {len(nodes)})", values=[self.root])
        edges.setflags(write=False)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "relations", relations)
        object.__setattr__(self, "root", int(self.root))
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    # Written out because the generated ones would compare / hash the edge array
    # element-wise (ambiguous truth value) or fail on it (unhashable).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OntologyGraph):
            return NotImplemented
        return (
            self.nodes == other.nodes
            and self.labels == other.labels
            and self.relations == other.relations
            and self.root == other.root
            and np.array_equal(self.edges, other.edges)
        )

    def __hash__(self) -> int:
        return hash((self.nodes, self.relations, self.root, self.edges.tobytes()))

    def index(self, node_id: str) -> int:
        """Position of ``node_id`` in :attr:`nodes`."""
        try:
            return self._index[node_id]
        except KeyError:
            raise InputError(
                "node_id",
                "not a node of this graph",
                values=[node_id],
                fix="build the graph with prune(...) over terms that include it",
            ) from None

    def is_tree(self) -> bool:
        """True when the graph, taken as undirected, is connected with ``E == n - 1`` edges."""
        n = len(self.nodes)
        if len(self.edges) != n - 1:
            return False
        n_components, _ = connected_components(self._adjacency(), directed=False)
        return int(n_components) == 1

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph`` (child -> parent) with ``label`` and ``relation`` attributes."""
        graph = nx.DiGraph()
        for node, label in zip(self.nodes, self.labels, strict=True):
            graph.add_node(node, label=label)
        for (child, parent), relation in zip(self.edges.tolist(), self.relations, strict=True):
            graph.add_edge(self.nodes[child], self.nodes[parent], relation=relation)
        return graph

    def ancestor_matrix(self) -> sp.csr_matrix:
        """``A[v, u] = 1`` if ``v`` is ``u`` or an ancestor of ``u``; shape ``(n, n)``, int8.

        The propagated signal of POPPY A.1 is ``A @ p`` for a composition ``p`` over nodes.
        """
        n = len(self.nodes)
        parents: list[list[int]] = [[] for _ in range(n)]
        for child, parent in self.edges.tolist():
            parents[child].append(parent)
        rows: list[int] = []
        cols: list[int] = []
        for u in range(n):
            seen = {u}
            stack = [u]
            while stack:
                for parent in parents[stack.pop()]:
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
            rows.extend(seen)
            cols.extend([u] * len(seen))
        data = np.ones(len(rows), dtype=np.int8)
        return sp.csr_matrix((data, (rows, cols)), shape=(n, n))

    def _adjacency(self) -> sp.csr_matrix:
        n = len(self.nodes)
        data = np.ones(len(self.edges), dtype=np.int8)
        return sp.csr_matrix((data, (self.edges[:, 0], self.edges[:, 1])), shape=(n, n))


def _check_terms(ontology: Ontology, wanted: set[str], root: str) -> None:
    unknown = sorted(t for t in wanted if t not in ontology.terms)
    if unknown:
        raise InputError(
            "terms",
            f"ids that are not terms of {ontology.name} {ontology.version}",
            values=unknown,
            fix="map labels to ids with map_labels first, or load the matching ontology version",
        )
    deprecated = sorted(t for t in wanted if ontology.terms[t].deprecated)
    if deprecated:
        shown = [f"{t} -> {ontology.replacement(t) or 'no replacement'}" for t in deprecated]
        raise InputError(
            "terms",
            "deprecated terms",
            values=shown,
            fix="use the live replacements (map_labels does)",
        )
    stranded = sorted(t for t in wanted if t != root and root not in ontology.ancestors(t))
    if stranded:
        raise InputError(
            "terms",
            f"terms with no path to the root {root} over the kept relations",
            values=stranded,
            fix="drop those terms, or read an ontology whose relations connect them to the root",
        )


def prune(
    ontology: Ontology,
    terms: Iterable[str],
    *,
    programs: Mapping[str, Sequence[str]] | None = None,
    root: str = ROOT_ID,
) -> OntologyGraph:
    """Prune the ontology to ``terms``, their ancestors up to ``root``, and program nodes.

    Following POPPY A.1, the kept nodes are every given term and every ancestor of it
    that itself lies below ``root`` (the root included); the edges are the ontology's
    edges among kept nodes. Each program in ``programs[cell_type]`` becomes a node
    :func:`~cellbridge.ontology.program_node_id` with one edge to its cell type.

    Parameters
    ----------
    ontology
        The full ontology.
    terms
        Live term ids to keep (e.g. the mapped cell types of a dataset).
    programs
        Cell-type id -> program names. Those cell types are kept as if listed in ``terms``.
    root
        The root node id; "cell" (CL:0000000) by default.

    Returns
    -------
    OntologyGraph
        Nodes sorted by id, so the same inputs always give the same indices.

    Raises
    ------
    InputError
        For unknown or deprecated term ids, terms with no path to ``root``, or program
        lists that are not sequences of unique non-empty names.
    """
    if isinstance(terms, str):
        raise InputError(
            "terms",
            "expected a collection of term ids, got one string",
            values=[terms],
            fix=f"pass [{terms!r}]",
        )
    programs = dict(programs or {})
    if root not in ontology.terms:
        raise InputError("root", f"not a term of {ontology.name} {ontology.version}", values=[root])
    wanted = set(terms) | set(programs) | {root}
    _check_terms(ontology, wanted, root)
    kept = {root}
    for term in wanted:
        kept.add(term)
        kept.update(
            a for a in ontology.ancestors(term) if a == root or root in ontology.ancestors(a)
        )
    pairs: dict[tuple[str, str], set[str]] = {}
    for child, parent, relation in ontology.edges:
        if child in kept and parent in kept:
            pairs.setdefault((child, parent), set()).add(relation)
    labels = {t: ontology.label(t) for t in kept}
    for cell_type, names in sorted(programs.items()):
        if isinstance(names, str) or len(set(names)) != len(names):
            raise InputError(
                f"programs[{cell_type!r}]",
                "expected a sequence of unique program names",
                values=[names],
                fix="pass e.g. {'CL:0000236': ['MP1', 'MP2']}",
            )
        for name in names:
            node = program_node_id(cell_type, name)
            labels[node] = f"{name} ({labels[cell_type]})"
            pairs[(node, cell_type)] = {PROGRAM_RELATION}
    nodes = tuple(sorted(labels))
    position = {node: i for i, node in enumerate(nodes)}
    ordered = sorted(pairs)
    edges = np.array([(position[c], position[p]) for c, p in ordered], dtype=np.int64).reshape(
        -1, 2
    )
    return OntologyGraph(
        nodes=nodes,
        labels=tuple(labels[n] for n in nodes),
        edges=edges,
        relations=tuple("|".join(sorted(pairs[pair])) for pair in ordered),
        root=position[root],
    )
