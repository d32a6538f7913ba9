"""POPPY stage 1 as a model: learning, determinism, resume, persistence, frozen parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from cellbridge.data import CellStore
from cellbridge.errors import InputError
from cellbridge.poppy import POPPY, POPPYConfig, evaluate_alignment
from cellbridge.poppy import PbmcSplit as Split

from .conftest import make_split

# Tiny data for mechanics: the sampler's documented fallbacks (tested in test_sampler.py)
# are expected there.
pytestmark = [
    pytest.mark.filterwarnings("ignore:fewer than B - 2:UserWarning"),
    pytest.mark.filterwarnings("ignore:an anchor has no:UserWarning"),
]

TINY = {
    "cell_key": "X_pca",
    "assay_key": "assay",
    "batch_size": 4,
    "max_cells": 16,
    "val_fraction": 0.25,
}


def _fit(split: Split, **options: object) -> POPPY:
    config = POPPYConfig(**{**TINY, **options})  # type: ignore[arg-type]
    return POPPY(config).fit(
        split.cells_train, split.bulk_train, split.similarity_train, progress=False
    )


def _weights(model: POPPY) -> dict[str, torch.Tensor]:
    assert model.net is not None
    return model.net.state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_poppy_beats_the_frozen_encoder_on_held_out_patients() -> None:
    """Figure 3a on the embedded patients: distances follow compositions better than the
    frozen bulk encoder without alignment, within and across cohorts; recall@k of matched
    cells/pseudobulk beats the unaligned model (Figure 2a)."""
    split = make_split(45, 60, k=8)
    model = _fit(split, batch_size=16, max_cells=64, max_epochs=20, val_fraction=0.0)
    table = evaluate_alignment(model, split.bulk_test, cells=split.cells_test)
    corr = table[table["metric"] == "distance_spearman"].set_index("subset")
    for subset in ("within", "across", "all"):
        assert corr.loc[subset, "value"] > corr.loc[subset, "baseline"], corr
    assert corr.loc["all", "value"] > 0.75
    recall = table[table["metric"] == "recall@5"].iloc[0]
    assert recall["value"] > recall["baseline"]
    assert model.history is not None and model.history.best_epoch >= 1


def test_training_lowers_the_validation_loss(tiny: Split, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="cellbridge.poppy.model"):
        model = _fit(tiny, max_epochs=6)
    assert "validation on 2 samples" in caplog.text  # a handful: told it is noisy
    history = model.history
    assert history is not None and len(history.val_loss) == 6
    assert min(history.val_loss[1:]) < history.val_loss[0]
    assert history.best_epoch == int(np.argmin(history.val_loss))


def test_without_validation_trains_every_epoch_and_keeps_the_last(
    tiny: Split, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="cellbridge.poppy.model"):
        model = _fit(tiny, max_epochs=3, val_fraction=0.0)
    assert "validation on" not in caplog.text
    assert model.history is not None
    assert len(model.history.train_loss) == 3 and model.history.val_loss == []
    assert model.history.best_epoch == 2 and not model.history.stopped_early
    assert model.split["validation"] == []


def test_same_seed_same_weights_other_seed_other_weights(tiny: Split) -> None:
    a, b, c = _fit(tiny, max_epochs=2), _fit(tiny, max_epochs=2), _fit(tiny, max_epochs=2, seed=1)
    assert _same(_weights(a), _weights(b))
    assert not _same(_weights(a), _weights(c))


class _Crash(pl.Callback):
    """Simulates a kill in the middle of an epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if (
            trainer.current_epoch == self.epoch
            and trainer.fit_loop.epoch_loop.batch_idx == self.batch
        ):
            raise RuntimeError("simulated interruption")


def test_resume_after_interruption_equals_an_uninterrupted_run(tiny: Split, tmp_path: Path) -> None:
    config = POPPYConfig(**{**TINY, "max_epochs": 4, "dropout": 0.2})  # type: ignore[arg-type]
    full = POPPY(config).fit(
        tiny.cells_train,
        tiny.bulk_train,
        tiny.similarity_train,
        checkpoint_dir=tmp_path / "full",
        progress=False,
    )
    with pytest.raises(RuntimeError, match="simulated interruption"):
        POPPY(config).fit(
            tiny.cells_train,
            tiny.bulk_train,
            tiny.similarity_train,
            checkpoint_dir=tmp_path / "cut",
            progress=False,
            callbacks=[_Crash(epoch=2, batch=1)],
        )
    assert (tmp_path / "cut" / "last.ckpt").is_file()
    resumed = POPPY(config).fit(
        tiny.cells_train,
        tiny.bulk_train,
        tiny.similarity_train,
        checkpoint_dir=tmp_path / "cut",
        progress=False,
    )
    assert _same(_weights(full), _weights(resumed))
    assert full.history == resumed.history
    fresh = POPPY(config).fit(
        tiny.cells_train,
        tiny.bulk_train,
        tiny.similarity_train,
        checkpoint_dir=tmp_path / "cut",
        resume=False,
        progress=False,
    )
    assert _same(_weights(full), _weights(fresh))


