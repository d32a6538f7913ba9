"""Bad input through the command line, as one table: every case ends with exit code 2,
one ``error:`` line naming the problem, no traceback, and no output file."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from cellbridge.bird import random_embedding, save_embedding
from cellbridge.cli.main import app
from cellbridge.data import pbmc_patients, perturbation_screen
from cellbridge.poppy import sample_similarity

runner = CliRunner()
FEW_NEGATIVES = "fewer than B - 2 samples"
FAST = ["--cell-key", "X_pca", "--max-epochs", "1", "--batch-size", "4", "--no-progress"]


@dataclass
class Files:
    root: Path
    cells: Path
    bulk: Path
    similarity: Path
    model: Path
    screen: Path
    screen_embedded: Path
    embedding: Path


def _write(adata: anndata.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("bad-input")
    data = pbmc_patients(n_patients=12, cells_per_patient=30, seed=0)
    cells = _write(data.cells, root / "cells.h5ad")
    bulk = _write(data.pseudobulk, root / "bulk.h5ad")
    similarity = _write(sample_similarity(data.cells, k=5), root / "similarity.h5ad")
    model = root / "model"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=FEW_NEGATIVES)
        result = runner.invoke(
            app, ["poppy", "train", str(cells), str(bulk), str(similarity), "-o", str(model), *FAST]
        )
    assert result.exit_code == 0, result.output
    screen, _ = perturbation_screen(n_drugs=10, n_cell_lines=3, cells_per_condition=10, seed=5)
    for column in ("drug", "cell_line", "plate", "atc", "smiles", "drugbank_id"):
        screen.obs[column] = screen.obs[column].astype(str)
    screen_path = _write(screen, root / "screen.h5ad")
    embedded = screen.copy()
    embedded.obsm["X_pca"] = np.random.default_rng(0).normal(size=(screen.n_obs, 4))
    drugs = sorted(set(screen.obs.loc[~screen.obs["control"], "drug"]))
    embedding = root / "emb.parquet"
    save_embedding(random_embedding(drugs, dim=3), embedding)
    return Files(
        root,
        cells,
        bulk,
        similarity,
        model,
        screen_path,
        _write(embedded, root / "screen_embedded.h5ad"),
        embedding,
    )


def _variant(source: Path, name: str, change: Callable[[anndata.AnnData], None]) -> Path:
    adata = anndata.read_h5ad(source)
    change(adata)
    return _write(adata, source.parent / name)


def _set_x(adata: anndata.AnnData, row: int, col: int, value: float) -> None:
    X = adata.X.toarray() if sp.issparse(adata.X) else np.array(adata.X)
    X[row, col] = value
    adata.X = sp.csr_matrix(X) if sp.issparse(adata.X) else X


def _rename(adata: anndata.AnnData, column: str, value: object) -> None:
    adata.obs[column] = adata.obs[column].astype(str)
    adata.obs.iloc[0, adata.obs.columns.get_loc(column)] = value


def _break_smiles(adata: anndata.AnnData) -> None:
    """Give every cell of the first treated drug an unparsable SMILES."""
    adata.obs["smiles"] = adata.obs["smiles"].astype(str)
    first = sorted(set(adata.obs.loc[~adata.obs["control"], "drug"]))[0]
    adata.obs.loc[adata.obs["drug"] == first, "smiles"] = "C1CC"


def _cases(f: Files, out: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (command line, text the error must contain); every output goes to ``out``."""
    sim = ["similarity", "-o", str(out / "s.h5ad"), "--k", "5"]
    variant = _variant
    truncated = f.root / "truncated.h5ad"
    truncated.write_bytes(f.cells.read_bytes()[:200])
    text_file = f.root / "notes.h5ad"
    text_file.write_text("not an h5ad file")
    corrupt_parquet = f.root / "corrupt.parquet"
    corrupt_parquet.write_bytes(b"PAR1 broken")
    tampered = f.root / "tampered"
    if not tampered.exists():
        shutil.copytree(f.model, tampered)
        weights = tampered / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    blocker = f.root / "a-file"
    blocker.write_text("x")
    embed = ["poppy", "embed", str(f.model)]
    # no --cell-key: the PCA stand-in reads the cells' expression
    train = ["poppy", "train"]
    train_rest = [str(f.bulk), str(f.similarity), "-o", str(out / "m"), "--max-epochs", "1"]
    finetune = ["poppy", "finetune", str(f.model)]
    signatures = ["bird", "signatures", "-o", str(out / "sig.parquet")]
    knn = ["bird", "knn-eval", "-o", str(out / "knn"), "--reference-lines", "line0"]
    align = ["bird", "align", "-o", str(out / "models")]
    return {
        "NaN in counts": (
            [
                *train,
                str(variant(f.cells, "nan.h5ad", lambda a: _set_x(a, 0, 0, np.nan))),
                *train_rest,
            ],
            "NaN",
        ),
        "infinite count": (
            [
                *train,
                str(variant(f.cells, "inf.h5ad", lambda a: _set_x(a, 1, 1, np.inf))),
                *train_rest,
            ],
            "inf",
        ),
        "negative count": (
            [
                *train,
                str(variant(f.cells, "neg.h5ad", lambda a: _set_x(a, 0, 0, -3))),
                *train_rest,
            ],
            "negative",
        ),
        "unknown cell-type label": (
            [
                *sim[:1],
                str(
                    variant(f.cells, "alien.h5ad", lambda a: _rename(a, "cell_type", "alien cell"))
                ),
                *sim[1:],
            ],
            "alien cell",
        ),
        "missing sample column": (
            [*sim[:1], str(f.cells), *sim[1:], "--sample-key", "patient"],
            "patient",
        ),
        "duplicate cell names": (
            [
                *sim[:1],
                str(
                    variant(f.cells, "dup.h5ad", lambda a: setattr(a, "obs_names", ["c"] * a.n_obs))
                ),
                *sim[1:],
            ],
            "duplicate",
        ),
        "no cells": (
            [
                *sim[:1],
                str(_write(anndata.read_h5ad(f.cells)[:0].copy(), f.root / "empty.h5ad")),
                *sim[1:],
            ],
            "cells",
        ),
        "truncated h5ad": ([*sim[:1], str(truncated), *sim[1:]], "truncated.h5ad"),
        "not an h5ad file": ([*sim[:1], str(text_file), *sim[1:]], "notes.h5ad"),
        "missing input file": ([*sim[:1], str(f.root / "absent.h5ad"), *sim[1:]], "absent.h5ad"),
        "output under a file": (
            ["similarity", str(f.cells), "-o", str(blocker / "s.h5ad")],
            "a-file",
        ),
        "k below 1": (
            [*sim[:1], str(f.cells), "-o", str(out / "s.h5ad"), "--k", "0"],
            "k: must be",
        ),
        "tampered checkpoint": (
            ["poppy", "embed", str(tampered), str(f.bulk), "-o", str(out / "e.h5ad")],
            "SHA-256",
        ),
        "bulk genes do not overlap": (
            [
                *embed,
                str(
                    variant(
                        f.bulk,
                        "genes.h5ad",
                        lambda a: setattr(a, "var_names", [f"x{i}" for i in range(a.n_vars)]),
                    )
                ),
                "-o",
                str(out / "e.h5ad"),
            ],
            "no gene in common",
        ),
        "duplicate bulk profiles": (
            [
                *embed,
                str(
                    variant(
                        f.bulk, "dupbulk.h5ad", lambda a: setattr(a, "obs_names", ["p"] * a.n_obs)
                    )
                ),
                "-o",
                str(out / "e.h5ad"),
            ],
            "duplicate",
        ),
        "NaN in bulk": (
            [
                *embed,
                str(variant(f.bulk, "nanbulk.h5ad", lambda a: _set_x(a, 0, 0, np.nan))),
                "-o",
                str(out / "e.h5ad"),
            ],
            "NaN",
        ),
        "one phenotype class": (
            [
                *finetune,
                str(variant(f.bulk, "oneclass.h5ad", lambda a: a.obs.__setitem__("phenotype", 1))),
                str(f.cells),
                "-o",
                str(out / "ft"),
            ],
            "single class",
        ),
        "missing label column": (
            [
                *finetune,
                str(f.bulk),
                str(f.cells),
                "-o",
                str(out / "ft"),
                "--label-key",
                "response",
            ],
            "response",
        ),
        "atlas without the embedding": (
            [
                *finetune,
                str(f.bulk),
                str(variant(f.cells, "noobsm.h5ad", lambda a: a.obsm.clear())),
                "-o",
                str(out / "ft"),
            ],
            "X_pca",
        ),
        "NaN in screen counts": (
            [
                *signatures[:2],
                str(variant(f.screen, "nanscreen.h5ad", lambda a: _set_x(a, 0, 0, np.nan))),
                *signatures[2:],
                "--reference-lines",
                "line0",
            ],
            "NaN",
        ),
        "unknown reference line": (
            [*signatures[:2], str(f.screen), *signatures[2:], "--reference-lines", "line9"],
            "line9",
        ),
        "missing control column": (
            [
                *signatures[:2],
                str(
                    variant(
                        f.screen,
                        "noctrl.h5ad",
                        lambda a: a.obs.drop(columns="control", inplace=True),
                    )
                ),
                *signatures[2:],
                "--reference-lines",
                "line0",
            ],
            "control",
        ),
        "SMILES that do not parse": (
            [
                *knn[:2],
                str(variant(f.screen, "smiles.h5ad", _break_smiles)),
                *knn[2:],
                "--morgan",
                "--random-dim",
                "4",
            ],
            "C1CC",
        ),
        "reference line evaluated": (
            [
                *knn[:2],
                str(f.screen),
                *knn[2:],
                "--evaluation-lines",
                "line0,line1",
                "--random-dim",
                "4",
            ],
            "line0",
        ),
        "wrong obsm shape": (
            [
                *align[:2],
                str(
                    variant(
                        f.screen_embedded,
                        "shape.h5ad",
                        lambda a: a.obsm.__setitem__("X_pca", np.zeros((a.n_obs, 0))),
                    )
                ),
                str(f.embedding),
                *align[2:],
            ],
            "X_pca",
        ),
        "drug without an embedding row": (
            [*align[:2], str(f.screen_embedded), str(f.root / "emb_short.parquet"), *align[2:]],
            "no row",
        ),
        "corrupt parquet": (
            [*align[:2], str(f.screen_embedded), str(corrupt_parquet), *align[2:]],
            "corrupt.parquet",
        ),
        "unwritable demo output": (["demo", "--out", str(blocker / "demo")], "a-file"),
    }


