"""``cellbridge poppy train|embed|finetune|attribute``: same numbers as the API, config
precedence, errors."""

from __future__ import annotations

import json
import tomllib
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner, Result

from cellbridge.cli.main import app
from cellbridge.cli.poppy import build_config
from cellbridge.data import CellStore, pbmc_patients
from cellbridge.errors import InputError
from cellbridge.poppy import POPPY, PhenotypeConfig, POPPYConfig, sample_similarity

runner = CliRunner()

#: The sampler's fallback on 12 tiny patients; expected here, about the data, not the CLI.
FEW_NEGATIVES = "fewer than B - 2 samples"
FAST = ["--cell-key", "X_pca", "--max-epochs", "2", "--batch-size", "4", "--no-progress"]


@dataclass
class Inputs:
    cells: Path
    bulk: Path
    similarity: Path


def invoke(args: list[str]) -> Result:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=FEW_NEGATIVES)
        return runner.invoke(app, args)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    data = pbmc_patients(n_patients=12, cells_per_patient=30, seed=0)
    root = tmp_path_factory.mktemp("poppy-in")
    paths = Inputs(root / "cells.h5ad", root / "bulk.h5ad", root / "similarity.h5ad")
    data.cells.write_h5ad(paths.cells)
    data.pseudobulk.write_h5ad(paths.bulk)
    sample_similarity(data.cells, k=5).write_h5ad(paths.similarity)
    return paths


@pytest.fixture(scope="module")
def model_dir(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("poppy-model") / "model"
    args = [str(inputs.cells), str(inputs.bulk), str(inputs.similarity), "-o", str(out)]
    result = invoke(["poppy", "train", *args, *FAST])
    assert result.exit_code == 0, result.output
    for needle in ("profiles", "epochs run", "best epoch", "final val loss", "X_pca"):
        assert needle in result.stdout
    return out


@pytest.mark.filterwarnings(f"ignore:{FEW_NEGATIVES}")
def test_train_and_embed_match_the_api(inputs: Inputs, model_dir: Path, tmp_path: Path) -> None:
    out, sets = tmp_path / "bulk.h5ad", tmp_path / "sets.h5ad"
    args = [str(model_dir), str(inputs.bulk), "-o", str(out)]
    result = invoke(
        ["poppy", "embed", *args, "--cells", str(inputs.cells), "--cells-output", str(sets)]
    )
    assert result.exit_code == 0, result.output
    z = anndata.read_h5ad(out).obsm["X_poppy"]
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)

    cells, bulk = anndata.read_h5ad(inputs.cells), anndata.read_h5ad(inputs.bulk)
    similarity = anndata.read_h5ad(inputs.similarity)
    config = POPPYConfig(cell_key="X_pca", max_epochs=2, batch_size=4)
    api = POPPY(config).fit(cells, bulk, similarity, progress=False)
    np.testing.assert_allclose(z, api.embed_bulk(bulk), rtol=1e-5, atol=1e-6)
    expected = api.embed_cells(cells)
    written = anndata.read_h5ad(sets)
    assert list(written.obs_names) == list(expected.obs_names)
    np.testing.assert_allclose(written.obsm["X_poppy"], expected.obsm["X_poppy"], atol=1e-6)
    assert json.loads((model_dir / "config.json").read_text())["config"] == config.to_dict()


