"""`cellbridge bird signatures|embed`: the same results as the API, config files, errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellbridge.bird import (
    BirdConfig,
    bird_embedding,
    differential_response,
    jaccard_similarity,
    load_embedding,
)
from cellbridge.cli.main import app
from cellbridge.data import perturbation_screen

runner = CliRunner()


@pytest.fixture(scope="module")
def screen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    adata, _ = perturbation_screen(n_drugs=10, n_cell_lines=3, cells_per_condition=30, seed=5)
    for column in ("drug", "cell_line", "plate", "atc", "smiles", "drugbank_id"):
        adata.obs[column] = adata.obs[column].astype(str)
    path = tmp_path_factory.mktemp("bird") / "screen.h5ad"
    adata.write_h5ad(path)
    return path, adata


def test_signatures_then_embed_equal_the_api(screen: tuple[Path, object], tmp_path: Path) -> None:
    path, adata = screen
    sig_path, emb_path = tmp_path / "sig.parquet", tmp_path / "emb.parquet"
    args = ["bird", "signatures", str(path), "-o", str(sig_path)]
    result = runner.invoke(app, [*args, "--reference-lines", "line0,line1", "--top-k", "25"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["bird", "embed", str(sig_path), "-o", str(emb_path)])
    assert result.exit_code == 0, result.output
    sig = differential_response(adata, reference_lines=["line0", "line1"], top_k=25)  # type: ignore[arg-type]
    table = pd.read_parquet(sig_path)
    for (line, drug), genes in sig.genes.items():
        rows = table[(table["cell_line"] == line) & (table["drug"] == drug)]
        assert list(rows["gene"].dropna()) == genes
    expected = bird_embedding(
        {line: jaccard_similarity(sig.for_line(line)) for line in ("line0", "line1")}
    )
    pd.testing.assert_frame_equal(load_embedding(emb_path), expected)


@pytest.mark.filterwarnings("ignore:.*have no gene with q:UserWarning")  # line2 responds weakly
def test_config_file_and_write_config(screen: tuple[Path, object], tmp_path: Path) -> None:
    path, _ = screen
    result = runner.invoke(app, ["bird", "signatures", "--write-config"])
    assert result.exit_code == 0
    assert BirdConfig.from_dict(tomllib.loads(result.stdout)["bird"]) == BirdConfig()
    config = tmp_path / "c.toml"
    config.write_text('[bird]\nreference_lines = ["line2"]\ntop_k = 5\n')
    out = tmp_path / "s.parquet"
    result = runner.invoke(
        app, ["bird", "signatures", str(path), "-o", str(out), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert set(table["cell_line"]) == {"line2"} and table.groupby("drug").size().max() <= 5
    # the command line wins over the file
    result = runner.invoke(
        app,
        ["bird", "signatures", str(path), "-o", str(out), "--config", str(config), "--top-k", "3"],
    )
    assert result.exit_code == 0 and pd.read_parquet(out).groupby("drug").size().max() <= 3
    config.write_text("[bird]\ntop = 5\n")
    result = runner.invoke(
        app, ["bird", "signatures", str(path), "-o", str(out), "--config", str(config)]
    )
    assert result.exit_code == 2 and "top" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--reference-lines", "lineX"], "lineX"),
        (["--reference-lines", "line0", "--method", "anova"], "method"),
        (["--reference-lines", "line0", "--alpha", "2"], "alpha"),
        ([], "reference"),
    ],
)
def test_errors_are_one_line(
    screen: tuple[Path, object], tmp_path: Path, args: list[str], needle: str
) -> None:
    path, _ = screen
    out = tmp_path / "s.parquet"
    result = runner.invoke(app, ["bird", "signatures", str(path), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:.*have no gene with q:UserWarning")
def test_knn_eval_writes_tables_and_refuses_reference_lines(
    screen: tuple[Path, object], tmp_path: Path
) -> None:
    path, _ = screen
    sig, emb = tmp_path / "sig.parquet", tmp_path / "emb.parquet"
    refs = ["--reference-lines", "line0,line1"]
    assert (
        runner.invoke(app, ["bird", "signatures", str(path), "-o", str(sig), *refs]).exit_code == 0
    )
    assert runner.invoke(app, ["bird", "embed", str(sig), "-o", str(emb)]).exit_code == 0
    out = tmp_path / "knn"
    args = ["bird", "knn-eval", str(path), "-o", str(out), "--embedding", f"BiRD={emb}"]
    args += ["--morgan", "--random-dim", "8", "--k", "2", "--test-fraction", "0.3", *refs]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "knn_mae.csv", index_col=0)
    assert set(table["embedding"]) == {"BiRD", "Morgan", "random"}
    assert set(table["cell_line"]) == {"line2"}  # every line but the reference ones
    assert table["mae"].gt(0).all()
    W = pd.read_csv(out / "knn_win_rates.csv", index_col=0)
    assert W.loc["BiRD", "Morgan"] + W.loc["Morgan", "BiRD"] == pytest.approx(1.0)
    for name in ("knn_ecdf.png", "knn_win_rates.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, [*args, "--evaluation-lines", "line0"])
    assert bad.exit_code == 2 and "line0" in bad.output


@pytest.mark.filterwarnings("ignore:.*have no gene with q:UserWarning")
def test_signatures_by_plate_read_backed(tmp_path: Path) -> None:
    adata, _ = perturbation_screen(n_drugs=6, n_cell_lines=1, cells_per_condition=40, seed=8)
    drugs = sorted(set(adata.obs.loc[~adata.obs["control"], "drug"]))
    home = {d: f"plate{i % 2}" for i, d in enumerate(drugs)}
    keep = adata.obs["control"] | (adata.obs["plate"] == adata.obs["drug"].map(home))
    adata = adata[keep.to_numpy()].copy()
    for column in ("drug", "cell_line", "plate", "atc", "smiles", "drugbank_id"):
        adata.obs[column] = adata.obs[column].astype(str)
    path = tmp_path / "one_plate_per_drug.h5ad"
    adata.write_h5ad(path)
    outs = {}
    for by in ("line", "plate"):
        outs[by] = tmp_path / f"{by}.parquet"
        args = ["bird", "signatures", str(path), "-o", str(outs[by]), "--reference-lines"]
        result = runner.invoke(app, [*args, "line0", "--by", by])
        assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(outs["line"]), pd.read_parquet(outs["plate"]))
    bad = runner.invoke(
        app, ["bird", "signatures", str(path), "-o", str(outs["line"]), "--by", "well"]
    )
    assert bad.exit_code == 2 and "by" in bad.output
