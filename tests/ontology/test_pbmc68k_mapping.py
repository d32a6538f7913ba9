"""The shipped pbmc68k_reduced label table covers the real labels with live CL ids."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc

from cellbridge.ontology import (
    Ontology,
    compositions,
    map_labels,
    pbmc68k_label_mapping,
    pbmc68k_label_table,
)


@pytest.fixture(scope="module")
def pbmc() -> sc.AnnData:
    return sc.datasets.pbmc68k_reduced()


def test_covers_every_real_label(pbmc: sc.AnnData) -> None:
    real = set(pbmc.obs["bulk_labels"].astype(str))
    assert len(real) == 10
    assert set(pbmc68k_label_mapping()) == real


def test_ids_are_live_and_labels_match(cl: Ontology) -> None:
    rows = pbmc68k_label_table()
    assert len(rows) == 10
    for row in rows:
        term = cl.terms[row["cl_id"]]
        assert not term.deprecated, row
        assert term.label == row["cl_label"], row
        assert row["note"].strip(), row
    assert len({row["cl_id"] for row in rows}) == 10


def test_reviewed_choices(cl: Ontology) -> None:
    table = pbmc68k_label_mapping()
    assert table["CD14+ Monocyte"] == "CL:0001054"
    assert table["CD19+ B"] == "CL:0001201"
    assert "CL:0000236" in cl.ancestors(table["CD19+ B"])  # B cell
    assert "CL:0000815" in cl.ancestors(table["CD4+/CD25 T Reg"])  # regulatory T cell
    assert table["CD56+ NK"] == "CL:0000623"
    assert table["CD34+"] in cl.ancestors("CL:0000037")  # HSC lies below it


def test_compositions_on_real_data(pbmc: sc.AnnData, cl: Ontology) -> None:
    mapped = map_labels(pbmc.obs["bulk_labels"], cl, mapping=pbmc68k_label_mapping())
    assert not mapped.dropped
    comp = compositions(
        pbmc, sample_key="phase", cell_type_key="bulk_labels", mapping=pbmc68k_label_mapping()
    )
    assert comp.counts.sum() == pbmc.n_obs
    assert (comp.proportions["CL:0000000"] == 1.0).all()
    t_labels = {
        "CD4+/CD25 T Reg",
        "CD4+/CD45RA+/CD25- Naive T",
        "CD4+/CD45RO+ Memory",
        "CD8+ Cytotoxic T",
        "CD8+/CD45RA+ Naive Cytotoxic",
    }
    t_cells = pbmc.obs["bulk_labels"].astype(str).isin(t_labels)
    expected = t_cells.groupby(pbmc.obs["phase"].astype(str)).mean()
    np.testing.assert_allclose(comp.proportions["CL:0000084"], expected.loc[comp.proportions.index])
