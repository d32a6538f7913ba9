"""`cellbridge bird align|evaluate`: the same models as the API, every option, errors."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from anndata import AnnData
from typer.testing import CliRunner

from cellbridge.bird import AlignConfig, Aligner, fit_per_line, random_embedding, save_embedding
from cellbridge.cli.main import app
from cellbridge.data import perturbation_screen

runner = CliRunner()
OPTIONS = ["--max-epochs", "3", "--seed", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, AnnData, pd.DataFrame]:
    """SIMULATED cells of 20 drugs in 2 lines with a random 'frozen' embedding, and a
    random drug embedding: enough to check plumbing, not learning (tests/bird does)."""
    adata, _ = perturbation_screen(n_drugs=20, n_cell_lines=2, cells_per_condition=8, seed=3)
    for column in ("drug", "cell_line", "plate", "atc", "smiles", "drugbank_id"):
        adata.obs[column] = adata.obs[column].astype(str)
    adata.obsm["X_pca"] = np.random.default_rng(0).normal(size=(adata.n_obs, 6))
    root = tmp_path_factory.mktemp("align")
    cells = root / "cells.h5ad"
    adata.write_h5ad(cells)
    drugs = sorted(set(adata.obs.loc[~adata.obs["control"], "drug"]))
    space = random_embedding(drugs, dim=4, seed=0)
    emb = root / "emb.parquet"
    save_embedding(space, emb)
    return cells, emb, adata, space


def test_align_saves_the_models_of_the_api(
    files: tuple[Path, Path, AnnData, pd.DataFrame], tmp_path: Path
) -> None:
    cells, emb, adata, space = files
    out = tmp_path / "models"
    result = runner.invoke(
        app, ["bird", "align", str(cells), str(emb), "-o", str(out), *OPTIONS, "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"line0", "line1", "split.csv"}
    config = AlignConfig(max_epochs=3, seed=1)
    expected = fit_per_line(adata, space, config, progress=False)
    for line, model in expected.items():
        loaded = Aligner.load(out / line)
        np.testing.assert_allclose(loaded.transform(adata), model.transform(adata), rtol=1e-6)
    split = pd.read_csv(out / "split.csv", index_col=0)["part"]
    assert split.to_dict() == expected["line0"].split.to_dict()  # type: ignore[union-attr]
    pooled = tmp_path / "pooled"
    result = runner.invoke(
        app, ["bird", "align", str(cells), str(emb), "-o", str(pooled), "--pooled", *OPTIONS]
    )
    assert result.exit_code == 0, result.output
    assert Aligner.load(pooled / "pooled").lines == ["line0", "line1"]


def test_every_align_option_and_the_config_file(tmp_path: Path) -> None:
    command = typer.main.get_command(app)
    align = command.commands["bird"].commands["align"]  # type: ignore[attr-defined]
    options = {o for p in align.params for o in (*p.opts, *p.secondary_opts)}
    names = {f.name for f in fields(AlignConfig)} - {"normalize_drugs"}
    assert {"--" + n.replace("_", "-") for n in names} <= options
    assert {"--normalize-drugs", "--raw-drugs"} <= options
    result = runner.invoke(app, ["bird", "align", "--write-config"])
    assert result.exit_code == 0
    assert AlignConfig.from_dict(tomllib.loads(result.stdout)["align"]) == AlignConfig()


def test_evaluate_writes_tables_and_figures(
    files: tuple[Path, Path, AnnData, pd.DataFrame], tmp_path: Path
) -> None:
    cells, emb, _, _ = files
    out = tmp_path / "eval"
    args = ["bird", "evaluate", str(cells), "-o", str(out), "--embedding", f"R={emb}"]
    result = runner.invoke(app, [*args, "--morgan", "--random-dim", "4", "--max-epochs", "2"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "retrieval_summary.csv", index_col=0)
    assert list(summary.index) == ["R", "Morgan", "random", "frozen encoder"]
    assert summary.loc[["R", "Morgan", "random"], "auroc"].between(0, 1).all()
    for name in ("retrieval_roc.png", "separability.png", "cross_line_auroc_R.png"):
        assert (out / name).stat().st_size > 1000
    auroc = pd.read_csv(out / "retrieval_auroc_R.csv", index_col=0)
    assert auroc.shape == (2, 2)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--epsilon", "0"], "--epsilon"),
        (["--head", "deep"], "--head"),
        (["--cell-key", "X_none"], "X_none"),
        (["--control-key", "none"], "drug"),  # controls then need an embedding row
    ],
)
def test_align_errors_are_one_line_and_write_nothing(
    files: tuple[Path, Path, AnnData, pd.DataFrame], tmp_path: Path, args: list[str], needle: str
) -> None:
    cells, emb, _, _ = files
    out = tmp_path / "models"
    result = runner.invoke(app, ["bird", "align", str(cells), str(emb), "-o", str(out), *args])
    assert result.exit_code != 0
    assert needle in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