def test_embed_cells_from_a_cell_store(inputs: Inputs, model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "cells.h5"
    CellStore.from_anndata(inputs.cells, store, obsm_key="X_pca", dtype="float32").close()
    sets, from_h5ad = tmp_path / "sets.h5ad", tmp_path / "sets2.h5ad"
    base = ["poppy", "embed", str(model_dir), str(inputs.bulk), "-o", str(tmp_path / "b.h5ad")]
    for cells, path in ((store, sets), (inputs.cells, from_h5ad)):
        result = invoke([*base, "--cells", str(cells), "--cells-output", str(path), "--key", "z"])
        assert result.exit_code == 0, result.output
    a, b = anndata.read_h5ad(sets), anndata.read_h5ad(from_h5ad)
    b = b[a.obs_names]
    np.testing.assert_allclose(a.obsm["z"], b.obsm["z"], atol=1e-5)
    assert "z" in anndata.read_h5ad(tmp_path / "b.h5ad").obsm


@pytest.mark.filterwarnings(f"ignore:{FEW_NEGATIVES}")
def test_config_file_values_and_command_line_overrides(inputs: Inputs, tmp_path: Path) -> None:
    config = tmp_path / "poppy.toml"
    config.write_text(
        '[poppy]\ncell_key = "X_pca"\nmax_epochs = 1\nbatch_size = 6\n'
        "embedding_dim = 16\nval_fraction = 0.25\nseed = 3\n"
    )
    out = tmp_path / "model"
    args = [str(inputs.cells), str(inputs.bulk), str(inputs.similarity), "-o", str(out)]
    overrides = ["--batch-size", "4", "--embedding-dim", "8", "--max-cells", "none"]
    result = invoke(["poppy", "train", *args, "--config", str(config), *overrides, "--no-progress"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["cell_key"] == "X_pca" and saved["max_epochs"] == 1  # from the file
    assert saved["val_fraction"] == 0.25 and saved["seed"] == 3  # from the file
    assert saved["batch_size"] == 4 and saved["embedding_dim"] == 8  # command line wins
    assert saved["max_cells"] is None  # 'none' on the command line
    assert saved["patience"] == POPPYConfig().patience  # default
    assert "epochs run" in result.stdout
    assert POPPY.load(out).embed_bulk(anndata.read_h5ad(inputs.bulk)).shape == (12, 8)


def test_build_config_precedence_with_json(tmp_path: Path) -> None:
    config = tmp_path / "poppy.json"
    config.write_text(json.dumps({"max_cells": 10, "devices": 2, "assay_key": "assay"}))
    cfg = build_config(config, {"max_cells": None, "assay_key": "none", "devices": "auto"})
    assert (cfg.max_cells, cfg.assay_key, cfg.devices) == (10, None, "auto")
    assert build_config(None, {"devices": "2", "hidden_dim": "32"}).devices == 2
    with pytest.raises(InputError, match="--max-cells"):
        build_config(None, {"max_cells": "many"})


def test_write_config_prints_the_defaults_as_toml(tmp_path: Path) -> None:
    result = runner.invoke(app, ["poppy", "train", "--write-config"])
    assert result.exit_code == 0, result.output
    table = tomllib.loads(result.stdout)["poppy"]
    # TOML has no null: options whose default is None are left out (commented).
    defaults = POPPYConfig().to_dict()
    assert table == {k: v for k, v in defaults.items() if v is not None}
    assert all(f"# {k} =" in result.stdout for k, v in defaults.items() if v is None)
    path = tmp_path / "poppy.toml"
    path.write_text(result.stdout)
    assert POPPYConfig.from_file(path) == POPPYConfig()


def test_every_config_field_is_an_option() -> None:
    command = typer.main.get_command(app)
    train = command.commands["poppy"].commands["train"]  # type: ignore[attr-defined]
    options = {opt for param in train.params for opt in param.opts}
    assert {"--" + f.name.replace("_", "-") for f in fields(POPPYConfig)} <= options


@pytest.mark.parametrize(
    ("extra", "config_text", "needle"),
    [
        ([], "[poppy]\nembeding_dim = 8\n", "embeding_dim"),
        ([], "[poppy]\nbatch_size = 1\n", "batch_size"),
        (["--batch-size", "1"], None, "--batch-size"),
        (["--accelerator", "gpux"], None, "gpux"),
        (["--max-cells", "lots"], None, "--max-cells"),
    ],
)
def test_bad_options_give_one_line_and_no_model(
    inputs: Inputs, tmp_path: Path, extra: list[str], config_text: str | None, needle: str
) -> None:
    out = tmp_path / "model"
    args = [str(inputs.cells), str(inputs.bulk), str(inputs.similarity), "-o", str(out)]
    if config_text is not None:
        (tmp_path / "c.toml").write_text(config_text)
        extra = [*extra, "--config", str(tmp_path / "c.toml")]
    line = one_line_error(invoke(["poppy", "train", *args, *FAST, *extra]))
    assert needle in line
    assert not out.exists()


def test_missing_inputs_give_one_line_and_no_output(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "model"
    missing = tmp_path / "nope.h5ad"
    line = one_line_error(
        invoke(
            [
                "poppy",
                "train",
                str(missing),
                str(inputs.bulk),
                str(inputs.similarity),
                "-o",
                str(out),
                *FAST,
            ]
        )
    )
    assert "nope.h5ad" in line
    line = one_line_error(
        invoke(
            [
                "poppy",
                "train",
                str(tmp_path / "c.cellstore"),
                str(inputs.bulk),
                str(inputs.similarity),
                "-o",
                str(out),
                *FAST,
            ]
        )
    )
    assert "c.cellstore" in line
    line = one_line_error(
        invoke(
            [
                "poppy",
                "train",
                *map(str, (inputs.cells, inputs.bulk, inputs.similarity)),
                "-o",
                str(out),
                "--config",
                str(tmp_path / "missing.toml"),
            ]
        )
    )
    assert "missing.toml" in line
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_to_replace_a_directory_that_is_not_a_model(
    inputs: Inputs, tmp_path: Path
) -> None:
    keep = tmp_path / "results"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    args = [str(inputs.cells), str(inputs.bulk), str(inputs.similarity), "-o", str(keep)]
    line = one_line_error(invoke(["poppy", "train", *args, *FAST]))
    assert "not a model directory" in line
    assert (keep / "notes.txt").read_text() == "precious"


def test_embed_errors(inputs: Inputs, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.h5ad"
    line = one_line_error(
        invoke(["poppy", "embed", str(tmp_path / "none"), str(inputs.bulk), "-o", str(out)])
    )
    assert "config.json" in line
    base = ["poppy", "embed", str(model_dir), str(inputs.bulk)]
    assert "--cells" in one_line_error(
        invoke([*base, "-o", str(out), "--cells", str(inputs.cells)])
    )
    assert ".h5ad" in one_line_error(invoke([*base, "-o", str(tmp_path / "out.csv")]))
    assert "bulk" in one_line_error(
        invoke(["poppy", "embed", str(model_dir), str(tmp_path / "b.h5ad"), "-o", str(out)])
    )
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- stage 2

FT_FAST = ["--max-epochs", "2", "--batch-size", "4", "--no-progress"]


@dataclass
class Tuned:
    model: Path
    attribution: Path
    predictions: Path
    finetune_stdout: str
    attribute_stdout: str


@pytest.fixture(scope="module")
def tuned(inputs: Inputs, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Tuned:
    root = tmp_path_factory.mktemp("poppy-tuned")
    paths = Tuned(root / "tuned", root / "cells.csv", root / "pred.csv", "", "")
    args = [str(model_dir), str(inputs.bulk), str(inputs.cells), "-o", str(paths.model)]
    result = invoke(["poppy", "finetune", *args, *FT_FAST])
    assert result.exit_code == 0, result.output
    paths.finetune_stdout = result.stdout
    args = [str(paths.model), str(inputs.bulk), "-o", str(paths.attribution)]
    result = invoke(["poppy", "attribute", *args, "--predictions", str(paths.predictions)])
    assert result.exit_code == 0, result.output
    paths.attribute_stdout = result.stdout
    return paths


def test_the_bulk_has_both_classes(inputs: Inputs) -> None:
    assert set(anndata.read_h5ad(inputs.bulk).obs["phenotype"]) == {0, 1}


def test_finetune_then_attribute_match_the_api(inputs: Inputs, tuned: Tuned) -> None:
    for needle in ("profiles", "reference cells", "360", "final train loss", "epochs run"):
        assert needle in tuned.finetune_stdout
    model = POPPY.load(tuned.model)
    assert model.phenotype is not None
    assert len(model.phenotype.history) == 2
    assert model.phenotype.config == PhenotypeConfig(max_epochs=2, batch_size=4)
    bulk = anndata.read_h5ad(inputs.bulk)

    predicted = pd.read_csv(tuned.predictions, index_col=0)
    assert list(predicted.index) == list(bulk.obs_names)
    np.testing.assert_allclose(
        predicted["probability"], model.predict_phenotype(bulk, key_added=None), rtol=1e-6
    )
    assert list(predicted["phenotype"]) == list(bulk.obs["phenotype"])

    written = pd.read_csv(tuned.attribution, index_col=0)
    expected = model.attribute(bulk)
    assert written.shape[0] == anndata.read_h5ad(inputs.cells).n_obs
    assert list(written.index) == list(expected.index)
    for column in ("value", "mean_attention", "attention_1", "attention_0", "responder_score"):
        np.testing.assert_allclose(written[column], expected[column], rtol=1e-6, atol=1e-12)
    assert list(written["cell_type"]) == list(expected["cell_type"].astype(str))
    assert "responder score" in tuned.attribute_stdout
    best = written.groupby("cell_type")["responder_score"].mean().idxmax()
    assert str(best) in tuned.attribute_stdout


def test_attribute_with_another_label_key(inputs: Inputs, tuned: Tuned, tmp_path: Path) -> None:
    bulk = anndata.read_h5ad(inputs.bulk)
    bulk.obs["flipped"] = 1 - bulk.obs["phenotype"]
    bulk.obs = bulk.obs.drop(columns="phenotype")
    path = tmp_path / "bulk.h5ad"
    bulk.write_h5ad(path)
    out = tmp_path / "cells.csv"
    result = invoke(["poppy", "attribute", str(tuned.model), str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "responder_score" not in pd.read_csv(out).columns  # no labels: no score
    args = ["poppy", "attribute", str(tuned.model), str(path), "-o", str(out)]
    result = invoke([*args, "--label-key", "flipped"])
    assert result.exit_code == 0, result.output
    flipped = pd.read_csv(out, index_col=0)["responder_score"]
    original = pd.read_csv(tuned.attribution, index_col=0)["responder_score"]
    np.testing.assert_allclose(flipped, 1 - original, rtol=1e-6)


def test_finetune_config_file_and_command_line(
    inputs: Inputs, model_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "ft.toml"
    config.write_text(
        "[finetune]\nmax_epochs = 2\nbatch_size = 6\nquery_dim = 16\nseed = 3\n"
        'reference = "poppy"\nmax_reference_cells = 50\n'
    )
    out = tmp_path / "tuned"
    args = [str(model_dir), str(inputs.bulk), str(inputs.cells), "-o", str(out)]
    overrides = ["--batch-size", "4", "--query-dim", "8", "--temperature", "0.5", "--freeze-bulk"]
    result = invoke(["poppy", "finetune", *args, "--config", str(config), *overrides])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["phenotype"]["config"]
    assert saved["max_epochs"] == 2 and saved["seed"] == 3  # from the file
    assert saved["reference"] == "poppy" and saved["max_reference_cells"] == 50
    assert saved["batch_size"] == 4 and saved["query_dim"] == 8  # command line wins
    assert saved["temperature"] == 0.5 and saved["finetune_bulk"] is False
    assert saved["learning_rate"] == PhenotypeConfig().learning_rate  # default
    model = POPPY.load(out)
    assert model.phenotype is not None and len(model.phenotype.history) == 2
    assert model.phenotype.reference.shape[0] == 50
    # 'none' on the command line beats a value in the file
    out2 = tmp_path / "tuned2"
    args = [str(model_dir), str(inputs.bulk), str(inputs.cells), "-o", str(out2)]
    extra = ["--max-reference-cells", "none", "--max-epochs", "1", "--no-progress"]
    result = invoke(["poppy", "finetune", *args, "--config", str(config), *extra])
    assert result.exit_code == 0, result.output
    saved = json.loads((out2 / "config.json").read_text())["phenotype"]["config"]
    assert saved["max_reference_cells"] is None and saved["max_epochs"] == 1


def test_finetune_write_config_prints_the_defaults_as_toml(tmp_path: Path) -> None:
    result = runner.invoke(app, ["poppy", "finetune", "--write-config"])
    assert result.exit_code == 0, result.output
    table = tomllib.loads(result.stdout)["finetune"]
    defaults = PhenotypeConfig().to_dict()
    assert table == {k: v for k, v in defaults.items() if v is not None}
    assert all(f"# {k} =" in result.stdout for k, v in defaults.items() if v is None)
    path = tmp_path / "ft.toml"
    path.write_text(result.stdout)
    assert PhenotypeConfig.from_file(path) == PhenotypeConfig()
    assert "[poppy]" in runner.invoke(app, ["poppy", "train", "--write-config"]).stdout


def test_every_finetune_config_field_is_an_option() -> None:
    command = typer.main.get_command(app)
    finetune = command.commands["poppy"].commands["finetune"]  # type: ignore[attr-defined]
    options = {opt for param in finetune.params for opt in param.opts}
    names = {f.name for f in fields(PhenotypeConfig)} - {"finetune_bulk"}
    assert {"--" + name.replace("_", "-") for name in names} <= options
    assert {"--finetune-bulk", "--freeze-bulk"} <= {
        opt for param in finetune.params for opt in (*param.opts, *param.secondary_opts)
    }


@pytest.mark.parametrize(
    ("extra", "config_text", "needle"),
    [
        ([], "[finetune]\nmax_epoch = 2\n", "max_epoch"),
        ([], "[finetune]\nreference = 'atlas'\n", "reference"),
        (["--query-dim", "0"], None, "--query-dim"),
        (["--temperature", "warm"], None, "--temperature"),
        (["--max-reference-cells", "lots"], None, "--max-reference-cells"),
        (["--accelerator", "gpux"], None, "gpux"),
        (["--label-key", "response"], None, "response"),
        (["--cohort-key", "cohort"], None, "--evaluate"),
    ],
)
def test_bad_finetune_options_give_one_line_and_no_model(
    inputs: Inputs,
    model_dir: Path,
    tmp_path: Path,
    extra: list[str],
    config_text: str | None,
    needle: str,
) -> None:
    out = tmp_path / "tuned"
    args = [str(model_dir), str(inputs.bulk), str(inputs.cells), "-o", str(out)]
    if config_text is not None:
        (tmp_path / "c.toml").write_text(config_text)
        extra = [*extra, "--config", str(tmp_path / "c.toml")]
    line = one_line_error(invoke(["poppy", "finetune", *args, *FT_FAST, *extra]))
    assert needle in line
    assert not out.exists()


def test_finetune_refuses_a_bulk_with_one_class(
    inputs: Inputs, model_dir: Path, tmp_path: Path
) -> None:
    bulk = anndata.read_h5ad(inputs.bulk)
    one = bulk[bulk.obs["phenotype"] == 1].copy()
    path = tmp_path / "ones.h5ad"
    one.write_h5ad(path)
    out = tmp_path / "tuned"
    args = [str(model_dir), str(path), str(inputs.cells), "-o", str(out), *FT_FAST]
    assert "single class" in one_line_error(invoke(["poppy", "finetune", *args]))
    assert not out.exists()


def test_attribute_errors(inputs: Inputs, model_dir: Path, tuned: Tuned, tmp_path: Path) -> None:
    out = tmp_path / "cells.csv"
    # a stage-1 model has no head
    line = one_line_error(
        invoke(["poppy", "attribute", str(model_dir), str(inputs.bulk), "-o", str(out)])
    )
    assert "phenotype head" in line
    base = ["poppy", "attribute", str(tuned.model), str(inputs.bulk)]
    line = one_line_error(invoke([*base, "-o", str(out), "--label-key", "response"]))
    assert "response" in line
    assert ".csv" in one_line_error(invoke([*base, "-o", str(tmp_path / "cells.h5ad")]))
    assert "--predictions" in one_line_error(
        invoke([*base, "-o", str(out), "--predictions", str(out)])
    )
    assert list(tmp_path.iterdir()) == []


def test_finetune_evaluate_writes_the_loco_table(
    inputs: Inputs, model_dir: Path, tmp_path: Path
) -> None:
    bulk = anndata.read_h5ad(inputs.bulk)
    # cohort1 of this draw has a single class: leave-one-cohort-out needs both everywhere
    two = bulk[bulk.obs["cohort"] != "cohort1"].copy()
    assert all(g.nunique() == 2 for _, g in two.obs.groupby("cohort", observed=True)["phenotype"])
    path = tmp_path / "bulk.h5ad"
    two.write_h5ad(path)
    out = tmp_path / "tuned"
    args = [str(model_dir), str(path), str(inputs.cells), "-o", str(out), "--evaluate"]
    result = invoke(["poppy", "finetune", *args, "--max-epochs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "tuned.loco.csv")
    assert len(table) == 2 * 3
    assert set(table["cohort"]) == {"cohort0", "cohort2"}
    assert table["method"].nunique() == 3
    assert "leave-one-cohort-out" in result.stdout
    assert POPPY.load(out).phenotype is not None
    # the full bulk has a one-class cohort: refused before anything is written
    out2 = tmp_path / "tuned2"
    args = [str(model_dir), str(inputs.bulk), str(inputs.cells), "-o", str(out2), "--evaluate"]
    line = one_line_error(invoke(["poppy", "finetune", *args, *FT_FAST]))
    assert "cohort1" in line
    assert not out2.exists() and not (tmp_path / "tuned2.loco.csv").exists()
