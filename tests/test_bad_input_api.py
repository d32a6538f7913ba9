"""Bad input through the public Python API, as one table: every case builds valid small
data, corrupts one thing, calls one public function, and must get an ``InputError`` that
names the offending field, shows the bad value or the problem, and fits on one line.

The CLI counterpart is ``tests/cli/test_bad_input_table.py``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from cellbridge import bird, encoders, metrics, ontology, ot
from cellbridge.data import leave_one_group_out, pbmc_patients, perturbation_screen, pseudobulk
from cellbridge.errors import InputError
from cellbridge.poppy import (
    POPPY,
    PhenotypeConfig,
    POPPYConfig,
    evaluate_phenotype,
    sample_similarity,
)

FEW_NEGATIVES = "fewer than B - 2 samples"
NO_POSITIVE = "an anchor has no"
#: Stage 2 options that would train for one epoch (every case fails before training).
ONE_EPOCH = PhenotypeConfig(max_epochs=1, query_dim=4)


@dataclass
class Data:
    """Valid inputs, built once; every case corrupts a copy."""

    root: Path
    cells: anndata.AnnData  # 12 patients x 30 cells, counts, obsm["X_pca"] (50 dims)
    bulk: anndata.AnnData  # their pseudobulk, log1p-CPM, obs cohort / phenotype
    screen: anndata.AnnData  # 3 lines x 10 drugs, counts, obsm["X_pca"] (4 dims)
    poppy: Path  # a tiny stage-1 checkpoint
    finetuned: Path  # the same with a phenotype head
    aligner: Path  # a tiny BiRD aligner checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("bad-input-api")
    patients = pbmc_patients(n_patients=12, cells_per_patient=30, seed=0)
    config = POPPYConfig(
        cell_key="X_pca",
        max_epochs=1,
        batch_size=4,
        val_fraction=0.0,
        embedding_dim=8,
        hidden_dim=16,
        n_gene_components=4,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=FEW_NEGATIVES)
        warnings.filterwarnings("ignore", message=NO_POSITIVE)
        similarity = sample_similarity(patients.cells, k=5)
        model = POPPY(config).fit(patients.cells, patients.pseudobulk, similarity, progress=False)
        model.save(root / "poppy")
        model.finetune(patients.pseudobulk.copy(), patients.cells, ONE_EPOCH, progress=False)
        model.save(root / "finetuned")
    screen, _ = perturbation_screen(n_drugs=10, n_cell_lines=3, cells_per_condition=10, seed=5)
    screen.obsm["X_pca"] = np.random.default_rng(0).normal(size=(screen.n_obs, 4))
    drugs = sorted(set(screen.obs.loc[~screen.obs["control"], "drug"]))
    line0 = screen[screen.obs["cell_line"] == "line0"].copy()
    aligner = bird.Aligner(bird.AlignConfig(max_epochs=1))
    aligner.fit(line0, bird.random_embedding(drugs, dim=3), progress=False)
    aligner.save(root / "aligner")
    return Data(
        root,
        patients.cells,
        patients.pseudobulk,
        screen,
        root / "poppy",
        root / "finetuned",
        root / "aligner",
    )


# --- corruptions (each returns a corrupted copy) -----------------------------------------


def _set_x(adata: anndata.AnnData, row: int, col: int, value: object) -> anndata.AnnData:
    out = adata.copy()
    X = out.X.toarray() if sp.issparse(out.X) else np.array(out.X, dtype=np.float64)
    X[row, col] = value
    out.X = X
    return out


def _set_obs(adata: anndata.AnnData, column: str, values: object) -> anndata.AnnData:
    out = adata.copy()
    out.obs[column] = values
    return out


def _relabel_first(adata: anndata.AnnData, column: str, value: object) -> anndata.AnnData:
    out = adata.copy()
    out.obs[column] = out.obs[column].astype(object)
    out.obs.iloc[0, out.obs.columns.get_loc(column)] = value
    return out


def _drop_obs(adata: anndata.AnnData, column: str) -> anndata.AnnData:
    out = adata.copy()
    out.obs = out.obs.drop(columns=column)
    return out


def _set_obsm(adata: anndata.AnnData, key: str, value: np.ndarray) -> anndata.AnnData:
    out = adata.copy()
    out.obsm[key] = value
    return out


def _inf_in_obsm(adata: anndata.AnnData, key: str) -> anndata.AnnData:
    values = np.array(adata.obsm[key], dtype=np.float64)
    values[0, 0] = np.inf
    return _set_obsm(adata, key, values)


def _no_obsm(adata: anndata.AnnData) -> anndata.AnnData:
    out = adata.copy()
    out.obsm.clear()
    return out


def _same_obs_names(adata: anndata.AnnData) -> anndata.AnnData:
    out = adata.copy()
    out.obs_names = ["x"] * out.n_obs
    return out


def _first_gene_twice(adata: anndata.AnnData) -> anndata.AnnData:
    out = adata.copy()
    names = list(out.var_names)
    names[1] = names[0]
    out.var_names = names
    return out


def _other_genes(adata: anndata.AnnData) -> anndata.AnnData:
    out = adata.copy()
    out.var_names = [f"x{i}" for i in range(out.n_vars)]
    return out


def _string_matrix() -> anndata.AnnData:
    return anndata.AnnData(np.full((3, 4), "1.0", dtype=object))


def _ghost_sample(adata: anndata.AnnData) -> anndata.AnnData:
    samples = adata.obs["sample"].astype("category").cat.add_categories(["ghost"])
    return _set_obs(adata, "sample", samples)


# --- checkpoints ----------------------------------------------------------------------------


def _tampered(d: Data, source: Path, name: str, change: Callable[[Path], None]) -> Path:
    """A copy of the checkpoint ``source`` under ``name``, changed by ``change``."""
    target = d.root / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    change(target)
    return target


def _edit_config(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        meta = json.loads((directory / "config.json").read_text())
        change(meta)
        (directory / "config.json").write_text(json.dumps(meta))

    return edit


def _truncate(file: str, keep: int) -> Callable[[Path], None]:
    def cut(directory: Path) -> None:
        path = directory / file
        path.write_bytes(path.read_bytes()[:keep])

    return cut


def _zero_tail(directory: Path) -> None:
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")


def _load_poppy(d: Data, name: str, change: Callable[[Path], None]) -> POPPY:
    return POPPY.load(_tampered(d, d.poppy, name, change))


def _load_aligner(d: Data, name: str, change: Callable[[Path], None]) -> bird.Aligner:
    return bird.Aligner.load(_tampered(d, d.aligner, name, change))


def _model(d: Data) -> POPPY:
    return POPPY.load(d.poppy)


# --- small arrays ---------------------------------------------------------------------------

RNG = np.random.default_rng(0)
X10 = RNG.normal(size=(10, 3))
COST = torch.rand(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
STAR = ot.Graph(3, np.array([[1, 0], [2, 0]]), root=0)
DRUGS = list("abc")


def _similarity(values: list[list[float]], names: list[str] = DRUGS) -> pd.DataFrame:
    return pd.DataFrame(values, index=names[: len(values)], columns=names)


def _with_nan(X: np.ndarray) -> np.ndarray:
    out = np.array(X, dtype=np.float64)
    out[2, 1] = np.nan
    return out


def _sparse_with_inf() -> sp.csr_matrix:
    X = RNG.random((10, 4))
    X[0, 0] = np.inf
    return sp.csr_matrix(X)


def _one_cohort(bulk: anndata.AnnData) -> anndata.AnnData:
    return _set_obs(bulk, "cohort", "cohort0")


def _yes_no(bulk: anndata.AnnData) -> anndata.AnnData:
    labels = np.where(bulk.obs["phenotype"].to_numpy() == 1, "yes", "no").astype(object)
    return _set_obs(bulk, "phenotype", labels)


def _control_as_text(screen: anndata.AnnData) -> anndata.AnnData:
    return _set_obs(screen, "control", screen.obs["control"].astype(str).astype(object))


def _standin_on_other_genes(d: Data) -> np.ndarray:
    standin = encoders.PCAStandIn.fit(d.cells, n_pcs=3)
    return standin.transform(_other_genes(d.cells))


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: ``call`` must raise an InputError whose ``field`` is ``field`` and
    whose message contains ``needle`` (the bad value, or the problem)."""

    name: str
    field: str
    needle: str
    call: Callable[[Data], object]