def test_save_load_round_trip_and_refusals(tiny: Split, tmp_path: Path) -> None:
    model = _fit(tiny, max_epochs=2)
    model.save(tmp_path / "m")
    loaded = POPPY.load(tmp_path / "m")
    assert loaded.config == model.config
    np.testing.assert_array_equal(
        loaded.embed_bulk(tiny.bulk_test.copy()), model.embed_bulk(tiny.bulk_test.copy())
    )
    np.testing.assert_array_equal(
        loaded.embed_cells(tiny.cells_test).obsm["X_poppy"],
        model.embed_cells(tiny.cells_test).obsm["X_poppy"],
    )
    # A flipped byte in the weights.
    bad = tmp_path / "flipped"
    shutil.copytree(tmp_path / "m", bad)
    raw = bytearray((bad / "model.safetensors").read_bytes())
    raw[-3] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="SHA-256"):
        POPPY.load(bad)
    # Weights of another model under this config.
    other = _fit(tiny, max_epochs=1, embedding_dim=16)
    other.save(tmp_path / "other")
    swapped = tmp_path / "swapped"
    shutil.copytree(tmp_path / "m", swapped)
    shutil.copy(tmp_path / "other" / "model.safetensors", swapped / "model.safetensors")
    with pytest.raises(InputError, match="SHA-256"):
        POPPY.load(swapped)
    # A config edited to disagree with its (re-hashed) weights.
    edited = tmp_path / "edited"
    shutil.copytree(tmp_path / "m", edited)
    meta = json.loads((edited / "config.json").read_text())
    meta["config"]["embedding_dim"] = 64
    (edited / "config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="does not match its config"):
        POPPY.load(edited)
    with pytest.raises(InputError, match="not found"):
        POPPY.load(tmp_path / "absent")


def test_frozen_parts_stay_frozen(tiny: Split) -> None:
    """Only the pooling scores and the FFNs learn: gene tokens, the PCA stand-in and the
    input standardisation are unchanged by training, and every parameter takes a gradient."""
    model = POPPY(POPPYConfig(**{**TINY, "cell_key": None, "n_pcs": 8, "max_epochs": 1}))  # type: ignore[arg-type]
    model.fit(tiny.cells_train, tiny.bulk_train, tiny.similarity_train, progress=False)
    assert model.net is not None and model.standin is not None
    table = np.array(model.token_encoder.table)  # type: ignore[union-attr]
    standin = model.standin.components.copy()
    buffers = {k: v.clone() for k, v in model.net.named_buffers()}
    before = {k: v.clone() for k, v in model.net.named_parameters()}
    model.fit(tiny.cells_train, tiny.bulk_train, tiny.similarity_train, progress=False)
    np.testing.assert_array_equal(np.array(model.token_encoder.table), table)  # type: ignore[union-attr]
    np.testing.assert_array_equal(model.standin.components, standin)
    assert all(p.requires_grad for p in model.net.parameters())
    assert all(b.grad is None for b in model.net.buffers())
    z_c, z_b = model.net(
        torch.randn(2, 5, 8),
        torch.ones(2, 5, dtype=torch.bool),
        torch.randn(2, 3, model.net.bulk_encoder.pool.score.in_features),
    )
    (z_c.sum() + z_b.sum()).backward()
    assert all(p.grad is not None for p in model.net.parameters())
    assert all(b.grad is None for b in model.net.buffers())
    # The second fit re-initialised from the seed and re-fitted the same statistics.
    assert all(torch.equal(buffers[k], v) for k, v in model.net.named_buffers())
    assert before.keys() == dict(model.net.named_parameters()).keys()


def test_pca_stand_in_is_reused_for_new_cells(tiny: Split) -> None:
    from sklearn.decomposition import PCA

    from cellbridge.encoders import PCAStandIn, log_normalised

    standin = PCAStandIn.fit(tiny.cells_train, n_pcs=8)
    oracle = PCA(8, svd_solver="arpack", random_state=0).fit(log_normalised(tiny.cells_train))
    np.testing.assert_allclose(
        standin.transform(tiny.cells_test),
        oracle.transform(log_normalised(tiny.cells_test)),
        rtol=1e-4,
        atol=1e-4,
    )
    shuffled = tiny.cells_test[:, ::-1].copy()
    np.testing.assert_allclose(
        standin.transform(shuffled), standin.transform(tiny.cells_test), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(InputError, match="missing"):
        standin.transform(tiny.cells_test[:, 5:].copy())


def test_cell_store_and_anndata_train_the_same_model(tiny: Split, tmp_path: Path) -> None:
    store = CellStore.from_anndata(
        tiny.cells_train, tmp_path / "cells.h5", obsm_key="X_pca", dtype="float32"
    )
    base = {"max_epochs": 2, "max_cells": None}
    from_memory = _fit(tiny, **base)
    config = POPPYConfig(**{**TINY, **base})  # type: ignore[arg-type]
    from_disk = POPPY(config, token_encoder=from_memory.token_encoder).fit(
        store, tiny.bulk_train, tiny.similarity_train, progress=False
    )
    assert _same(_weights(from_memory), _weights(from_disk))
    with pytest.raises(InputError, match="token_encoder"):
        POPPY(config).fit(store, tiny.bulk_train, tiny.similarity_train, progress=False)


def test_embed_cells_attention_and_sample_obs(tiny: Split) -> None:
    model = _fit(tiny, max_epochs=1)
    cells = tiny.cells_test.copy()
    sets = model.embed_cells(cells)
    np.testing.assert_allclose(np.linalg.norm(sets.obsm["X_poppy"], axis=1), 1.0, rtol=1e-5)
    sums = cells.obs.groupby("sample", observed=True)["poppy_attention"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=1e-5)
    assert (
        sets.obs["cohort"] == cells.obs.groupby("sample", observed=True)["cohort"].first()
    ).all()
    assert sets.obs["n_cells"].sum() == cells.n_obs


def test_evaluation_without_cohorts_matches_scipy(tiny: Split) -> None:
    """Simulated tumours (§3.4) have no cohorts: one all-pairs Spearman per truth."""
    from scipy.spatial.distance import pdist, squareform
    from scipy.stats import spearmanr

    model = _fit(tiny, max_epochs=2)
    bulk = tiny.bulk_test.copy()
    bulk.obsp["shuffled"] = squareform(np.random.default_rng(0).permutation(pdist(bulk.X)))
    truth = {"cell types": "emd", "noise": "shuffled"}
    table = evaluate_alignment(model, bulk, cohort_key=None, truth_keys=truth).set_index("truth")
    assert set(table["metric"]) == {"distance_spearman"} and set(table["subset"]) == {"all"}
    iu = np.triu_indices(bulk.n_obs, 1)
    for name, key in truth.items():
        y = bulk.obsp[key][iu]
        value = spearmanr(pdist(bulk.obsm["X_poppy"]), y).statistic
        base = spearmanr(pdist(bulk.obsm["X_baseline"]), y).statistic
        row = table.loc[name]
        assert row["value"] == pytest.approx(value, abs=1e-12)
        assert row["baseline"] == pytest.approx(base, abs=1e-12)
        assert row["change"] == pytest.approx(value - base, abs=1e-12)
        assert row["n"] == len(iu[0])
    with pytest.raises(InputError, match="truth_keys"):
        evaluate_alignment(model, bulk, cohort_key=None, truth_keys={"x": "missing"})


def test_bad_inputs_are_refused(tiny: Split) -> None:
    model = POPPY(POPPYConfig(**{**TINY, "max_epochs": 1}))  # type: ignore[arg-type]
    counts = tiny.bulk_train.copy()
    counts.X = np.round(np.expm1(counts.X))
    with pytest.raises(InputError, match="log1p-CPM"):
        model.fit(tiny.cells_train, counts, tiny.similarity_train, progress=False)
    orphan = tiny.bulk_train.copy()
    orphan.obs["sample"] = orphan.obs["sample"].astype(str).str.replace("P0", "X0")
    with pytest.raises(InputError, match="no cells"):
        model.fit(tiny.cells_train, orphan, tiny.similarity_train, progress=False)
    with pytest.raises(InputError, match=r"similarity\.obs_names"):
        model.fit(
            tiny.cells_train, tiny.bulk_train, tiny.similarity_train[:3].copy(), progress=False
        )
    no_key = POPPY(POPPYConfig(**{**TINY, "cell_key": "X_scGPT"}))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="X_scGPT"):
        no_key.fit(tiny.cells_train, tiny.bulk_train, tiny.similarity_train, progress=False)
    with pytest.raises(InputError, match="not fitted"):
        POPPY().embed_bulk(tiny.bulk_test)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"batch_size": 1}, "batch_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"temperature": 0}, "temperature"),
        ({"max_cells": 0}, "max_cells"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"seed": 1.5}, "seed"),
        ({"embedding_dim": True}, "embedding_dim"),
    ],
)
def test_config_refuses_bad_values(options: dict[str, object], field: str) -> None:
    with pytest.raises(InputError, match=field):
        POPPYConfig(**options)  # type: ignore[arg-type]


def test_config_files_and_unknown_keys(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[poppy]\nbatch_size = 8\ncell_key = 'X_scGPT'\n")
    assert POPPYConfig.from_file(toml) == POPPYConfig(batch_size=8, cell_key="X_scGPT")
    js = tmp_path / "c.json"
    js.write_text(json.dumps(POPPYConfig(max_epochs=3).to_dict()))
    assert POPPYConfig.from_file(js) == POPPYConfig(max_epochs=3)
    with pytest.raises(InputError, match="batchsize"):
        POPPYConfig.from_dict({"batchsize": 8})
