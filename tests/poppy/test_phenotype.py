"""POPPY stage 2 (§2.2.5): the phenotype head learns, streams, persists and refuses bad input.

Data: the embedded semi-synthetic pbmc patients (phenotype = high cytotoxic T + NK
fraction), stage 1 trained briefly on two thirds of them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cellbridge.data import pbmc_patients
from cellbridge.errors import InputError
from cellbridge.poppy import (
    POPPY,
    PhenotypeConfig,
    POPPYConfig,
    evaluate_phenotype,
    pbmc_split,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:fewer than B - 2:UserWarning"),
    pytest.mark.filterwarnings("ignore:an anchor has no:UserWarning"),
]

FAST = {"max_epochs": 40, "learning_rate": 3e-3, "batch_size": 8}


class Stage2:
    def __init__(self) -> None:
        split = pbmc_split(
            n_patients=60, cells_per_patient=60, k=8, n_tumours=0, programs=False, seed=0
        )
        config = POPPYConfig(
            cell_key="X_pca", assay_key="assay", val_fraction=0.0, max_epochs=8, batch_size=16
        )
        self.model = POPPY(config).fit(
            split.cells_train, split.bulk_train, split.similarity_train, progress=False
        )
        self.bulk = pbmc_patients(n_patients=60, cells_per_patient=60, seed=0).pseudobulk
        self.atlas = split.cells_train


@pytest.fixture(scope="module")
def stage2() -> Stage2:
    return Stage2()


def _tuned(stage2: Stage2, bulk: AnnData | None = None, **options: object) -> POPPY:
    model = copy.copy(stage2.model)
    config = PhenotypeConfig(**{**FAST, **options})  # type: ignore[arg-type]
    return model.finetune(
        stage2.bulk if bulk is None else bulk, stage2.atlas, config, progress=False
    )


def test_the_head_learns_the_phenotype_of_held_out_cohorts(stage2: Stage2) -> None:
    """Train on two cohorts, predict the third: far above chance, near the linear oracle."""
    bulk = stage2.bulk
    held = (bulk.obs["cohort"] == "cohort0").to_numpy()
    model = _tuned(stage2, bulk[~held].copy())
    test = bulk[held].copy()
    prob = model.predict_phenotype(test)
    auroc = roc_auc_score(test.obs["phenotype"], prob)
    assert auroc > 0.8, auroc
    np.testing.assert_array_equal(test.obs["poppy_phenotype"], prob)
    history = model.phenotype.history  # type: ignore[union-attr]
    assert history[-1] < 0.6 * history[0]  # the training loss falls


def test_streaming_chunks_do_not_change_predictions(stage2: Stage2) -> None:
    model = _tuned(stage2, max_epochs=3)
    tuned = model.phenotype
    assert tuned is not None
    whole = model.predict_phenotype(stage2.bulk, key_added=None)
    tuned.config = PhenotypeConfig(**{**tuned.config.to_dict(), "chunk_size": 7})
    np.testing.assert_allclose(
        model.predict_phenotype(stage2.bulk, key_added=None), whole, rtol=1e-5
    )
    alpha = model.phenotype_attention(stage2.bulk)
    assert alpha.shape == (stage2.bulk.n_obs, stage2.atlas.n_obs)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-5)
    # the prediction is the attention-weighted value plus bias (§2.2.5), recomposed by hand
    values = tuned.head.cell_values(tuned.reference)[:, 0].numpy()
    logit = alpha @ values + float(tuned.head.bias.detach())
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), whole, rtol=1e-4)


def test_attribution_is_the_attention_split_by_label(stage2: Stage2) -> None:
    model = _tuned(stage2, max_epochs=3)
    table = model.attribute(stage2.bulk)
    alpha = model.phenotype_attention(stage2.bulk)
    y = stage2.bulk.obs["phenotype"].to_numpy().astype(bool)
    a1, a0 = alpha[y].mean(axis=0), alpha[~y].mean(axis=0)
    np.testing.assert_allclose(table["responder_score"], a1 / (a1 + a0), rtol=1e-6)
    np.testing.assert_allclose(table["mean_attention"], alpha.mean(axis=0), rtol=1e-6)
    assert list(table.index) == list(stage2.atlas.obs_names)
    assert {"cell_type", "sample", "value"} <= set(table.columns)
    unlabelled = stage2.bulk.copy()
    del unlabelled.obs["phenotype"]
    assert "responder_score" not in model.attribute(unlabelled)


def test_cell_side_and_stage_one_stay_frozen(stage2: Stage2) -> None:
    before = {k: v.clone() for k, v in stage2.model.net.state_dict().items()}  # type: ignore[union-attr]
    z_before = stage2.model.embed_bulk(stage2.bulk.copy())
    tuned = _tuned(stage2, max_epochs=2)
    after = stage2.model.net.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(tuned.embed_bulk(stage2.bulk.copy()), z_before)
    fine = tuned.phenotype.bulk_encoder.state_dict()  # type: ignore[union-attr]
    stage1 = stage2.model.net.bulk_encoder.state_dict()  # type: ignore[union-attr]
    assert not all(torch.equal(fine[k], stage1[k]) for k in stage1)  # fine-tuned copy
    frozen = _tuned(stage2, max_epochs=2, finetune_bulk=False).phenotype
    state = frozen.bulk_encoder.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(state[k], stage1[k]) for k in stage1)


def test_poppy_reference_is_the_frozen_cell_encoder_on_single_cells(stage2: Stage2) -> None:
    tuned = _tuned(stage2, max_epochs=1, reference="poppy", max_reference_cells=50).phenotype
    assert tuned is not None and tuned.reference.shape == (50, 128)
    sets = stage2.model.embed_cells(
        stage2.atlas[tuned.reference_obs.index].copy(), attention_key=None
    )
    assert sets is not None  # the same encoder on one-cell sets:
    encoder = stage2.model.net.cell_encoder  # type: ignore[union-attr]
    x = torch.from_numpy(stage2.atlas[tuned.reference_obs.index].obsm["X_pca"].astype(np.float32))
    with torch.no_grad():
        expected = encoder(x[:, None, :])[0]
    torch.testing.assert_close(tuned.reference, expected)
    np.testing.assert_allclose(np.linalg.norm(tuned.reference.numpy(), axis=1), 1.0, rtol=1e-5)


def test_save_load_round_trip(stage2: Stage2, tmp_path: Path) -> None:
    model = _tuned(stage2, max_epochs=2)
    model.save(tmp_path / "m")
    loaded = POPPY.load(tmp_path / "m")
    np.testing.assert_array_equal(
        loaded.predict_phenotype(stage2.bulk, key_added=None),
        model.predict_phenotype(stage2.bulk, key_added=None),
    )
    pd.testing.assert_frame_equal(
        loaded.attribute(stage2.bulk)[["cell_type", "sample", "responder_score"]],
        model.attribute(stage2.bulk)[["cell_type", "sample", "responder_score"]],
    )
    assert loaded.phenotype.config == model.phenotype.config  # type: ignore[union-attr]


def test_bad_inputs_are_refused(stage2: Stage2) -> None:
    bulk = stage2.bulk.copy()
    with pytest.raises(InputError, match="no phenotype head"):
        copy.copy(stage2.model).predict_phenotype(bulk)
    one_class = bulk.copy()
    one_class.obs["phenotype"] = 1
    with pytest.raises(InputError, match="single class"):
        _tuned(stage2, one_class)
    missing = bulk.copy()
    missing.obs["phenotype"] = missing.obs["phenotype"].astype(float)
    missing.obs.iloc[3, missing.obs.columns.get_loc("phenotype")] = np.nan
    with pytest.raises(InputError, match=missing.obs_names[3]):
        _tuned(stage2, missing)
    words = bulk.copy()
    words.obs["phenotype"] = np.where(bulk.obs["phenotype"] == 1, "R", "NR")
    with pytest.raises(InputError, match="binary"):
        _tuned(stage2, words)
    with pytest.raises(InputError, match="label_key"):
        _tuned(stage2, label_key="response")
    atlas = stage2.atlas.copy()
    del atlas.obsm["X_pca"]
    with pytest.raises(InputError, match="X_pca"):
        copy.copy(stage2.model).finetune(bulk, atlas, PhenotypeConfig(max_epochs=1), progress=False)
    other_genes = AnnData(
        X=bulk.X, obs=bulk.obs, var=pd.DataFrame(index=[f"x{i}" for i in range(bulk.n_vars)])
    )
    with pytest.raises(InputError, match=r"genes|var_names"):
        _tuned(stage2, other_genes)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"reference": "atlas"}, "reference"),
        ({"query_dim": 0}, "query_dim"),
        ({"temperature": -1.0}, "temperature"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"finetune_bulk": "yes"}, "finetune_bulk"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_config_refuses_bad_values(options: dict[str, object], field: str) -> None:
    with pytest.raises(InputError, match=field):
        PhenotypeConfig(**options)  # type: ignore[arg-type]


def test_config_file_section(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[poppy]\nmax_epochs = 3\n[finetune]\nmax_epochs = 7\nreference = "poppy"\n')
    assert PhenotypeConfig.from_file(path) == PhenotypeConfig(max_epochs=7, reference="poppy")
    assert POPPYConfig.from_file(path).max_epochs == 3
    path.write_text("[finetune]\nmax_epoch = 7\n")
    with pytest.raises(InputError, match="max_epoch"):
        PhenotypeConfig.from_file(path)


def test_leave_one_cohort_out_reports_three_methods(stage2: Stage2) -> None:
    config = PhenotypeConfig(**{**FAST, "max_epochs": 5})  # type: ignore[arg-type]
    table = evaluate_phenotype(stage2.model, stage2.bulk, stage2.atlas, config, n_boot=50)
    assert sorted(table["cohort"].unique()) == ["cohort0", "cohort1", "cohort2"]
    assert table.groupby("cohort")["method"].nunique().eq(3).all()
    # oracle for the no-atlas baseline: the same head written with scikit-learn directly
    base = stage2.model.baseline_bulk(stage2.bulk)
    y = stage2.bulk.obs["phenotype"].to_numpy()
    held = (stage2.bulk.obs["cohort"] == "cohort1").to_numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    clf.fit(base[~held], y[~held])
    expected = roc_auc_score(y[held], clf.predict_proba(base[held])[:, 1])
    row = table[(table["cohort"] == "cohort1") & (table["method"].str.startswith("bulk"))]
    assert row["auroc"].item() == pytest.approx(expected)
    assert (table["low"] <= table["auroc"]).all() and (table["auroc"] <= table["high"]).all()
    one = stage2.bulk[stage2.bulk.obs["cohort"] == "cohort0"].copy()
    with pytest.raises(InputError, match="two cohorts"):
        evaluate_phenotype(stage2.model, one, stage2.atlas, config)


def _by_type(stage2: Stage2) -> tuple[pd.DataFrame, pd.DataFrame]:
    from cellbridge.data.datasets import CAUSAL_TYPES
    from cellbridge.metrics import label_enrichment
    from cellbridge.poppy import aggregate_attribution

    model = _tuned(stage2)
    table = model.attribute(stage2.bulk)
    atlas = stage2.atlas
    labels = atlas.obs.groupby("sample", observed=True)["phenotype"].first()
    table["label_enrichment"] = label_enrichment(
        atlas.obsm["X_pca"],
        atlas.obs["sample"].astype(str).to_numpy(),
        {str(k): int(v) for k, v in labels.items()},
    )
    assert set(CAUSAL_TYPES) <= set(table["cell_type"].astype(str))
    return (
        aggregate_attribution(table, by="cell_type"),
        aggregate_attribution(table, by="cell_type", score_key="label_enrichment"),
    )


def test_label_enrichment_ranks_the_causal_types_at_the_top(stage2: Stage2) -> None:
    """The label-derived comparison (MELD-style) sees the known cause: NK and cytotoxic
    CD8 T cells are over-represented in responders' samples."""
    from cellbridge.data.datasets import CAUSAL_TYPES

    _, enrichment = _by_type(stage2)
    top = list(enrichment.index[:3])
    assert all(t in top for t in CAUSAL_TYPES), enrichment
    assert (enrichment.loc[list(CAUSAL_TYPES), "mean"] > 0.5).all()


