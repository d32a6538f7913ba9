"""Loading the shipped CL and user JSON files, checked against cellxgene's own parser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zstandard
from cellxgene_ontology_guide.ontology_parser import OntologyParser
from cellxgene_ontology_guide.supported_versions import CXGSchema

from cellbridge.errors import InputError
from cellbridge.ontology import (
    Ontology,
    Term,
    available_cell_ontology_versions,
    load_cell_ontology,
    read_ontology,
)

ROOT = "CL:0000000"


@pytest.fixture(scope="module")
def parser() -> OntologyParser:
    return OntologyParser()


def test_versions_are_sorted_and_default_is_newest(cl: Ontology) -> None:
    versions = available_cell_ontology_versions()
    assert {"v2025-07-30", "v2026-03-26"} <= set(versions)
    assert versions == sorted(versions)
    assert cl.version == versions[-1]
    assert cl.name == "CL"
    assert cl.source.endswith(f"CL-ontology-{cl.version}.json.zst")


def test_default_load_is_cached(cl: Ontology) -> None:
    assert load_cell_ontology() is cl
    assert load_cell_ontology(cl.version) is cl
    assert load_cell_ontology(cl.version.lstrip("v")) is cl


def test_older_version_is_a_different_release(cl: Ontology) -> None:
    old = load_cell_ontology("v2025-07-30")
    assert old.version == "v2025-07-30"
    assert set(old.terms) != set(cl.terms)


def test_unknown_version_lists_available() -> None:
    with pytest.raises(InputError, match="v2099-01-01") as err:
        load_cell_ontology("v2099-01-01")
    for version in available_cell_ontology_versions():
        assert version in str(err.value)


def test_matches_cellxgene_parser_on_sampled_terms(cl: Ontology, parser: OntologyParser) -> None:
    assert CXGSchema().supported_ontologies["CL"]["version"] == cl.version
    rng = np.random.default_rng(1)
    live = sorted(t for t, term in cl.terms.items() if not term.deprecated)
    for term_id in rng.choice(live, size=300, replace=False).tolist():
        assert cl.parents(term_id) == sorted(parser.get_term_parents(term_id)), term_id
        assert cl.label(term_id) == parser.get_term_label(term_id)
        assert list(cl.terms[term_id].synonyms) == parser.get_term_synonyms(term_id)
        assert not parser.is_term_deprecated(term_id)


def test_ancestors_match_parser_except_documented_orphans(
    cl: Ontology, parser: OntologyParser
) -> None:
    orphans = []
    for term_id, term in cl.terms.items():
        ours = cl.ancestors(term_id)
        theirs = set(parser.get_term_ancestors(term_id))
        assert ours <= theirs, term_id
        if ours != theirs:
            orphans.append(term_id)
            # The JSON lists "cell" as an ancestor of a few sub-cellular terms whose
            # parent chain runs through non-CL terms: no CL edge reaches it.
            assert theirs - ours == {ROOT}
            assert cl.parents(term_id) == []
            assert not term.deprecated
    assert 0 < len(orphans) <= 10


def test_deprecated_terms_match_parser(cl: Ontology, parser: OntologyParser) -> None:
    deprecated = sorted(t for t, term in cl.terms.items() if term.deprecated)
    assert len(deprecated) > 100
    for term_id in deprecated:
        assert parser.is_term_deprecated(term_id)
        assert cl.terms[term_id].replaced_by == parser.get_term_replacement(term_id)
        assert cl.parents(term_id) == []


def test_json_edges_are_untyped_direct_parents(cl: Ontology) -> None:
    assert cl.relations() == ["is_a|part_of"]
    assert ("CL:0000236", "CL:0000945", "is_a|part_of") in cl.edges


def _write_json(path: Path, data: dict[str, object]) -> Path:
    raw = json.dumps(data).encode()
    if path.name.endswith(".zst"):
        raw = zstandard.ZstdCompressor().compress(raw)
    path.write_bytes(raw)
    return path


JSON_DATA: dict[str, object] = {
    ROOT: {"label": "cell", "deprecated": False, "ancestors": {}},
    "CL:0000001": {
        "label": "blood cell",
        "synonyms": ["hemocyte"],
        "deprecated": False,
        "ancestors": {ROOT: 1, "UBERON:1": 1},
    },
    "CL:0000002": {"label": "T cell", "deprecated": False, "ancestors": {"CL:0000001": 1, ROOT: 2}},
    "CL:0000009": {
        "label": "obsolete",
        "deprecated": True,
        "replaced_by": "CL:0000002",
        "ancestors": {},
    },
    "UBERON:1": {"label": "blood", "deprecated": False, "ancestors": {}},
}


@pytest.mark.parametrize("name", ["CL-ontology-v2099-01-01.json.zst", "mine.json"])
def test_read_json_file(tmp_path: Path, name: str) -> None:
    onto = read_ontology(_write_json(tmp_path / name, JSON_DATA))
    assert set(onto.terms) == {ROOT, "CL:0000001", "CL:0000002", "CL:0000009"}
    assert onto.edges == (
        ("CL:0000001", ROOT, "is_a|part_of"),
        ("CL:0000002", "CL:0000001", "is_a|part_of"),
    )
    assert onto.terms["CL:0000009"] == Term(
        "CL:0000009", "obsolete", deprecated=True, replaced_by="CL:0000002"
    )
    assert onto.ancestors("CL:0000002") == {"CL:0000001", ROOT}
    assert onto.version == ("v2099-01-01" if name.endswith(".zst") else "mine.json")
    everything = read_ontology(tmp_path / name, prefix=None)
    assert ("CL:0000001", "UBERON:1", "is_a|part_of") in everything.edges


def test_read_shipped_file_equals_default(cl: Ontology) -> None:
    again = read_ontology(cl.source)
    assert again.version == cl.version
    assert again.terms == cl.terms
    assert again.edges == cl.edges


def test_json_cannot_split_is_a_from_part_of(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "x.json", JSON_DATA)
    with pytest.raises(InputError, match="part_of"):
        read_ontology(path, relations=("is_a",))


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.json", None, "missing.json"),
        ("onto.txt", b"{}", "onto.txt"),
        ("broken.json", b"{not json", "broken.json"),
        ("broken.json.zst", b"not zstd", "broken.json.zst"),
        ("list.json", b"[1, 2]", "list.json"),
        ("nolabel.json", b'{"CL:1": {"ancestors": {}}}', "CL:1"),
    ],
)
def test_bad_files_raise(tmp_path: Path, name: str, content: bytes | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=expected.replace(".", r"\.")):
        read_ontology(path)


def test_relations_must_be_a_sequence(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "x.json", JSON_DATA)
    with pytest.raises(InputError, match="relations"):
        read_ontology(path, relations="is_a")


def test_ontology_checks_its_own_input() -> None:
    with pytest.raises(InputError, match="CL:9"):
        Ontology({ROOT: Term(ROOT, "cell")}, (("CL:9", ROOT, "is_a"),), "CL", "t", "t")
    with pytest.raises(InputError, match="CL:1"):
        Ontology({"CL:1": Term(ROOT, "cell")}, (), "CL", "t", "t")


def test_unknown_term_queries_raise(cl: Ontology) -> None:
    for query in (cl.parents, cl.ancestors, cl.label):
        with pytest.raises(InputError, match="CL:9999999"):
            query("CL:9999999")


def test_cycles_terminate() -> None:
    terms = {t: Term(t, t) for t in ("CL:1", "CL:2", "CL:3")}
    edges = (("CL:1", "CL:2", "develops_from"), ("CL:2", "CL:1", "is_a"), ("CL:2", "CL:3", "is_a"))
    onto = Ontology(terms, edges, "CL", "t", "t")
    assert onto.ancestors("CL:1") == {"CL:2", "CL:3"}
    assert onto.ancestors("CL:2") == {"CL:1", "CL:3"}
