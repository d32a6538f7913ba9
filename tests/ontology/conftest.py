"""Shared fixtures: the shipped Cell Ontology, a hand-made toy ontology, a small OBO file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellbridge.ontology import Ontology, Term, load_cell_ontology

ROOT = "CL:0000000"

# A toy ontology whose every mapping rule has one known answer.
TOY_TERMS = [
    Term(ROOT, "cell"),
    Term("CL:0000001", "blood cell", synonyms=("hemocyte",)),
    Term("CL:0000002", "T cell", synonyms=("T lymphocyte", "lymph")),
    Term("CL:0000003", "B cell", synonyms=("B lymphocyte", "lymph")),
    Term("CL:0000005", "Foo cell"),
    Term("CL:0000006", "bar cell", synonyms=("foo-cell",)),
    Term("CL:0000007", "obsolete T cell", deprecated=True, replaced_by="CL:0000002"),
    Term("CL:0000008", "obsolete gone cell", deprecated=True),
    Term("CL:0000009", "obsolete older T cell", deprecated=True, replaced_by="CL:0000007"),
    Term("CL:0000010", "plasma cell", synonyms=("plasmocyte",)),
]
TOY_EDGES = [
    ("CL:0000001", ROOT, "is_a"),
    ("CL:0000002", "CL:0000001", "is_a"),
    ("CL:0000003", "CL:0000001", "is_a"),
    ("CL:0000005", ROOT, "is_a"),
    ("CL:0000006", ROOT, "is_a"),
    ("CL:0000010", "CL:0000003", "is_a"),
    ("CL:0000010", "CL:0000003", "develops_from"),
]

OBO_TEXT = """format-version: 1.2
data-version: cl/releases/2099-01-01/cl.owl
ontology: cl

[Term]
id: CL:0000000
name: cell

[Term]
id: CL:0000001
name: blood cell
synonym: "hemocyte" EXACT []
synonym: "blood \\"corpuscle\\"" RELATED []
is_a: CL:0000000 ! cell

[Term]
id: CL:0000002
name: T cell
is_a: CL:0000001 ! blood cell
relationship: part_of UBERON:0000178 ! blood

[Term]
id: CL:0000003
name: thymocyte
is_a: CL:0000000 ! cell
relationship: develops_from CL:0000004 ! progenitor

[Term]
id: CL:0000004
name: progenitor
relationship: part_of CL:0000001 ! blood cell

[Term]
id: CL:0000099
name: obsolete old T cell
is_obsolete: true
replaced_by: CL:0000002

[Term]
id: UBERON:0000178
name: blood
"""


@pytest.fixture(scope="session")
def cl() -> Ontology:
    return load_cell_ontology()


@pytest.fixture(scope="session")
def toy() -> Ontology:
    return Ontology({t.id: t for t in TOY_TERMS}, tuple(TOY_EDGES), "CL", "toy", "tests")


@pytest.fixture()
def obo_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.obo"
    path.write_text(OBO_TEXT, encoding="utf-8")
    return path
