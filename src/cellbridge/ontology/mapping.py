"""Map free-text cell-type labels to Cell Ontology ids, without guessing.

POPPY §2.1 / A.1 need every annotated cell type as a CL node. Annotations arrive as free
text ("CD14+ Monocyte", "B-cell", "CL:0000236"); this module resolves them by a fixed
order of rules and refuses, with suggestions, what it cannot resolve unambiguously.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellbridge.errors import InputError
from cellbridge.ontology.core import Ontology

__all__ = ["LabelMapping", "map_labels", "normalize_label"]

logger = logging.getLogger(__name__)

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_PLUS = re.compile(r"(?<=[0-9a-z])\+")
_TRAILING_MINUS = re.compile(r"(?<=[0-9a-z])-(?![0-9a-z])")
_N_SUGGESTIONS = 3


@dataclass(frozen=True)
class LabelMapping:
    """The result of :func:`map_labels`.

    Parameters
    ----------
    ids
        Per input label (object array, same order): its CL id, or None where dropped.
    table
        Distinct label -> CL id, for the labels that were mapped.
    dropped
        Distinct unmapped label -> number of occurrences (cells) dropped.
    """

    ids: np.ndarray
    table: dict[str, str]
    dropped: dict[str, int]


def normalize_label(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive key of a label.

    Casefold; write marker signs as words (``"+"`` after a letter or digit becomes
    ``" positive"``, a ``"-"`` that ends a token becomes ``" negative"``); then replace
    every run of characters other than ``[0-9a-z]`` (spaces, ``-``, ``_``, ``/``, commas,
    ...) by one space and strip the ends.

    The sign step is there because dropping ``+``/``-`` as punctuation would make
    "CD8- regulatory T cell" match the CL synonym "CD8+ regulatory T cell". A joining
    hyphen ("B-cell", "CD4-positive") is followed by a letter or digit and stays a space.

    Parameters
    ----------
    text
        A cell-type label or synonym.

    Examples
    --------
    >>> normalize_label("B-Cell")
    'b cell'
    >>> normalize_label("CD14+ Monocyte") == normalize_label("CD14-positive monocyte")
    True
    >>> normalize_label("CD25- T")
    'cd25 negative t'
    """
    text = _PLUS.sub(" positive ", text.casefold())
    text = _TRAILING_MINUS.sub(" negative ", text)
    return _NON_ALNUM.sub(" ", text).strip()


@dataclass(frozen=True)
class _Resolution:
    term_id: str | None
    why: str = ""


class _Index:
    """Label lookups over one ontology, built once per :func:`map_labels` call."""

    def __init__(self, ontology: Ontology) -> None:
        self.ontology = ontology
        self.by_label: dict[str, set[str]] = {}
        self.by_synonym: dict[str, set[str]] = {}
        self.by_key: dict[str, set[str]] = {}
        self.live_keys: dict[str, set[str]] = {}
        for term in ontology.terms.values():
            names = [n for n in (term.label, *term.synonyms) if n]
            if term.label:
                self.by_label.setdefault(term.label, set()).add(term.id)
            for synonym in term.synonyms:
                self.by_synonym.setdefault(synonym, set()).add(term.id)
            for name in names:
                key = normalize_label(name)
                if not key:
                    continue
                self.by_key.setdefault(key, set()).add(term.id)
                if not term.deprecated:
                    self.live_keys.setdefault(key, set()).add(term.id)

    def describe(self, term_id: str) -> str:
        return f"{term_id} {self.ontology.terms[term_id].label!r}"

    def resolve(self, label: str) -> _Resolution:
        stages: list[tuple[str, set[str]]] = [
            ("id", {label} if label in self.ontology.terms else set()),
            ("label", self.by_label.get(label, set())),
            ("synonym", self.by_synonym.get(label, set())),
            ("normalised label or synonym", self.by_key.get(normalize_label(label), set())),
        ]
        stale: set[str] = set()
        for stage, candidates in stages:
            replaced = {t: self.ontology.replacement(t) for t in candidates}
            live = {r for r in replaced.values() if r is not None}
            stale |= {t for t, r in replaced.items() if r is None}
            if len(live) == 1:
                return _Resolution(live.pop())
            if len(live) > 1:
                shown = ", ".join(self.describe(t) for t in sorted(live))
                return _Resolution(None, f"ambiguous {stage} match: {shown}")
        if stale:
            shown = ", ".join(self.describe(t) for t in sorted(stale))
            return _Resolution(
                None, f"deprecated without replacement: {shown}; {self.suggest(label)}"
            )
        return _Resolution(None, self.suggest(label))

    def suggest(self, label: str) -> str:
        key = normalize_label(label)
        close = (
            difflib.get_close_matches(key, list(self.live_keys), n=10, cutoff=0.6) if key else []
        )
        picks: list[str] = []
        for match in close:
            for term_id in sorted(self.live_keys[match]):
                if term_id not in picks:
                    picks.append(term_id)
        if not picks:
            return "no close Cell Ontology label"
        return "closest: " + ", ".join(self.describe(t) for t in picks[:_N_SUGGESTIONS])


