"""The command line: --version, similarity, demo, and one-line errors without tracebacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellbridge import __version__
from cellbridge.cli.main import app
from cellbridge.data import pbmc_patients
from cellbridge.poppy import POPPY, sample_similarity

runner = CliRunner()


@pytest.fixture(scope="module")
def cells_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cells = pbmc_patients(n_patients=12, n_cohorts=2, cells_per_patient=30, seed=4).cells
    cells.obs["label"] = cells.obs["bulk_labels"].astype(str)  # free text, needs the table
    path = tmp_path_factory.mktemp("in") / "cells.h5ad"
    cells.write_h5ad(path)
    return path


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cellbridge {__version__}"


def test_similarity_writes_what_the_api_returns(cells_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim.h5ad"
    result = runner.invoke(
        app, ["similarity", str(cells_file), "-o", str(out), "--k", "5", "--n-jobs", "1"]
    )
    assert result.exit_code == 0, result.output
    written = anndata.read_h5ad(out)
    expected = sample_similarity(anndata.read_h5ad(cells_file), k=5)
    np.testing.assert_array_equal(written.obsp["emd"], expected.obsp["emd"])
    np.testing.assert_array_equal(
        written.obsp["similarity"].toarray(), expected.obsp["similarity"].toarray()
    )
    assert "samples" in result.stdout and "12" in result.stdout


def test_similarity_knn_distances_write_the_same_kernel(cells_file: Path, tmp_path: Path) -> None:
    full, knn = tmp_path / "full.h5ad", tmp_path / "knn.h5ad"
    for out, extra in ((full, []), (knn, ["--distances", "knn"])):
        result = runner.invoke(
            app, ["similarity", str(cells_file), "-o", str(out), "--k", "5", *extra]
        )
        assert result.exit_code == 0, result.output
    a, b = anndata.read_h5ad(full), anndata.read_h5ad(knn)
    np.testing.assert_array_equal(a.obsp["similarity"].toarray(), b.obsp["similarity"].toarray())
    assert "emd_knn" in b.obsp and "emd" not in b.obsp
    assert "W1 to k nearest" in result.stdout
    bad = runner.invoke(app, ["similarity", str(cells_file), "-o", str(knn), "--distances", "some"])
    assert bad.exit_code == 2 and "--distances" in bad.output


def test_similarity_with_mapping_table(cells_file: Path, tmp_path: Path) -> None:
    table = tmp_path / "map.tsv"
    cells = anndata.read_h5ad(cells_file)
    pairs = cells.obs[["label", "cell_type"]].drop_duplicates()
    pd.DataFrame({"label": pairs["label"], "cl_id": pairs["cell_type"]}).to_csv(
        table, sep="\t", index=False
    )
    out = tmp_path / "sim.h5ad"
    args = ["similarity", str(cells_file), "-o", str(out), "--cell-type-key", "label", "--k", "5"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "CD14+ Monocyte" in refused.output or "Dendritic" in refused.output
    assert not out.exists()
    mapped = runner.invoke(app, [*args, "--mapping", str(table)])
    assert mapped.exit_code == 0, mapped.output
    by_id = sample_similarity(cells, k=5)
    np.testing.assert_allclose(anndata.read_h5ad(out).obsp["emd"], by_id.obsp["emd"])


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--sample-key", "donor"], "donor"),
        (["--method", "fast"], "method"),
        (["--k", "0"], "k"),
        (["--ontology-version", "v1999-01-01"], "v1999-01-01"),
    ],
)
def test_bad_options_give_one_line_and_no_output(
    cells_file: Path, tmp_path: Path, extra: list[str], needle: str
) -> None:
    out = tmp_path / "sim.h5ad"
    result = runner.invoke(app, ["similarity", str(cells_file), "-o", str(out), *extra])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert needle in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_corrupt_input_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "cells.h5ad"
    bad.write_bytes(b"\x89HDF\r\n\x1a\nthis is not a complete file")
    result = runner.invoke(app, ["similarity", str(bad), "-o", str(tmp_path / "o.h5ad")])
    assert result.exit_code == 2
    assert "not a readable .h5ad" in result.output
    assert "Traceback" not in result.output


def test_existing_output_survives_a_failed_run(cells_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim.h5ad"
    out.write_bytes(b"previous result")
    result = runner.invoke(app, ["similarity", str(cells_file), "-o", str(out), "--k", "-3"])
    assert result.exit_code == 2
    assert out.read_bytes() == b"previous result"


def test_demo_writes_its_outputs_and_labels_simulated_data(
    tmp_path: Path, rendered_images: Callable[[Path, Path], tuple[int, int]] | None
) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--n-jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "SEMI-SYNTHETIC" in result.stdout
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["data"]["simulated"] is True
    assert "semi-synthetic" in manifest["data"]["cells"]
    # cohorts share a mean composition: the similarity must see that structure
    res = manifest["results"]
    assert res["mean_w1_within_cohort"] < res["mean_w1_across_cohorts"]
    sim = anndata.read_h5ad(tmp_path / "similarity.h5ad")
    assert sim.n_obs == 60
    for name in ("similarity.png", "poppy_metrics.png", "poppy_recall.png", "poppy_embeddings.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # POPPY stage 1: trained, scored on held-out patients, saved, labelled semi-synthetic
    metrics = pd.read_csv(tmp_path / "poppy_metrics.csv", keep_default_na=False)
    assert (metrics["data"].str.startswith("semi-synthetic")).all()
    corr = metrics[(metrics["metric"] == "distance_spearman") & (metrics["truth"] == "cell types")]
    corr = corr.set_index("subset")
    for subset in ("within", "across", "all", "tumours"):
        assert corr.loc[subset, "value"] > corr.loc[subset, "baseline"], corr
    assert manifest["poppy"]["best_epoch"] >= 1
    assert sorted(manifest["outputs"]) == sorted(p.name for p in tmp_path.iterdir())
    # POPPY stage 2: leave-one-cohort-out for three methods, attribution, the saved head
    loco = pd.read_csv(tmp_path / "phenotype_loco.csv")
    assert loco.groupby("cohort")["method"].nunique().eq(3).all() and len(loco) == 9
    assert (loco.loc[loco["method"] == "POPPY", "auroc"] > 0.6).all(), loco
    assert (loco["data"].str.startswith("semi-synthetic")).all()
    by_type = pd.read_csv(tmp_path / "attribution_by_cell_type.csv", index_col=0)
    causal = manifest["poppy_phenotype"]["causal_types"]
    top_by_labels = by_type.sort_values("mean_label_enrichment", ascending=False).index[:3]
    assert set(causal) <= set(top_by_labels)
    # with the expression decomposition term the attention finds the cause too
    top_by_attention = by_type.sort_values("mean", ascending=False).index[:3]
    assert set(causal) <= set(top_by_attention), by_type
    tuned = POPPY.load(tmp_path / "phenotype_model")
    attribution = pd.read_csv(tmp_path / "attribution.csv", index_col=0)
    assert tuned.phenotype is not None
    assert len(attribution) == tuned.phenotype.reference.shape[0]
    for name in ("phenotype_auroc.png", "attribution.png", "attribution_agreement.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    model = POPPY.load(tmp_path / "poppy_model")
    held_out = anndata.read_h5ad(tmp_path / "poppy_bulk.h5ad")
    # the UMAP's colour: the T-cell share of each held-out patient's cells
    t_cells = held_out.obs["t_cell_fraction"].to_numpy()
    assert ((t_cells > 0) & (t_cells < 1)).all() and t_cells.std() > 0.02
    np.testing.assert_allclose(
        model.embed_bulk(held_out.copy()), held_out.obsm["X_poppy"], rtol=1e-5, atol=1e-6
    )

    # BiRD on the simulated screen: labelled, and BiRD retrieves held-out drugs best
    assert "SIMULATED" in manifest["data"]["screen"]
    summary = pd.read_csv(tmp_path / "retrieval_summary.csv", index_col=0)
    assert summary["auroc"].drop("frozen encoder").idxmax() == "BiRD", summary
    for name in ("knn_ecdf.png", "knn_win_rates.png", "retrieval_roc.png", "separability.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert len(pd.read_csv(tmp_path / "knn_mae.csv")) == 4 * 2 * 12
    # one self-contained report with every figure of the run embedded
    import base64
    import re

    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', report)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(images) == len(pngs), (len(images), pngs)
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "http" not in report.split("<body>", 1)[1].split("cellbridge", 1)[0]
    assert "semi-synthetic" in report and "SIMULATED" in report
    assert "Recall@k" in report and "T-cell proportion" in report
    if rendered_images is not None:  # every figure drawn by a real browser
        drawn, total = rendered_images(tmp_path / "report.html", tmp_path.parent)
        assert drawn == total == len(pngs)
