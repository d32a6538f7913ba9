"""The simulated drug screen: real drug identities, the generative model, a recoverable signal."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from cellbridge.data.perturbation import PerturbationTruth, drug_table, perturbation_screen
from cellbridge.errors import InputError

SMALL = {"n_cell_lines": 3, "n_drugs": 24, "n_plates": 2, "cells_per_condition": 40}


@pytest.fixture(scope="module")
def screen() -> tuple[AnnData, PerturbationTruth]:
    return perturbation_screen(**SMALL, n_genes=400, seed=7)


def _log_fold_changes(adata: AnnData, line: str) -> pd.DataFrame:
    """Drugs x genes: log fold change vs DMSO of the same plate, averaged over plates.

    Independent of the simulator: per-cell scaling to 10^4 counts, means per condition.
    """
    X = sp.csr_matrix(adata.X).toarray().astype(float)
    X = X / X.sum(axis=1, keepdims=True) * 1e4
    obs = adata.obs
    per_plate = []
    for plate in obs["plate"].cat.categories:
        rows = ((obs["cell_line"] == line) & (obs["plate"] == plate)).to_numpy()
        means = (
            pd.DataFrame(X[rows], columns=adata.var_names)
            .groupby(obs["drug"].to_numpy()[rows])
            .mean()
        )
        control = means.loc["DMSO"]
        per_plate.append(np.log(means.drop(index="DMSO") + 0.1) - np.log(control + 0.1))
    return sum(per_plate[1:], per_plate[0]) / len(per_plate)


def _top_genes(lfc: pd.DataFrame, k: int) -> dict[str, set[str]]:
    return {drug: set(row.abs().nlargest(k).index) for drug, row in lfc.iterrows()}


def test_drug_table_is_the_shipped_table_of_real_drugs() -> None:
    table = drug_table()
    assert list(table.columns) == [
        "name",
        "drugbank_id",
        "smiles",
        "atc",
        "atc_level3_name",
        "atc_level4_name",
    ]
    assert len(table) == 96
    assert table["name"].is_unique
    assert table["atc"].value_counts().to_dict() == dict.fromkeys(table["atc"].unique(), 8)
    assert table["drugbank_id"].str.fullmatch(r"DB\d{5}(;DB\d{5})*").all()
    assert table["atc"].str.fullmatch(r"[A-Z]\d\d[A-Z][A-Z]").all()
    assert (table["smiles"].str.len() > 0).all()
    row = table.set_index("name").loc["Gemcitabine"]
    assert row["atc"] == "L01BC" and row["drugbank_id"].split(";")[0] == "DB00441"


def test_screen_layout_and_real_drug_identities(tmp_path: Path) -> None:
    adata, truth = perturbation_screen(
        n_cell_lines=2,
        n_drugs=5,
        n_plates=3,
        cells_per_condition=7,
        controls_per_plate=11,
        n_genes=120,
        seed=2,
    )
    assert adata.shape == (2 * 3 * (5 * 7 + 11), 120)
    assert sp.issparse(adata.X) and adata.X.format == "csr" and adata.X.dtype == np.float32
    assert np.array_equal(adata.X.data, np.round(adata.X.data)) and (adata.X.data > 0).all()
    assert adata.obs_names.is_unique and adata.var_names[0] == "g0000"
    assert list(adata.obs.columns) == [
        "drug",
        "cell_line",
        "plate",
        "control",
        "atc",
        "smiles",
        "drugbank_id",
    ]
    size = adata.obs.groupby(["cell_line", "plate", "drug"], observed=True).size()
    assert (size.xs("DMSO", level="drug") == 11).all() and len(size) == 2 * 3 * 6
    assert (size.drop(index="DMSO", level="drug") == 7).all()
    control = adata.obs["control"].to_numpy()
    assert adata.obs["control"].dtype == bool
    assert (adata.obs["drug"][control] == "DMSO").all() and (
        adata.obs["drug"][~control] != "DMSO"
    ).all()
    assert set(adata.obs.loc[control, "smiles"]) == {"CS(C)=O"}
    table = drug_table().set_index("name")
    treated = adata.obs[~control].drop_duplicates("drug").set_index("drug")
    for column in ("atc", "smiles", "drugbank_id"):
        assert treated[column].astype(str).to_dict() == table.loc[treated.index, column].to_dict()
    assert truth.drug_class.to_dict() == table.loc[truth.drug_class.index, "atc"].to_dict()
    assert "SIMULATED" in adata.uns["cellbridge"]["provenance"]
    assert adata.uns["cellbridge"]["seed"] == 2
    adata.write_h5ad(tmp_path / "screen.h5ad")
    back = anndata.read_h5ad(tmp_path / "screen.h5ad")
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    assert (back.X != adata.X).nnz == 0


def test_drugs_spread_over_classes_or_come_from_the_caller() -> None:
    per_class = perturbation_screen(n_drugs=48, **_tiny())[1].drug_class.value_counts()
    assert len(per_class) == 12 and (per_class == 4).all()
    uneven = perturbation_screen(n_drugs=13, **_tiny())[1].drug_class.value_counts()
    assert len(uneven) == 12 and set(uneven) == {1, 2}
    named = perturbation_screen(drugs=["Fenoprofen", "Diazepam"], **_tiny())[1]
    assert list(named.effects.index) == ["Diazepam", "Fenoprofen"]


def _tiny() -> dict[str, int]:
    return {"n_cell_lines": 1, "n_plates": 1, "cells_per_condition": 2, "n_genes": 60}


def test_same_seed_same_data_and_truth_independent_of_cell_numbers() -> None:
    a, ta = perturbation_screen(**SMALL, n_genes=100, seed=11)
    b, tb = perturbation_screen(**SMALL, n_genes=100, seed=11)
    c, tc = perturbation_screen(**SMALL, n_genes=100, seed=12)
    assert (a.X != b.X).nnz == 0
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(ta.effects, tb.effects)
    assert a.X.shape != c.X.shape or (a.X != c.X).nnz > 0
    assert not ta.effects.equals(tc.effects)
    fewer = perturbation_screen(**{**SMALL, "cells_per_condition": 5}, n_genes=100, seed=11)[1]
    pd.testing.assert_frame_equal(fewer.effects, ta.effects)
    pd.testing.assert_frame_equal(fewer.baseline, ta.baseline)


def test_truth_is_class_program_plus_drug_specific_genes(
    screen: tuple[AnnData, PerturbationTruth],
) -> None:
    _, truth = screen
    for drug, atc in truth.drug_class.items():
        program = truth.class_genes(atc)
        moved = truth.moved_genes(drug)
        assert len(program) == 30 and len(moved) == 30 + 15 and program <= moved
        specific = truth.effects.loc[drug] - truth.potency[drug] * truth.mechanism.loc[atc]
        assert set(specific.index[specific.abs() > 1e-12]) == moved - program
        nonzero = truth.effects.loc[drug][list(moved)].abs()
        assert nonzero.min() >= 0.5 * 0.75 and nonzero.max() <= 1.5 * 1.25
    line = truth.response_strength.index[-1]
    np.testing.assert_allclose(
        truth.log_fold_change(drug, line), truth.response_strength[line] * truth.effects.loc[drug]
    )
    assert list(truth.response_strength) == [1.0, 0.625, 0.25]
    with pytest.raises(InputError, match="not a simulated drug") as err:
        truth.moved_genes("Aspirin")
    assert err.value.values == ["Aspirin"]
    with pytest.raises(InputError, match="not in the simulated screen"):
        truth.log_fold_change(drug, "A549")


def test_control_means_follow_the_generative_model() -> None:
    """Closed form: E[X_cg] = L_bar e^{0.3^2/2} exp(eta_lg + tau_pg) / sum_h exp(eta_lh)."""
    adata, truth = perturbation_screen(
        n_cell_lines=2,
        n_drugs=1,
        n_plates=2,
        cells_per_condition=1,
        controls_per_plate=3000,
        n_genes=40,
        n_mechanism_genes=2,
        n_specific_genes=2,
        plate_sd=0.5,
        seed=5,
    )
    X = sp.csr_matrix(adata.X).toarray()
    for line in truth.baseline.index:
        eta = truth.baseline.loc[line].to_numpy()
        for plate in truth.plate_shift.index:
            rows = (adata.obs[["cell_line", "plate"]] == (line, plate)).all(axis=1).to_numpy()
            rows &= adata.obs["control"].to_numpy()
            tau = truth.plate_shift.loc[plate].to_numpy()
            expected = 2000.0 * np.exp(0.3**2 / 2) * np.exp(eta + tau) / np.exp(eta).sum()
            high = expected > 5
            observed = X[rows].mean(axis=0)
            np.testing.assert_allclose(observed[high], expected[high], rtol=0.06)


def test_de_against_same_plate_controls_recovers_the_moved_genes(
    screen: tuple[AnnData, PerturbationTruth],
) -> None:
    adata, truth = screen
    k = 45
    chance = k / adata.n_vars
    strong, weak = truth.response_strength.idxmax(), truth.response_strength.idxmin()
    lfc = {line: _log_fold_changes(adata, line) for line in (strong, weak)}
    tops = _top_genes(lfc[strong], k)
    precision = pd.Series({d: len(tops[d] & truth.moved_genes(d)) / k for d in tops})
    assert precision.mean() > 0.8 > 6 * chance and precision.min() > 0.6
    # signed agreement with the true log fold changes on the moved genes
    for drug in tops:
        moved = sorted(truth.moved_genes(drug))
        r = np.corrcoef(lfc[strong].loc[drug, moved], truth.log_fold_change(drug, strong)[moved])
        assert r[0, 1] > 0.9
    # drugs of one ATC class share top genes; drugs of different classes hardly do
    same, different = [], []
    for u, v in combinations(sorted(tops), 2):
        jaccard = len(tops[u] & tops[v]) / len(tops[u] | tops[v])
        (same if truth.drug_class[u] == truth.drug_class[v] else different).append(jaccard)
    assert len(same) == 12
    assert np.mean(same) > 0.35 and np.mean(different) < 0.1
    assert np.mean(same) > 4 * np.mean(different)
    # the weak line responds with smaller fold changes on the same genes
    size = {
        line: np.median(
            [lfc[line].loc[d, sorted(truth.moved_genes(d))].abs().median() for d in tops]
        )
        for line in (strong, weak)
    }
    assert size[weak] < 0.5 * size[strong]
    weak_precision = np.mean(
        [len(s & truth.moved_genes(d)) / k for d, s in _top_genes(lfc[weak], k).items()]
    )
    assert chance < weak_precision < precision.mean()


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"n_drugs": 0}, "n_drugs", 0),
        ({"n_drugs": 97}, "n_drugs", 97),
        ({"drugs": ["Sorafenib", "Aspirine"]}, "drugs", "Aspirine"),
        ({"drugs": ["Sorafenib", "Sorafenib"]}, "drugs", "Sorafenib"),
        ({"drugs": "Sorafenib"}, "drugs", "Sorafenib"),
        ({"drugs": []}, "drugs", []),
        ({"n_cell_lines": 0}, "n_cell_lines", 0),
        ({"n_plates": 1.5}, "n_plates", 1.5),
        ({"cells_per_condition": True}, "cells_per_condition", True),
        ({"controls_per_plate": 0}, "controls_per_plate", 0),
        ({"n_genes": 40}, "n_genes", 40),
        ({"effect_size": (0.0, 1.0)}, "effect_size", (0.0, 1.0)),
        ({"effect_size": (2.0, 1.0)}, "effect_size", (2.0, 1.0)),
        ({"response_strengths": [1.0, 0.5]}, "response_strengths", 0.5),
        ({"response_strengths": [1.0, -0.5, 1.0, 1.0]}, "response_strengths", -0.5),
        ({"plate_sd": -0.1}, "plate_sd", -0.1),
        ({"dispersion": float("inf")}, "dispersion", float("inf")),
        ({"library_size": 0.0}, "library_size", 0.0),
    ],
)
def test_bad_input_is_refused_with_the_offending_values(
    kwargs: dict[str, object], field: str, value: object
) -> None:
    with pytest.raises(InputError) as err:
        perturbation_screen(**{"n_genes": 100, **kwargs})  # type: ignore[arg-type]
    assert err.value.field == field
    assert value in err.value.values
