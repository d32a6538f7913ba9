"""Frozen cell/bulk embedding sources: obsm passthrough and the PCA stand-in (POPPY §2.2.1)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.decomposition import PCA

from cellbridge.encoders import bulk_embeddings, cell_embeddings, log_normalised
from cellbridge.errors import InputError


def _counts(n_cells: int = 60, n_genes: int = 40, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    X = rng.poisson(rng.gamma(2.0, 2.0, size=(1, n_genes)), size=(n_cells, n_genes))
    X[:, 0] += 1  # no empty cells
    return ad.AnnData(
        X.astype(np.float32),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]),
    )


def _scanpy_lognorm(adata: ad.AnnData) -> np.ndarray:
    ref = adata.copy()
    ref.X = np.asarray(ref.X, dtype=np.float64)
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    return np.asarray(ref.X)


def _same_up_to_sign(a: np.ndarray, b: np.ndarray) -> None:
    signs = np.sign(np.sum(a * b, axis=0))
    np.testing.assert_allclose(a, b * signs, rtol=1e-6, atol=1e-8)


def test_counts_are_log_normalised_like_scanpy() -> None:
    adata = _counts()
    np.testing.assert_allclose(log_normalised(adata), _scanpy_lognorm(adata), rtol=1e-10)
    sparse = adata.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    out = log_normalised(sparse)
    assert sp.issparse(out)
    np.testing.assert_allclose(out.toarray(), _scanpy_lognorm(adata), rtol=1e-10)


def test_log_normalised_input_is_detected_and_kept() -> None:
    adata = _counts()
    logged = adata.copy()
    logged.X = _scanpy_lognorm(adata)
    assert log_normalised(logged) is logged.X
    marked = adata.copy()
    marked.uns["log1p"] = {"base": None}
    assert log_normalised(marked) is marked.X  # scanpy's mark wins, even on integer values


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.array([[1.5, 80.0], [2.0, 3.0]]), "neither counts nor log-normalised"),
        (np.array([[-1.0, 2.0], [2.0, 3.0]]), "negative"),
        (np.array([[np.nan, 2.0], [2.0, 3.0]]), "NaN"),
        (np.array([[0.0, 0.0], [2.0, 3.0]]), "zero total counts"),
    ],
)
def test_log_normalised_refuses_bad_expression(values: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        log_normalised(ad.AnnData(values))


def test_pca_stand_in_equals_sklearn_on_the_normalised_matrix() -> None:
    adata = _counts()
    embedding, source = cell_embeddings(adata, n_pcs=5, seed=0)
    reference = PCA(n_components=5, svd_solver="full").fit_transform(_scanpy_lognorm(adata))
    assert embedding.shape == (60, 5)
    _same_up_to_sign(embedding, reference)
    assert "PCA stand-in (5 PCs of log-normalised expression)" in source
    assert "not a foundation-model embedding" in source


def test_pca_stand_in_on_sparse_counts_matches_dense() -> None:
    adata = _counts()
    dense, _ = cell_embeddings(adata, n_pcs=5, seed=0)
    adata.X = sp.csr_matrix(adata.X)
    sparse, _ = cell_embeddings(adata, n_pcs=5, seed=0)
    _same_up_to_sign(sparse, dense)


def test_pca_stand_in_is_deterministic_and_uses_layer() -> None:
    adata = _counts()
    adata.layers["counts"] = adata.X.copy()
    adata.X = np.zeros_like(adata.X)
    a, _ = cell_embeddings(adata, n_pcs=4, layer="counts", seed=3)
    b, _ = cell_embeddings(adata, n_pcs=4, layer="counts", seed=3)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="layers"):
        cell_embeddings(adata, layer="missing")


@pytest.mark.parametrize("n_pcs", [0, 40, 2.5, True])
def test_pca_stand_in_refuses_bad_n_pcs(n_pcs: int) -> None:
    with pytest.raises(InputError, match="n_pcs"):
        cell_embeddings(_counts(), n_pcs=n_pcs)


@pytest.mark.parametrize("key", ["X_scGPT", "embeddings", "X_bmfm", "X_scVI"])
def test_obsm_key_returns_the_exact_array(key: str) -> None:
    adata = _counts()
    stored = np.random.default_rng(1).normal(size=(adata.n_obs, 7)).astype(np.float32)
    adata.obsm[key] = stored
    embedding, source = cell_embeddings(adata, obsm_key=key)
    np.testing.assert_array_equal(embedding, stored)
    assert embedding.dtype == stored.dtype
    assert source == f"obsm[{key!r}]"
    bulk, bulk_source = bulk_embeddings(adata, obsm_key=key)
    np.testing.assert_array_equal(bulk, stored)
    assert bulk_source == source


def test_obsm_key_errors_name_the_keys_and_bad_values() -> None:
    adata = _counts()
    adata.obsm["X_pca"] = np.zeros((adata.n_obs, 2))
    with pytest.raises(InputError, match="X_pca") as info:
        cell_embeddings(adata, obsm_key="X_scGPT")
    assert info.value.field == "obsm_key"
    with pytest.raises(InputError, match=r"not in adata\.obsm"):
        bulk_embeddings(adata, obsm_key="X_bulkformer")
    bad = np.ones((adata.n_obs, 3))
    bad[2, 1] = np.inf
    adata.obsm["X_fm"] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        cell_embeddings(adata, obsm_key="X_fm")
    adata.obsm["X_sparse"] = sp.csr_matrix(np.ones((adata.n_obs, 3)))
    with pytest.raises(InputError, match="sparse"):
        cell_embeddings(adata, obsm_key="X_sparse")