@pytest.mark.xfail(
    strict=True,
    reason="open (docs/guide.md §5): the attention-based responder score of the §2.2.5 head "
    "does not identify the causal cell types on the semi-synthetic patients",
)
def test_attention_attribution_ranks_the_causal_types_at_the_top(stage2: Stage2) -> None:
    from cellbridge.data.datasets import CAUSAL_TYPES

    attention, _ = _by_type(stage2)
    assert set(attention.index[: len(CAUSAL_TYPES)]) == set(CAUSAL_TYPES), attention


def _enrichment(stage2: Stage2) -> np.ndarray:
    from cellbridge.metrics import label_enrichment

    atlas = stage2.atlas
    labels = atlas.obs.groupby("sample", observed=True)["phenotype"].first()
    return label_enrichment(
        atlas.obsm["X_pca"],
        atlas.obs["sample"].astype(str).to_numpy(),
        {str(k): int(v) for k, v in labels.items()},
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_decomposed_attention_ranks_the_causal_types_at_the_top(stage2: Stage2, seed: int) -> None:
    """With the expression decomposition term (not in the paper; guide §5), the attention
    of responders falls on the cells their profiles are made of: NK and cytotoxic CD8 T
    cells rank in the top 3 of 10 cell types whatever the head's seed, above 0.5, and the
    per-cell score agrees with the label-derived enrichment."""
    from scipy.stats import spearmanr

    from cellbridge.data.datasets import CAUSAL_TYPES
    from cellbridge.poppy import aggregate_attribution

    model = _tuned(stage2, seed=seed, reconstruction_weight=100.0, max_epochs=300)
    table = model.attribute(stage2.bulk)
    by_type = aggregate_attribution(table, by="cell_type")
    assert set(CAUSAL_TYPES) <= set(by_type.index[:3]), by_type
    assert (by_type.loc[list(CAUSAL_TYPES), "mean"] > 0.5).all()
    rho = spearmanr(table["responder_score"], _enrichment(stage2)).statistic
    assert rho > 0.3, rho


def test_embedding_reconstruction_ties_attention_to_the_label_enrichment(
    stage2: Stage2,
) -> None:
    """The embedding-space variant of the term: the responder score agrees with the
    label-derived enrichment whatever the head's seed; without any term the head of seed 0
    gives -0.28 (guide §5)."""
    from scipy.stats import spearmanr

    enrichment = _enrichment(stage2)
    for seed in (0, 1):
        model = _tuned(
            stage2,
            seed=seed,
            reconstruction_weight=100.0,
            reconstruction_space="embedding",
            max_epochs=100,
        )
        rho = spearmanr(model.attribute(stage2.bulk)["responder_score"], enrichment).statistic
        assert rho > 0.25, (seed, rho)
