"""The embedded data: real PBMCs with CL ids, semi-synthetic patients with known truth."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import mannwhitneyu

from cellbridge.data import pbmc68k, pbmc_patients
from cellbridge.data.datasets import CAUSAL_TYPES, PbmcPatients
from cellbridge.errors import InputError
from cellbridge.ontology import compositions, load_cell_ontology


@pytest.fixture(scope="module")
def small() -> PbmcPatients:
    return pbmc_patients(n_patients=12, n_cohorts=3, cells_per_patient=40, seed=3)


def test_pbmc68k_every_cell_has_a_valid_cl_id() -> None:
    adata = pbmc68k()
    onto = load_cell_ontology()
    assert adata.n_obs == 700
    ids = adata.obs["cell_type"].astype(str)
    assert ids.notna().all()
    assert {i for i in ids.unique() if i not in onto.terms or onto.terms[i].deprecated} == set()
    assert adata.obs.groupby("bulk_labels", observed=True)["cell_type"].nunique().max() == 1
    assert adata.uns["cellbridge"]["provenance"].startswith("real")


def test_truth_matches_the_cells_drawn(small: PbmcPatients) -> None:
    cells, truth = small.cells, small.compositions
    assert cells.n_obs == 12 * 40
    assert cells.obs_names.is_unique
    observed = (
        cells.obs.groupby(["sample", "cell_type"], observed=False).size().unstack(fill_value=0)
    )
    observed = observed.div(observed.sum(axis=1), axis=0).reindex(columns=truth.columns)
    np.testing.assert_allclose(observed.loc[truth.index].to_numpy(), truth.to_numpy())
    # the ontology compositions reproduce the truth on the leaf types
    comp = compositions(cells)
    np.testing.assert_allclose(comp.proportions.loc[truth.index, truth.columns], truth, atol=1e-12)


def test_every_output_is_labelled_semi_synthetic(small: PbmcPatients) -> None:
    for adata in (small.cells, small.pseudobulk, small.insilico_bulk, small.sorted_profiles):
        assert "semi-synthetic" in adata.uns["cellbridge"]["provenance"]


def test_counts_are_integers_and_pseudobulk_sums_them(small: PbmcPatients) -> None:
    X = small.cells.X
    assert sp.issparse(X)
    assert np.all(X.data == np.round(X.data)) and X.data.min() >= 0
    dense = X.toarray()
    sample = small.cells.obs["sample"].to_numpy()
    for name in ("P000", "P007"):
        raw = dense[sample == name].sum(axis=0)
        expected = np.log1p(raw / raw.sum() * 1e6)
        np.testing.assert_allclose(small.pseudobulk[name].X.ravel(), expected, rtol=1e-6)
    assert (small.pseudobulk.obs["n_cells"] == 40).all()
    assert list(small.pseudobulk.obs["cohort"]) == list(small.phenotype["cohort"])


def test_insilico_bulk_uses_the_true_proportions(small: PbmcPatients) -> None:
    props = small.insilico_bulk.obsm["proportions"]
    np.testing.assert_allclose(props.to_numpy(), small.compositions.loc[props.index, props.columns])
    assert small.sorted_profiles.n_obs == 3 * 10


def test_phenotype_follows_its_known_cause() -> None:
    data = pbmc_patients(n_patients=60, seed=0)
    pheno = data.phenotype
    cause = data.compositions[list(CAUSAL_TYPES)].sum(axis=1)
    np.testing.assert_allclose(pheno["cause"], cause)
    y = pheno["phenotype"]
    assert y.mean() == 0.5
    auc = mannwhitneyu(cause[y == 1], cause[y == 0]).statistic / ((y == 1).sum() * (y == 0).sum())
    assert auc > 0.95
    cell_y = data.cells.obs.groupby("sample", observed=True)["phenotype"].first()
    assert (cell_y.reindex(pheno.index) == y).all()


def test_cohorts_shift_expression() -> None:
    """Same cell types, different cohorts: the per-gene technical shift shows in the counts."""
    data = pbmc_patients(n_patients=30, seed=1, cohort_shift=0.5)
    flat = pbmc_patients(n_patients=30, seed=1, cohort_shift=0.0)

    def spread(d: PbmcPatients) -> float:
        c = d.cells
        mono = (c.obs["cell_type"] == "CL:0000451").to_numpy()
        means = [
            np.asarray(c.X[mono & (c.obs["cohort"] == k).to_numpy()].mean(axis=0)).ravel()
            for k in ("cohort0", "cohort1", "cohort2")
        ]
        return float(np.std(np.log1p(means), axis=0).mean())

    assert spread(data) > 1.5 * spread(flat)


def test_patients_are_seeded_and_cohorts_differ() -> None:
    a, b, c = (pbmc_patients(n_patients=30, seed=s) for s in (1, 1, 2))
    assert (a.cells.obs_names == b.cells.obs_names).all()
    assert (a.cells.X != b.cells.X).nnz == 0
    np.testing.assert_array_equal(a.compositions.to_numpy(), b.compositions.to_numpy())
    assert not np.array_equal(a.compositions.to_numpy(), c.compositions.to_numpy())
    ta = a.compositions
    cohort = a.phenotype["cohort"].to_numpy()
    means = ta.groupby(cohort).mean().to_numpy()
    within = np.mean(
        [
            np.abs(ta.to_numpy()[cohort == k] - means[i]).sum(1).mean()
            for i, k in enumerate(sorted(set(cohort)))
        ]
    )
    across = np.abs(means[:, None] - means[None]).sum(-1)[np.triu_indices(3, 1)].mean()
    assert within < across


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_patients": 0}, "n_patients"),
        ({"n_cohorts": 5, "n_patients": 2}, "n_cohorts"),
        ({"cells_per_patient": 0}, "cells_per_patient"),
        ({"concentration": 0.0}, "concentration"),
        ({"cohort_shift": -1.0}, "cohort_shift"),
        ({"n_sorted": 0}, "n_sorted"),
    ],
)
def test_patients_bad_sizes(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InputError, match=field):
        pbmc_patients(**kwargs)  # type: ignore[arg-type]
