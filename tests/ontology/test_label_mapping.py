"""Label -> CL id rules: each rule, its priority, and every refusal."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from cellbridge.errors import InputError
from cellbridge.ontology import Ontology, map_labels, normalize_label


def _one(label: str, onto: Ontology) -> str | None:
    result = map_labels([label], onto, strict=False)
    return result.ids[0]


@pytest.mark.parametrize(
    ("label", "expected", "rule"),
    [
        ("T cell", "CL:0000002", "exact label"),
        ("T lymphocyte", "CL:0000002", "synonym"),
        ("  t-LYMPHOCYTE ", "CL:0000002", "normalised synonym"),
        ("blood_cell", "CL:0000001", "normalised label"),
        ("CL:0000003", "CL:0000003", "id passthrough"),
        ("Foo cell", "CL:0000005", "exact label beats normalised ambiguity"),
        ("foo-cell", "CL:0000006", "exact synonym beats normalised ambiguity"),
        ("obsolete T cell", "CL:0000002", "deprecated label -> replacement"),
        ("CL:0000007", "CL:0000002", "deprecated id -> replacement"),
        ("CL:0000009", "CL:0000002", "chain of replacements"),
        ("CL:0000008", None, "deprecated without replacement"),
        ("FOO CELL", None, "ambiguous normalised"),
        ("lymph", None, "ambiguous synonym"),
        ("zebra", None, "unknown"),
    ],
)
def test_rules(toy: Ontology, label: str, expected: str | None, rule: str) -> None:
    assert _one(label, toy) == expected, rule


def test_override_table_wins(toy: Ontology) -> None:
    table = {"T cell": "CL:0000003", "zebra": "CL:0000010"}
    result = map_labels(["T cell", "zebra", "B cell"], toy, mapping=table)
    assert result.ids.tolist() == ["CL:0000003", "CL:0000010", "CL:0000003"]
    assert result.table == {"T cell": "CL:0000003", "zebra": "CL:0000010", "B cell": "CL:0000003"}


@pytest.mark.parametrize("bad", ["CL:0000404", "CL:0000007", "CL:0000008"])
def test_override_table_must_hold_live_ids(toy: Ontology, bad: str) -> None:
    with pytest.raises(InputError, match=bad) as err:
        map_labels(["T cell"], toy, mapping={"T cell": bad})
    assert err.value.field == "mapping"


def test_ambiguous_lists_candidates(toy: Ontology) -> None:
    with pytest.raises(InputError, match="ambiguous") as err:
        map_labels(["FOO CELL"], toy)
    assert "CL:0000005" in str(err.value) and "CL:0000006" in str(err.value)


def test_unmapped_error_lists_every_label_and_suggestions(cl: Ontology) -> None:
    labels = ["Dendritic", "CD19+ B", "qqqq", "B cell", "Dendritic"]
    with pytest.raises(InputError) as err:
        map_labels(labels, cl, field="obs['cell_type']")
    message = str(err.value)
    assert message.startswith("obs['cell_type']: 3 labels")
    for label in ("'Dendritic'", "'CD19+ B'", "'qqqq'"):
        assert label in message
    assert "CL:0000451 'dendritic cell'" in message
    assert "CL:0001201 'B cell, CD19-positive'" in message
    assert "no close Cell Ontology label" in message
    assert "mapping={label: 'CL:...'} or strict=False" in message
    assert err.value.values == ["Dendritic", "CD19+ B", "qqqq"]


@pytest.mark.parametrize(
    ("label", "first"), [("Dendritic", "CL:0000451"), ("CD19+ B", "CL:0001201")]
)
def test_three_closest_suggestions(cl: Ontology, label: str, first: str) -> None:
    with pytest.raises(InputError) as err:
        map_labels([label], cl)
    closest = str(err.value).split("closest: ")[1].split(")")[0]
    assert closest.startswith(first)
    assert closest.count("CL:") == 3


def test_marker_signs_are_not_ignored(cl: Ontology) -> None:
    # CL has "CD8+ regulatory T cell" as a synonym of CL:0000795, and no CD8- variant.
    result = map_labels(
        ["CD8+ regulatory T cell", "cd8+ Regulatory T-cell", "CD8- regulatory T cell"],
        cl,
        strict=False,
    )
    assert result.ids.tolist() == ["CL:0000795", "CL:0000795", None]


def test_strict_false_drops_and_counts(cl: Ontology, caplog: pytest.LogCaptureFixture) -> None:
    labels = pd.Series(["B cell", "qqqq", "qqqq", "T cell", "zzzz"], dtype="category")
    with caplog.at_level(logging.WARNING, logger="cellbridge.ontology"):
        result = map_labels(labels, cl, strict=False)
    assert result.ids.tolist() == ["CL:0000236", None, None, "CL:0000084", None]
    assert result.dropped == {"qqqq": 2, "zzzz": 1}
    assert result.table == {"B cell": "CL:0000236", "T cell": "CL:0000084"}
    assert "dropped 3 cells" in caplog.text and "'qqqq': 2" in caplog.text


def test_real_cl_rules(cl: Ontology) -> None:
    labels = ["B cell", "B lymphocyte", "b-Cell", "CL:0000236", "CD14+ monocyte", "CL:0000003"]
    result = map_labels(labels, cl)
    assert result.ids.tolist() == ["CL:0000236"] * 4 + ["CL:0001054", "CL:0000000"]
    assert result.ids.dtype == object


def test_case_and_separator_changes_keep_the_term(cl: Ontology) -> None:
    rng = np.random.default_rng(2)
    live = sorted(t for t, term in cl.terms.items() if not term.deprecated)
    picked = rng.choice(live, size=150, replace=False).tolist()
    labels = [cl.label(t) for t in picked]
    exact = map_labels(labels, cl, strict=False)
    changed = [label.upper().replace(" ", "_") for label in labels]
    fuzzy = map_labels(changed, cl, strict=False)
    for term_id, a, b in zip(picked, exact.ids, fuzzy.ids, strict=True):
        assert a == term_id
        assert b in (term_id, None)  # None only where the looser key is ambiguous
    assert sum(b is None for b in fuzzy.ids) <= 3


def test_normalize_label() -> None:
    assert normalize_label(" B-Cell ") == "b cell"
    assert normalize_label("T__cell,,") == "t cell"
    assert normalize_label("CD14+ Monocyte") == normalize_label("CD14-positive monocyte")
    assert normalize_label("CD8- T") == "cd8 negative t"
    assert normalize_label("CD8+ T") == "cd8 positive t"
    assert normalize_label("CD8-T") == normalize_label("cd8 t")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["B cell", None], r"missing .*\(1\)"),
        (np.array(["B cell", "T cell", np.nan], dtype=object), r"missing .*\(2\)"),
        (["B cell", 3], r"strings \(3\)"),
        (np.array([["B cell"]]), r"\(1, 1\)"),
    ],
)
def test_bad_labels_raise(cl: Ontology, labels: object, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        map_labels(labels, cl)  # type: ignore[arg-type]


def test_empty_input(cl: Ontology) -> None:
    result = map_labels([], cl)
    assert result.ids.shape == (0,) and result.table == {} and result.dropped == {}
