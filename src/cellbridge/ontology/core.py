"""The in-memory Cell Ontology: terms, typed child -> parent edges, ancestor queries.

POPPY §2.1 / A.1 place composition signals on the Cell Ontology (CL) graph. Everything
downstream (label mapping, pruning, compositions) reads the ontology through the small
frozen :class:`Ontology` defined here, whatever file it was loaded from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cellbridge.errors import InputError

__all__ = ["Ontology", "Term"]


@dataclass(frozen=True)
class Term:
    """One ontology term.

    Parameters
    ----------
    id
        The CURIE, e.g. ``"CL:0000236"``.
    label
        The primary label, e.g. ``"B cell"``.
    synonyms
        Alternative names (exact, related, broad and narrow synonyms alike).
    deprecated
        Whether the term is obsolete.
    replaced_by
        The term that replaces an obsolete one, when the ontology names exactly one.
    """

    id: str
    label: str
    synonyms: tuple[str, ...] = ()
    deprecated: bool = False
    replaced_by: str | None = None


@dataclass(frozen=True)
class Ontology:
    """An ontology as a set of terms and typed ``(child, parent, relation)`` edges.

    Parameters
    ----------
    terms
        Term id -> :class:`Term`. Stored read-only.
    edges
        ``(child, parent, relation)`` triples; ``relation`` is e.g. ``"is_a"``,
        ``"part_of"``, or ``"is_a|part_of"`` where the source does not say which of the
        two an edge is (the cellxgene JSON copy of the CL).
    name
        The ontology's short name, e.g. ``"CL"``.
    version
        The release, e.g. ``"v2026-03-26"``, the OBO ``data-version`` or the file name.
    source
        Where the ontology was read from.

    Notes
    -----
    Ancestor sets are computed from ``edges`` alone (transitively, cycles allowed), so a
    term whose source lists an ancestor that no chain of kept edges reaches does not get
    that ancestor here: the graph POPPY §2.1 transports mass on is the edge graph.
    """

    terms: Mapping[str, Term]
    edges: tuple[tuple[str, str, str], ...]
    name: str
    version: str
    source: str
    # Indexes derived from ``edges``; they are caches, so they take no part in equality.
    _parents: Mapping[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _ancestors: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        terms = MappingProxyType(dict(self.terms))
        edges = tuple((str(c), str(p), str(r)) for c, p, r in self.edges)
        dangling = sorted({t for c, p, _ in edges for t in (c, p) if t not in terms})
        if dangling:
            raise InputError(
                "edges",
                "edges name terms that are not in `terms`",
                values=dangling,
                fix="add those terms or drop the edges that name them",
            )
        mismatched = sorted(k for k, term in terms.items() if k != term.id)
        if mismatched:
            raise InputError(
                "terms",
                "keys differ from the Term.id they map to",
                values=mismatched,
                fix="key every term by its own id",
            )
        parents: dict[str, set[str]] = {}
        for child, parent, _ in edges:
            parents.setdefault(child, set()).add(parent)
        object.__setattr__(self, "terms", terms)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(
            self,
            "_parents",
            MappingProxyType({c: tuple(sorted(ps)) for c, ps in parents.items()}),
        )
        object.__setattr__(self, "_ancestors", {})

    def __len__(self) -> int:
        return len(self.terms)

    def __contains__(self, term_id: object) -> bool:
        return term_id in self.terms

    def _check(self, term_id: str) -> None:
        if term_id not in self.terms:
            raise InputError(
                "term_id",
                f"not a term of {self.name} {self.version}",
                values=[term_id],
                fix="pass an id such as 'CL:0000236', or map labels with map_labels first",
            )

    def parents(self, term_id: str) -> list[str]:
        """Direct parents of ``term_id`` over any kept relation, sorted by id."""
        self._check(term_id)
        return list(self._parents.get(term_id, ()))

    def ancestors(self, term_id: str) -> set[str]:
        """All terms reachable from ``term_id`` through child -> parent edges (not itself)."""
        self._check(term_id)
        cached = self._ancestors.get(term_id)
        if cached is None:
            # Breadth-first rather than memoised recursion: OBO relations other than
            # is_a (e.g. develops_from) can close cycles.
            seen: set[str] = set()
            queue = deque(self._parents.get(term_id, ()))
            while queue:
                node = queue.popleft()
                if node in seen:
                    continue
                seen.add(node)
                queue.extend(self._parents.get(node, ()))
            seen.discard(term_id)
            cached = frozenset(seen)
            self._ancestors[term_id] = cached
        return set(cached)

    def label(self, term_id: str) -> str:
        """The primary label of ``term_id``."""
        self._check(term_id)
        return self.terms[term_id].label

    def relations(self) -> list[str]:
        """The distinct relation types among the edges, sorted."""
        return sorted({r for _, _, r in self.edges})

    def replacement(self, term_id: str) -> str | None:
        """The live term that stands for ``term_id``.

        ``term_id`` itself when it is not deprecated; otherwise the end of its
        ``replaced_by`` chain when that ends on a live term of this ontology; else None.
        """
        self._check(term_id)
        seen: set[str] = set()
        current: str | None = term_id
        while current is not None and current in self.terms and current not in seen:
            term = self.terms[current]
            if not term.deprecated:
                return current
            seen.add(current)
            current = term.replaced_by
        return None