CASES = [
    # NaN / inf / negative values, non-numeric matrices
    Case(
        "NaN in cell counts (PCA stand-in)",
        "adata.X",
        "NaN",
        lambda d: encoders.cell_embeddings(_set_x(d.cells, 0, 0, np.nan), n_pcs=5),
    ),
    Case(
        "inf in bulk expression",
        "bulk_adata.X",
        "infinite",
        lambda d: _model(d).embed_bulk(_set_x(d.bulk, 1, 1, np.inf)),
    ),
    Case(
        "inf in the cell embedding",
        "adata.obsm['X_pca']",
        "infinite",
        lambda d: _model(d).embed_cells(_inf_in_obsm(d.cells, "X_pca")),
    ),
    Case(
        "NaN in screen counts",
        "adata.X",
        "NaN",
        lambda d: bird.differential_response(
            _set_x(d.screen, 0, 0, np.nan), reference_lines=["line0"]
        ),
    ),
    Case(
        "negative count (pseudobulk)",
        "X",
        "-3.0",
        lambda d: pseudobulk(_set_x(d.cells, 0, 0, -3)),
    ),
    Case(
        "negative count (NMF programs)",
        "adata.X",
        "negative",
        lambda d: ontology.nmf_programs(_set_x(d.cells, 0, 0, -1)),
    ),
    Case(
        "NaN in a DE group",
        "treated",
        "NaN",
        lambda d: bird.compare_groups(_with_nan(X10[:5]), X10[5:]),
    ),
    Case(
        "inf in the DE matrix",
        "X",
        "infinite",
        lambda d: bird.compare_rows(_sparse_with_inf(), [np.arange(0, 3)], np.arange(3, 6)),
    ),
    Case(
        "string expression matrix",
        "adata.X",
        "numeric",
        lambda d: encoders.log_normalised(_string_matrix()),
    ),
    Case(
        "string DE matrix",
        "treated",
        "numeric",
        lambda d: bird.compare_groups(np.full((3, 2), "a"), np.full((3, 2), "b")),
    ),
    Case(
        "NaN in aligned query cells",
        "Z",
        "NaN",
        lambda d: bird.retrieval_auroc(
            _with_nan(X10), np.array(["a", "b"] * 5), bird.random_embedding(["a", "b"], dim=3)
        ),
    ),
    Case(
        "NaN in an embedding to score",
        "X",
        "NaN",
        lambda d: metrics.silhouette_label(_with_nan(X10), np.array([0, 1] * 5)),
    ),
    # empty inputs
    Case(
        "no cells (similarity)",
        "cells",
        "no cells",
        lambda d: sample_similarity(d.cells[:0].copy(), k=5),
    ),
    Case("no cells (pseudobulk)", "adata", "no cells", lambda d: pseudobulk(d.cells[:0].copy())),
    Case(
        "empty sample category",
        "adata.obs['sample']",
        "ghost",
        lambda d: pseudobulk(_ghost_sample(d.cells)),
    ),
    Case("no bulk profiles", "bulk", "no profiles", lambda d: _model(d).embed_bulk(d.bulk[:0])),
    Case(
        "empty DE group",
        "cells",
        "at least 2 cells",
        lambda d: bird.compare_groups(np.zeros((0, 3)), X10),
    ),
    Case("no signatures", "signatures", "no drugs", lambda d: bird.jaccard_similarity({})),
    # duplicate names
    Case(
        "duplicate cell names",
        "adata.obs_names",
        "duplicate cell names",
        lambda d: pseudobulk(_same_obs_names(d.cells)),
    ),
    Case(
        "duplicate profile names",
        "bulk.obs_names",
        "'x'",
        lambda d: _model(d).embed_bulk(_same_obs_names(d.bulk)),
    ),
    Case(
        "duplicate atlas cell names",
        "atlas.obs_names",
        "'x'",
        lambda d: POPPY.load(d.poppy).finetune(
            d.bulk.copy(), _same_obs_names(d.cells), ONE_EPOCH, progress=False
        ),
    ),
    Case(
        "duplicate gene names (pseudobulk)",
        "adata.var_names",
        "duplicate gene names",
        lambda d: pseudobulk(_first_gene_twice(d.cells)),
    ),
    Case(
        "duplicate gene names (bulk)",
        "bulk_adata.var_names",
        "duplicate gene names",
        lambda d: _model(d).embed_bulk(_first_gene_twice(d.bulk)),
    ),
    Case(
        "duplicate gene names (drug profiles)",
        "adata.var_names",
        "duplicate gene names",
        lambda d: bird.drug_profiles(_first_gene_twice(d.screen)),
    ),
    Case(
        "duplicate drug names",
        "smiles.index",
        "'a'",
        lambda d: bird.morgan_embedding(pd.Series(["CCO", "CC"], index=["a", "a"])),
    ),
    # cell types and the ontology
    Case(
        "unknown cell-type label",
        "adata.obs['cell_type']",
        "alien cell",
        lambda d: sample_similarity(_relabel_first(d.cells, "cell_type", "alien cell"), k=5),
    ),
    Case(
        "unknown label (map_labels)",
        "labels",
        "alien cell",
        lambda d: ontology.map_labels(["T cell", "alien cell"], ontology.load_cell_ontology()),
    ),
    Case(
        "unknown ontology id",
        "terms",
        "CL:9999999",
        lambda d: ontology.prune(ontology.load_cell_ontology(), ["CL:9999999"]),
    ),
    Case(
        "cell without a cell type",
        "adata.obs['cell_type']",
        "NaN",
        lambda d: ontology.compositions(_relabel_first(d.cells, "cell_type", None)),
    ),
    # phenotype labels and cohorts
    Case(
        "one phenotype class",
        "bulk.obs['phenotype']",
        "single class",
        lambda d: _model(d).finetune(
            _set_obs(d.bulk, "phenotype", 1), d.cells, ONE_EPOCH, progress=False
        ),
    ),
    Case(
        "text phenotype labels",
        "bulk.obs['phenotype']",
        "'yes'",
        lambda d: _model(d).finetune(_yes_no(d.bulk), d.cells, ONE_EPOCH, progress=False),
    ),
    Case(
        "one cohort for leave-one-cohort-out",
        "cohort_key",
        "cohort0",
        lambda d: evaluate_phenotype(_model(d), _one_cohort(d.bulk), d.cells, ONE_EPOCH, n_boot=10),
    ),
    Case(
        "one group for leave-one-group-out",
        "groups",
        "two or more groups",
        lambda d: leave_one_group_out(["cohort0"] * 4),
    ),
    # genes shared with the encoder
    Case(
        "bulk genes do not overlap the encoder",
        "bulk_adata.var_names",
        "no gene in common",
        lambda d: _model(d).embed_bulk(_other_genes(d.bulk)),
    ),
    Case(
        "cells lack the stand-in's genes",
        "adata.var_names",
        "missing",
        _standin_on_other_genes,
    ),
    # obsm
    Case(
        "cell embedding of the wrong width",
        "cells",
        "3 dimensions",
        lambda d: _model(d).embed_cells(_set_obsm(d.cells, "X_pca", np.zeros((d.cells.n_obs, 3)))),
    ),
    Case(
        "cell embedding without columns",
        "adata.obsm['X_pca']",
        "(360, 0)",
        lambda d: encoders.cell_embeddings(
            _set_obsm(d.cells, "X_pca", np.zeros((d.cells.n_obs, 0))), obsm_key="X_pca"
        ),
    ),
    Case(
        "atlas without the embedding",
        "obsm_key",
        "X_pca",
        lambda d: _model(d).finetune(d.bulk.copy(), _no_obsm(d.cells), ONE_EPOCH, progress=False),
    ),
    Case(
        "aligner query of the wrong width",
        "cells.obsm['X_pca']",
        "4 columns",
        lambda d: bird.Aligner.load(d.aligner).transform(
            anndata.AnnData(obsm={"X_pca": np.zeros((3, 5))})
        ),
    ),
    # obs columns
    Case(
        "missing sample column",
        "adata.obs",
        "patient",
        lambda d: sample_similarity(d.cells, sample_key="patient", k=5),
    ),
    Case(
        "missing label column",
        "label_key",
        "response",
        lambda d: _model(d).finetune(
            d.bulk.copy(), d.cells, PhenotypeConfig(label_key="response"), progress=False
        ),
    ),
    Case(
        "missing control column",
        "obs",
        "control",
        lambda d: bird.differential_response(
            _drop_obs(d.screen, "control"), reference_lines=["line0"]
        ),
    ),
    Case(
        "control column of text",
        "adata.obs['control']",
        "boolean",
        lambda d: bird.drug_profiles(_control_as_text(d.screen)),
    ),
    # SMILES
    Case(
        "SMILES that do not parse (Morgan)",
        "smiles",
        "C1CC",
        lambda d: bird.morgan_embedding(pd.Series({"a": "C1CC", "b": "CCO"})),
    ),
    Case(
        "SMILES that do not parse (ADMET-AI)",
        "smiles",
        "C1CC",
        lambda d: bird.admet_embedding(pd.Series({"a": "CCO", "b": "C1CC"})),
    ),
    Case(
        "missing SMILES",
        "smiles",
        "without a SMILES",
        lambda d: bird.morgan_embedding(pd.Series({"a": None, "b": "CCO"})),
    ),
    # checkpoints
    Case(
        "truncated config.json",
        "checkpoint",
        "not valid JSON",
        lambda d: _load_poppy(d, "cut-config", _truncate("config.json", 40)),
    ),
    Case(
        "truncated weights",
        "checkpoint",
        "SHA-256",
        lambda d: _load_poppy(d, "cut-weights", _truncate("model.safetensors", 100)),
    ),
    Case(
        "weights file missing",
        "checkpoint",
        "not found",
        lambda d: _load_poppy(d, "no-weights", lambda p: (p / "model.safetensors").unlink()),
    ),
    Case(
        "unknown training-history field",
        "checkpoint",
        "does not match its config",
        lambda d: _load_poppy(d, "history", _edit_config(lambda m: m["history"].update(extra=1))),
    ),
    Case(
        "cell_dim not a number",
        "checkpoint",
        "'x'",
        lambda d: _load_poppy(d, "cell-dim", _edit_config(lambda m: m.update(cell_dim="x"))),
    ),
    Case(
        "token encoder record edited",
        "checkpoint",
        "'genes'",
        lambda d: _load_poppy(d, "tokens", _edit_config(lambda m: m["token_encoder"].pop("genes"))),
    ),
    Case(
        "embedding_dim edited",
        "checkpoint",
        "size mismatch",
        lambda d: _load_poppy(
            d, "dim", _edit_config(lambda m: m["config"].update(embedding_dim=64))
        ),
    ),
    Case(
        "phenotype history removed",
        "checkpoint",
        "phenotype head does not match",
        lambda d: POPPY.load(
            _tampered(
                d, d.finetuned, "ft-history", _edit_config(lambda m: m["phenotype"].pop("history"))
            )
        ),
    ),
    Case(
        "aligner lines removed",
        "checkpoint",
        "'lines'",
        lambda d: _load_aligner(d, "lines", _edit_config(lambda m: m.pop("lines"))),
    ),
    Case(
        "aligner drug_scale not a number",
        "checkpoint",
        "'big'",
        lambda d: _load_aligner(d, "scale", _edit_config(lambda m: m.update(drug_scale="big"))),
    ),
    Case(
        "aligner input width edited",
        "checkpoint",
        "size mismatch",
        lambda d: _load_aligner(d, "d-in", _edit_config(lambda m: m.update(d_in=7))),
    ),
    Case(
        "aligner weights changed",
        "checkpoint",
        "SHA-256",
        lambda d: _load_aligner(d, "zeroed", _zero_tail),
    ),
    # optimal transport
    Case(
        "negative marginal",
        "a",
        ">= 0",
        lambda d: ot.sinkhorn(COST, [1.2, -0.2, 0.0], [0.5, 0.5], eps=0.1),
    ),
    Case(
        "marginal not summing to 1",
        "a",
        "sums to 1.5",
        lambda d: ot.sinkhorn(COST, [0.5, 0.5, 0.5], [0.5, 0.5], eps=0.1),
    ),
    Case(
        "negative drug marginal (potentials)",
        "b",
        ">= 0",
        lambda d: ot.sinkhorn_potentials(COST, [1 / 3] * 3, [1.5, -0.5], eps=0.1),
    ),
    Case(
        "NaN cost",
        "cost",
        "NaN",
        lambda d: ot.ot_alignment_loss(COST.clone().fill_(torch.nan), [0, 1, 1], eps=0.1),
    ),
    Case(
        "negative cell count",
        "counts",
        "-1",
        lambda d: ot.marginals_from_counts([3, -1]),
    ),
    Case(
        "unbalanced signals (graph W1)",
        "signals",
        "same total mass",
        lambda d: ot.graph_emd(np.array([0.5, 0.6, 0.0]), np.array([0.0, 0.0, 1.0]), graph=STAR),
    ),
    Case(
        "NaN distances",
        "D",
        "NaN",
        lambda d: ot.diffusion_kernel(np.array([[0.0, np.nan], [np.nan, 0.0]])),
    ),
    # BiRD signatures and embeddings
    Case(
        "overlapping treated and control rows",
        "rows",
        "more than one group",
        lambda d: bird.compare_rows(X10, [np.array([0, 1, 2])], np.array([2, 3, 4])),
    ),
    Case(
        "signature given as a string",
        "signatures",
        "'a'",
        lambda d: bird.jaccard_similarity({"a": "GENE1", "b": ["GENE2"]}),
    ),
    Case(
        "drug without a signature",
        "drugs",
        "'zz'",
        lambda d: bird.jaccard_similarity({"a": ["g1"], "b": ["g2"]}, drugs=["a", "zz"]),
    ),
    Case(
        "asymmetric similarity",
        "S",
        "not symmetric",
        lambda d: bird.spectral_embedding(
            _similarity([[1, 0.9, 0], [0.1, 1, 0], [0, 0, 1]]), n_components=2
        ),
    ),
    Case(
        "NaN similarity",
        "S",
        "non-finite",
        lambda d: bird.spectral_embedding(
            _similarity([[1, np.nan, 0], [np.nan, 1, 0], [0, 0, 1]]), n_components=2
        ),
    ),
    Case(
        "similarity not square",
        "S",
        "not square",
        lambda d: bird.spectral_embedding(_similarity([[1, 0.9, 0], [0.9, 1, 0]]), n_components=2),
    ),
    Case(
        "similarity of one drug",
        "S",
        "fewer than 2 drugs",
        lambda d: bird.spectral_embedding(_similarity([[1.0]], ["a"]), n_components=2),
    ),
    # metrics with mismatched lengths
    Case(
        "labels shorter than the embedding",
        "labels",
        "8 entries",
        lambda d: metrics.silhouette_label(X10, np.array([0, 1] * 4)),
    ),
    Case(
        "scores shorter than the labels",
        "y_score",
        "3 entries",
        lambda d: metrics.auroc_with_ci([0, 1, 0, 1], [0.1, 0.2, 0.3], n_boot=10),
    ),
    Case(
        "query and reference of different sizes",
        "reference",
        "(8, 3)",
        lambda d: metrics.recall_at_k(X10, X10[:8], k=1),
    ),
    Case(
        "truth distances of another size",
        "truth_distances",
        "(8, 8)",
        lambda d: metrics.distance_correlation(X10, np.zeros((8, 8))),
    ),
    Case(
        "batch labels shorter than the embedding",
        "batch",
        "8 entries",
        lambda d: metrics.batch_silhouette(X10, np.array([0, 1] * 4)),
    ),
    Case(
        "sample per cell missing",
        "samples",
        "8 entries",
        lambda d: metrics.label_enrichment(X10, np.arange(8), np.zeros(8), k=2),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gives_one_line_input_error_naming_the_field(data: Data, case: Case) -> None:
    with pytest.raises(InputError) as caught:
        case.call(data)
    error = caught.value
    message = str(error)
    assert error.field == case.field, (case.name, message)
    assert message.startswith(f"{case.field}: "), message
    assert case.needle in message, (case.needle, message)
    assert "\n" not in message, message


def test_the_table_has_at_least_25_distinct_cases() -> None:
    assert len(CASES) >= 25
    assert len({case.name for case in CASES}) == len(CASES)