CASE_NAMES = [
    "NaN in counts",
    "infinite count",
    "negative count",
    "unknown cell-type label",
    "missing sample column",
    "duplicate cell names",
    "no cells",
    "truncated h5ad",
    "not an h5ad file",
    "missing input file",
    "output under a file",
    "k below 1",
    "tampered checkpoint",
    "bulk genes do not overlap",
    "duplicate bulk profiles",
    "NaN in bulk",
    "one phenotype class",
    "missing label column",
    "atlas without the embedding",
    "NaN in screen counts",
    "unknown reference line",
    "missing control column",
    "SMILES that do not parse",
    "reference line evaluated",
    "wrong obsm shape",
    "drug without an embedding row",
    "corrupt parquet",
    "unwritable demo output",
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_gives_one_error_line_and_no_output(
    files: Files, tmp_path: Path, name: str
) -> None:
    short = files.root / "emb_short.parquet"
    if not short.exists():
        full = pd.read_parquet(files.embedding)
        save_embedding(full.iloc[:-2], short)
    out = tmp_path / "out"
    out.mkdir()
    args, needle = _cases(files, out)[name]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (name, result.output)
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert needle in errors[0], (needle, errors[0])
    assert list(out.iterdir()) == [], list(out.iterdir())


def test_the_table_has_at_least_25_cases(files: Files, tmp_path: Path) -> None:
    assert len(CASE_NAMES) >= 25
    assert set(CASE_NAMES) == set(_cases(files, tmp_path))
