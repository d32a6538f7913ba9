"""``cellbridge poppy train|embed``: same numbers as the API, config precedence, errors."""

from __future__ import annotations

import json
import tomllib
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import anndata
import numpy as np
import pytest
import typer
from typer.testing import CliRunner, Result

from cellbridge.cli.main import app
from cellbridge.cli.poppy import build_config
from cellbridge.data import CellStore, pbmc_patients
from cellbridge.errors import InputError
from cellbridge.poppy import POPPY, POPPYConfig, sample_similarity

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
