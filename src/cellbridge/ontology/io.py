"""Read the Cell Ontology: the copy shipped by cellxgene-ontology-guide, or a user file.

No network: the default comes from the ``cellxgene_ontology_guide`` wheel; anything else
is a path the user passes (an OBO file keeps its typed edges, POPPY §2.1 / A.1).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import IO, Any

import zstandard

from cellbridge.errors import InputError
from cellbridge.ontology.core import Ontology, Term
from cellbridge.ontology.obo import read_obo

__all__ = ["available_cell_ontology_versions", "load_cell_ontology", "read_ontology"]

logger = logging.getLogger(__name__)

#: The JSON copies do not say whether a direct-parent edge is is_a or part_of.
MIXED_RELATION = "is_a|part_of"
_PACKAGE = "cellxgene_ontology_guide"
_FILE_PATTERN = re.compile(r"^(?P<name>[A-Za-z]+)-ontology-(?P<version>.+)\.json(?:\.zst)?$")
_OBO_SUFFIXES = (".obo", ".obo.gz", ".obo.bz2", ".obo.xz")
_JSON_SUFFIXES = (".json", ".json.zst")


def _version_key(version: str) -> tuple[int, ...]:
    # Numeric, so that e.g. "v3.10" sorts after "v3.9"; date versions sort as dates.
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _shipped_files() -> dict[str, Traversable]:
    data = resources.files(_PACKAGE) / "data"
    files: dict[str, Traversable] = {}
    for entry in data.iterdir():
        match = _FILE_PATTERN.match(entry.name)
        if match and match["name"] == "CL" and entry.name.endswith(".zst"):
            files[match["version"]] = entry
    return files


def available_cell_ontology_versions() -> list[str]:
    """The CL releases shipped with ``cellxgene-ontology-guide``, oldest first.

    Returns
    -------
    list of str
        Versions such as ``"v2025-07-30"``; the last one is the default of
        :func:`load_cell_ontology`.
    """
    return sorted(_shipped_files(), key=_version_key)


def load_cell_ontology(version: str | None = None) -> Ontology:
    """Load a Cell Ontology release shipped with ``cellxgene-ontology-guide`` (offline).

    The JSON copy lists every term with its ancestors and their distances; the direct
    parents (distance 1) become the edges. It mixes is_a and part_of edges without saying
    which is which, so their relation is recorded as ``"is_a|part_of"``. Use
    :func:`read_ontology` on an OBO file to keep typed edges (POPPY §2.1 / A.1).

    Parameters
    ----------
    version
        A release such as ``"v2025-07-30"`` (the leading ``"v"`` may be left out); the
        newest shipped release when None. See :func:`available_cell_ontology_versions`.

    Returns
    -------
    Ontology
        Shared, read-only and cached: repeated calls return the same object.

    Raises
    ------
    InputError
        If ``version`` is not shipped; the message lists the versions that are.
    """
    available = available_cell_ontology_versions()
    if not available:
        raise InputError(
            "version",
            f"no CL-ontology-*.json.zst file found in the installed {_PACKAGE}",
            fix=f"reinstall {_PACKAGE}, or pass a file to read_ontology",
        )
    if version is None:
        resolved = available[-1]
    elif version in available:
        resolved = version
    elif f"v{version}" in available:
        resolved = f"v{version}"
    else:
        raise InputError(
            "version",
            f"no such Cell Ontology release shipped; available: {', '.join(available)}",
            values=[version],
            fix=f"pass one of the available versions or None for the newest ({available[-1]})",
        )
    return _load_shipped(resolved)


@functools.lru_cache(maxsize=8)
def _load_shipped(version: str) -> Ontology:
    entry = _shipped_files()[version]
    with entry.open("rb") as handle:
        data = _read_json_stream(handle, compressed=True, where=str(entry))
    terms, edges = _from_json(data, prefix="CL", where=str(entry))
    logger.debug("loaded %d CL terms, %d edges from %s", len(terms), len(edges), entry)
    return Ontology(terms=terms, edges=edges, name="CL", version=version, source=str(entry))


def read_ontology(
    path: str | os.PathLike[str],
    *,
    relations: Sequence[str] = ("is_a", "part_of"),
    prefix: str | None = "CL",
) -> Ontology:
    """Read an ontology from an OBO file or a cellxgene-style JSON file.

    Parameters
    ----------
    path
        ``.obo`` (optionally ``.gz``/``.bz2``/``.xz``), ``.json`` or ``.json.zst``.
        JSON files use the cellxgene format: ``{term_id: {"label", "synonyms",
        "deprecated", "replaced_by", "ancestors": {ancestor_id: distance}}}``.
    relations
        Edge types to keep, e.g. ``("is_a", "part_of", "develops_from")``. JSON files
        cannot separate is_a from part_of, so for them both must be requested.
    prefix
        Keep only terms whose id starts with ``f"{prefix}:"``; None keeps all. Edges to
        terms outside the prefix are left out and their number is logged.

    Returns
    -------
    Ontology
        With ``version`` = the OBO ``data-version`` (or, for JSON, the version in a
        ``CL-ontology-<version>.json.zst`` name), else the file name.

    Raises
    ------
    InputError
        For a missing file, an unknown suffix, an unreadable file, or ``relations`` that
        the file format cannot honour.
    """
    file = Path(path)
    if isinstance(relations, str) or not relations:
        raise InputError(
            "relations",
            "expected a non-empty sequence of relation names",
            values=[relations],
            fix="pass e.g. relations=('is_a', 'part_of')",
        )
    if not file.is_file():
        raise InputError("path", "no such file", values=[str(file)], fix="pass an existing file")
    name = file.name.lower()
    if name.endswith(_OBO_SUFFIXES):
        return read_obo(file, relations=tuple(relations), prefix=prefix)
    if name.endswith(_JSON_SUFFIXES):
        missing = sorted({"is_a", "part_of"} - set(relations))
        if missing:
            raise InputError(
                "relations",
                "a JSON ontology mixes is_a and part_of edges, so it cannot keep one "
                "without the other",
                values=missing,
                fix="request both ('is_a', 'part_of'), or read an OBO file for typed edges",
            )
        extra = sorted(set(relations) - {"is_a", "part_of"})
        if extra:
            logger.warning("%s: a JSON ontology has no %s edges; none are kept", file, extra)
        with file.open("rb") as handle:
            data = _read_json_stream(handle, compressed=name.endswith(".zst"), where=str(file))
        terms, edges = _from_json(data, prefix=prefix, where=str(file))
        match = _FILE_PATTERN.match(file.name)
        onto_name = match["name"] if match else (prefix or file.stem)
        version = match["version"] if match else file.name
        return Ontology(terms, edges, name=onto_name, version=version, source=str(file))
    raise InputError(
        "path",
        "unknown ontology file type",
        values=[str(file)],
        fix=f"pass a file ending in one of {', '.join(_OBO_SUFFIXES + _JSON_SUFFIXES)}",
    )


def _read_json_stream(handle: IO[bytes], *, compressed: bool, where: str) -> Any:
    try:
        if compressed:
            with zstandard.ZstdDecompressor().stream_reader(handle) as reader:
                return json.load(io.TextIOWrapper(reader, encoding="utf-8"))
        return json.load(handle)
    except (zstandard.ZstdError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            "path",
            f"cannot read the file as {'zstd-compressed ' if compressed else ''}JSON: {exc}",
            values=[where],
            fix="pass an ontology JSON file in the cellxgene format",
        ) from exc


def _from_json(
    data: Any, *, prefix: str | None, where: str
) -> tuple[dict[str, Term], tuple[tuple[str, str, str], ...]]:
    if not isinstance(data, Mapping):
        raise InputError(
            "path",
            "the JSON is not an object of term_id -> term",
            values=[where],
            fix="pass an ontology JSON file in the cellxgene format",
        )
    malformed = [
        key
        for key, entry in data.items()
        if not (
            isinstance(entry, Mapping)
            and "label" in entry
            and isinstance(entry.get("ancestors"), Mapping)
        )
    ]
    if malformed:
        raise InputError(
            "path",
            f"entries of {where} lack a 'label' or an 'ancestors' object",
            values=malformed,
            fix="pass an ontology JSON file in the cellxgene format",
        )
    keep = [k for k in data if prefix is None or k.startswith(f"{prefix}:")]
    terms = {
        key: Term(
            id=key,
            label=str(data[key]["label"]),
            synonyms=tuple(str(s) for s in data[key].get("synonyms") or ()),
            deprecated=bool(data[key].get("deprecated", False)),
            replaced_by=data[key].get("replaced_by") or None,
        )
        for key in keep
    }
    edges: list[tuple[str, str, str]] = []
    outside = 0
    for key in keep:
        for ancestor, distance in data[key]["ancestors"].items():
            if distance != 1:
                continue
            if ancestor in terms:
                edges.append((key, ancestor, MIXED_RELATION))
            else:
                outside += 1
    if outside:
        logger.info(
            "%s: left out %d parent edges to terms outside prefix %r", where, outside, prefix
        )
    return terms, tuple(sorted(edges))