def _as_labels(labels: Sequence[str] | np.ndarray | pd.Series, field: str) -> np.ndarray:
    values = np.asarray(
        labels.to_numpy() if isinstance(labels, pd.Series) else labels, dtype=object
    )
    if values.ndim != 1:
        raise InputError(
            field,
            f"expected one label per cell, got shape {values.shape}",
            fix="pass a 1-D sequence",
        )
    missing = np.flatnonzero(pd.isna(values))
    if missing.size:
        raise InputError(
            field,
            f"{missing.size} labels are missing (NaN/None), at positions",
            values=missing.tolist(),
            fix="annotate or remove those cells",
        )
    # Keyed by repr so that unhashable values can be reported too.
    wrong = list({repr(v): v for v in values if not isinstance(v, str)}.values())
    if wrong:
        raise InputError(
            field, "labels must be strings", values=wrong, fix="convert the labels to str"
        )
    return values


def _check_table(mapping: Mapping[str, str], ontology: Ontology) -> dict[str, str]:
    bad = [
        (label, term_id)
        for label, term_id in mapping.items()
        if not isinstance(term_id, str)
        or term_id not in ontology.terms
        or ontology.terms[term_id].deprecated
    ]
    if bad:
        hints = [
            f"{term_id} -> {ontology.replacement(term_id)}"
            for _, term_id in bad
            if isinstance(term_id, str)
            and term_id in ontology.terms
            and ontology.replacement(term_id)
        ]
        raise InputError(
            "mapping",
            f"values must be live (non-deprecated) term ids of {ontology.name} {ontology.version}",
            values=bad,
            fix="use current ids" + (f" (replacements: {'; '.join(hints)})" if hints else ""),
        )
    return dict(mapping)


def map_labels(
    labels: Sequence[str] | np.ndarray | pd.Series,
    ontology: Ontology,
    *,
    mapping: Mapping[str, str] | None = None,
    strict: bool = True,
    field: str = "labels",
) -> LabelMapping:
    """Map cell-type labels to Cell Ontology ids (POPPY §2.1 / A.1).

    Each distinct label is resolved by the first rule that gives exactly one term:

    1. ``mapping`` (the caller's table) overrides everything;
    2. a label that is a term id (``"CL:0000236"``) maps to itself;
    3. exact primary label;
    4. exact synonym;
    5. normalised label or synonym (:func:`normalize_label`: case, punctuation,
       ``-``/``_`` and whitespace ignored; marker signs kept, ``"CD14+"`` reads as
       ``"CD14-positive"``).

    A deprecated term stands for its ``replaced_by`` term; a deprecated term without a
    live replacement maps to nothing. When a rule finds two or more different terms the
    label is ambiguous: it is not guessed, it is reported unmapped with the candidates.

    Parameters
    ----------
    labels
        One label per cell.
    ontology
        The ontology to map onto (e.g. :func:`~cellbridge.ontology.load_cell_ontology`).
    mapping
        Label -> term id overrides; every value must be a live term id.
    strict
        If True, any unmapped label raises. If False, unmapped labels are dropped: their
        cell counts are logged as a warning and returned in ``dropped``.
    field
        Name of the input, used in error messages (e.g. ``"obs['cell_type']"``).

    Returns
    -------
    LabelMapping

    Raises
    ------
    InputError
        For missing or non-string labels, a bad ``mapping`` value, or (``strict=True``)
        unmapped labels; the message lists every unmapped label with its closest CL
        labels or its ambiguous candidates.
    """
    values = _as_labels(labels, field)
    table_in = _check_table(mapping or {}, ontology)
    codes, uniques = pd.factorize(values)
    index = _Index(ontology)
    table: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for label in uniques:
        if label in table_in:
            table[label] = table_in[label]
            continue
        found = index.resolve(label)
        if found.term_id is None:
            reasons[label] = found.why
        else:
            table[label] = found.term_id
    counts = np.bincount(codes, minlength=len(uniques))
    dropped = {label: int(counts[i]) for i, label in enumerate(uniques) if label in reasons}
    if reasons and strict:
        detail = "; ".join(f"{label!r} ({why})" for label, why in reasons.items())
        raise InputError(
            field,
            f"{len(reasons)} labels map to no single {ontology.name} term: {detail}",
            values=list(reasons),
            fix="pass mapping={label: 'CL:...'} or strict=False",
        )
    if dropped:
        logger.warning(
            "%s: dropped %d cells whose labels map to no single %s term: %s",
            field,
            sum(dropped.values()),
            ontology.name,
            dropped,
        )
    per_unique = np.empty(len(uniques), dtype=object)
    per_unique[:] = [table.get(label) for label in uniques]
    return LabelMapping(ids=per_unique[codes], table=table, dropped=dropped)
