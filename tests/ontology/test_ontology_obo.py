"""Reading a user OBO file keeps typed edges and filters them by relation and prefix."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cellbridge.errors import InputError
from cellbridge.ontology import map_labels, prune, read_ontology

ROOT = "CL:0000000"


def test_default_keeps_is_a_and_part_of_only(obo_file: Path) -> None:
    onto = read_ontology(obo_file)
    assert onto.edges == (
        ("CL:0000001", ROOT, "is_a"),
        ("CL:0000002", "CL:0000001", "is_a"),
        ("CL:0000003", ROOT, "is_a"),
        ("CL:0000004", "CL:0000001", "part_of"),
    )
    assert onto.name == "CL"
    assert onto.version == "cl/releases/2099-01-01/cl.owl"
    assert onto.source == str(obo_file)


def test_relation_filter(obo_file: Path) -> None:
    only_is_a = read_ontology(obo_file, relations=("is_a",))
    assert only_is_a.relations() == ["is_a"]
    assert only_is_a.parents("CL:0000004") == []
    with_develops = read_ontology(obo_file, relations=("is_a", "part_of", "develops_from"))
    assert ("CL:0000003", "CL:0000004", "develops_from") in with_develops.edges
    assert with_develops.ancestors("CL:0000003") == {ROOT, "CL:0000004", "CL:0000001"}
    assert with_develops.relations() == ["develops_from", "is_a", "part_of"]


def test_prefix_filter(obo_file: Path) -> None:
    cl_only = read_ontology(obo_file)
    assert "UBERON:0000178" not in cl_only.terms
    assert cl_only.parents("CL:0000002") == ["CL:0000001"]
    everything = read_ontology(obo_file, prefix=None)
    assert "UBERON:0000178" in everything.terms
    assert everything.parents("CL:0000002") == ["CL:0000001", "UBERON:0000178"]


def test_terms_synonyms_and_obsolete(obo_file: Path) -> None:
    onto = read_ontology(obo_file)
    assert onto.terms["CL:0000001"].synonyms == ("hemocyte", 'blood "corpuscle"')
    old = onto.terms["CL:0000099"]
    assert old.deprecated and old.replaced_by == "CL:0000002"
    assert not onto.terms["CL:0000002"].deprecated
    mapped = map_labels(["obsolete old T cell", "CL:0000099", "Hemocyte"], onto)
    assert mapped.ids.tolist() == ["CL:0000002", "CL:0000002", "CL:0000001"]


def test_prune_keeps_relation_types(obo_file: Path) -> None:
    onto = read_ontology(obo_file, relations=("is_a", "part_of", "develops_from"))
    graph = prune(onto, ["CL:0000003"])
    assert graph.nodes == (ROOT, "CL:0000001", "CL:0000003", "CL:0000004")
    named = {
        (graph.nodes[c], graph.nodes[p]): r
        for (c, p), r in zip(graph.edges.tolist(), graph.relations, strict=True)
    }
    assert named[("CL:0000003", "CL:0000004")] == "develops_from"
    assert named[("CL:0000004", "CL:0000001")] == "part_of"


def test_absent_relation_is_logged(obo_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cellbridge.ontology"):
        read_ontology(obo_file, relations=("is_a", "has_part"))
    assert "has_part" in caplog.text


def test_unparsable_obo_raises(tmp_path: Path) -> None:
    path = tmp_path / "bad.obo"
    path.write_text("[Term]\nthis line has no tag separator\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.obo"):
        read_ontology(path)
