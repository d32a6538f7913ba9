"""The embedded data: real PBMCs with CL ids, semi-synthetic patients with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from cellbridge.data import pbmc68k, pbmc_patients
from cellbridge.errors import InputError
from cellbridge.ontology import compositions, load_cell_ontology


def test_pbmc68k_every_cell_has_a_valid_cl_id() -> None:
    adata = pbmc68k()
    onto = load_cell_ontology()
    assert adata.n_obs == 700
    ids = adata.obs["cell_type"].astype(str)
    assert ids.notna().all()
    assert {i for i in ids.unique() if i not in onto.terms or onto.terms[i].deprecated} == set()
    assert adata.obs.groupby("bulk_labels", observed=True)["cell_type"].nunique().max() == 1
    assert adata.uns["cellbridge"]["provenance"].startswith("real")


def test_patients_truth_matches_the_cells_drawn() -> None:
    cells, truth = pbmc_patients(n_patients=9, n_cohorts=3, cells_per_patient=40, seed=3)
    assert cells.n_obs == 9 * 40
    assert cells.obs_names.is_unique
    observed = (
        cells.obs.groupby(["sample", "cell_type"], observed=False).size().unstack(fill_value=0)
    )
    observed = observed.div(observed.sum(axis=1), axis=0).reindex(columns=truth.columns)
    np.testing.assert_allclose(observed.loc[truth.index].to_numpy(), truth.to_numpy())
    assert "semi-synthetic" in cells.uns["cellbridge"]["provenance"]
    # the compositions layer reproduces the truth on the leaf types
    comp = compositions(cells)
    leaves = [t for t in truth.columns if t in comp.proportions.columns]
    assert (
        comp.proportions.loc[truth.index, leaves].to_numpy() >= truth[leaves].to_numpy() - 1e-12
    ).all()


def test_patients_are_seeded_and_cohorts_differ() -> None:
    a, ta = pbmc_patients(n_patients=30, seed=1)
    b, tb = pbmc_patients(n_patients=30, seed=1)
    _, tc = pbmc_patients(n_patients=30, seed=2)
    assert (a.obs_names == b.obs_names).all()
    np.testing.assert_array_equal(ta.to_numpy(), tb.to_numpy())
    assert not np.array_equal(ta.to_numpy(), tc.to_numpy())
    cohort = a.obs.groupby("sample", observed=True)["cohort"].first().reindex(ta.index)
    means = ta.groupby(cohort.to_numpy()).mean().to_numpy()
    within = np.mean(
        [
            np.abs(ta.to_numpy()[cohort.to_numpy() == c] - means[i]).sum(1).mean()
            for i, c in enumerate(sorted(cohort.unique()))
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
    ],
)
def test_patients_bad_sizes(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InputError, match=field):
        pbmc_patients(**kwargs)  # type: ignore[arg-type]
