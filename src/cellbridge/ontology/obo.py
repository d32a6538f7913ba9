"""Read an OBO file into an :class:`Ontology`, keeping the type of every edge.

Unlike the cellxgene JSON copy, an OBO file says whether an edge is is_a, part_of,
develops_from, ...; POPPY §2.1 / A.1 let the caller choose which relations form the
graph that compositions are transported on.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from cellbridge.errors import InputError
from cellbridge.ontology.core import Ontology, Term

__all__ = ["read_obo"]

logger = logging.getLogger(__name__)

_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"')


def read_obo(file: Path, *, relations: tuple[str, ...], prefix: str | None) -> Ontology:
    """Read ``file`` with obonet; see :func:`cellbridge.ontology.read_ontology`.

    Obsolete terms are kept (flagged deprecated, with a single ``replaced_by``) so that
    old labels can still resolve to their replacements.
    """
    # obonet is imported here so that loading the default JSON copy does not pay for it.
    import obonet

    try:
        graph = obonet.read_obo(file, ignore_obsolete=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(
            "path",
            f"cannot parse the OBO file: {' '.join(str(exc).split())}",
            values=[str(file)],
            fix="pass a valid OBO file",
        ) from exc
    terms: dict[str, Term] = {}
    undefined = other_prefix = 0
    for node, attrs in graph.nodes(data=True):
        if prefix is not None and not node.startswith(f"{prefix}:"):
            other_prefix += 1
            continue
        if "name" not in attrs:
            # Referenced by an edge but without a [Term] stanza of its own.
            undefined += 1
            continue
        replaced = attrs.get("replaced_by") or []
        replaced = [replaced] if isinstance(replaced, str) else list(replaced)
        terms[node] = Term(
            id=node,
            label=str(attrs["name"]),
            synonyms=tuple(_synonym_text(s) for s in attrs.get("synonym", [])),
            deprecated=str(attrs.get("is_obsolete", "false")).lower() == "true",
            # Several replacements are a choice the ontology leaves open: do not pick one.
            replaced_by=replaced[0] if len(replaced) == 1 else None,
        )
    kept: set[tuple[str, str, str]] = set()
    skipped: Counter[str] = Counter()
    for child, parent, relation in graph.edges(keys=True):
        if child not in terms:
            continue
        if relation not in relations:
            skipped[f"relation {relation}"] += 1
        elif parent not in terms:
            skipped["parent outside the kept terms"] += 1
        else:
            kept.add((child, parent, relation))
    present = {r for _, _, r in graph.edges(keys=True)}
    absent = sorted(set(relations) - present)
    if absent:
        logger.warning(
            "%s: requested relations %s do not occur (present: %s)", file, absent, sorted(present)
        )
    if undefined or other_prefix or skipped:
        logger.info(
            "%s: kept %d terms and %d edges; left out %d terms outside prefix %r, "
            "%d terms without a stanza, and edges %s",
            file,
            len(terms),
            len(kept),
            other_prefix,
            prefix,
            undefined,
            dict(skipped),
        )
    header = graph.graph
    name = str(header.get("ontology", prefix or file.stem)).upper()
    version = str(header.get("data-version", file.name))
    return Ontology(terms, tuple(sorted(kept)), name=name, version=version, source=str(file))


def _synonym_text(raw: str) -> str:
    # OBO synonyms read '"text" EXACT [refs]'; keep the quoted text, unescaped.
    match = _SYNONYM.match(raw)
    text = match.group(1) if match else raw
    return re.sub(r"\\(.)", r"\1", text)
