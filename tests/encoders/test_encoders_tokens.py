"""Gene tokens H = x_g e_g (POPPY §2.2.2), their reference gene table, and gene alignment."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.decomposition import PCA

from cellbridge.encoders import GeneTokenEncoder, ScaledGeneEmbeddings, align_genes
from cellbridge.errors import InputError


def _table(genes: list[str], dim: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(len(genes), dim)), index=genes)


def _bulk(genes: list[str], n: int = 4, seed: int = 1) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    return ad.AnnData(
        np.log1p(rng.gamma(2.0, 50.0, size=(n, len(genes)))),
        obs=pd.DataFrame(index=[f"s{i}" for i in range(n)]),
        var=pd.DataFrame(index=genes),
    )


def test_tokens_equal_expression_times_embedding() -> None:
    genes = ["A", "B", "C", "D"]
    encoder = ScaledGeneEmbeddings(_table(genes))
    assert isinstance(encoder, GeneTokenEncoder)
    assert encoder.genes == genes
    assert encoder.dim == 3
    expression = np.random.default_rng(2).random((5, 4))
    H = encoder.tokens(expression)
    assert H.shape == (5, 4, 3)
    for s in range(5):
        for g in range(4):
            np.testing.assert_allclose(
                H[s, g], np.float32(expression[s, g]) * encoder.table[g], rtol=1e-6
            )
    with pytest.raises(ValueError, match="read-only"):
        encoder.table[0, 0] = 1.0


def test_tokens_refuse_misaligned_or_nonfinite_expression() -> None:
    encoder = ScaledGeneEmbeddings(_table(["A", "B"]))
    with pytest.raises(InputError, match="aligned"):
        encoder.tokens(np.ones((3, 5)))
    with pytest.raises(InputError, match="NaN"):
        encoder.tokens(np.array([[1.0, np.nan]]))


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (pd.DataFrame(np.ones((2, 2)), index=["A", "A"]), "duplicate"),
        (pd.DataFrame(np.ones((0, 2))), "empty"),
        (pd.DataFrame([[1.0, np.inf]], index=["A"]), "NaN or infinite"),
        (np.ones((2, 2)), "DataFrame"),
    ],
)
def test_gene_table_is_validated(table: pd.DataFrame, match: str) -> None:
    with pytest.raises(InputError, match=match):
        ScaledGeneEmbeddings(table)


def test_from_reference_is_pca_loadings_of_log_normalised_cells() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(50, 30)).astype(np.float32)
    counts[:, 0] += 1
    cells = ad.AnnData(counts, var=pd.DataFrame(index=[f"g{j}" for j in range(30)]))
    encoder = ScaledGeneEmbeddings.from_reference(cells, n_components=6, seed=0)
    reference = cells.copy()
    sc.pp.normalize_total(reference, target_sum=1e4)
    sc.pp.log1p(reference)
    loadings = PCA(n_components=6, svd_solver="full").fit(np.asarray(reference.X, float))
    expected = loadings.components_.T
    signs = np.sign(np.sum(encoder.table * expected, axis=0))
    np.testing.assert_allclose(encoder.table, expected * signs, rtol=1e-4, atol=1e-5)
    assert encoder.genes == list(cells.var_names)
    again = ScaledGeneEmbeddings.from_reference(cells, n_components=6, seed=0)
    np.testing.assert_array_equal(again.table, encoder.table)
    with pytest.raises(InputError, match="n_components"):
        ScaledGeneEmbeddings.from_reference(cells, n_components=30)


def test_align_genes_handles_reordering_and_sparse_input() -> None:
    encoder = ScaledGeneEmbeddings(_table(["A", "B", "C"]))
    bulk = _bulk(["C", "X", "A", "B"])
    matrix, kept = align_genes(bulk, encoder)
    assert kept == ["A", "B", "C"]
    np.testing.assert_array_equal(matrix, bulk[:, ["A", "B", "C"]].X)
    bulk.X = sp.csr_matrix(bulk.X)
    sparse_matrix, _ = align_genes(bulk, encoder)
    np.testing.assert_array_equal(sparse_matrix, matrix)


def test_align_genes_missing_genes(caplog: pytest.LogCaptureFixture) -> None:
    encoder = ScaledGeneEmbeddings(_table(["A", "B", "C", "D"]))
    bulk = _bulk(["B", "D", "Z"])
    with pytest.raises(InputError, match="2 of 4 encoder genes") as info:
        align_genes(bulk, encoder)
    assert info.value.values == ["A", "C"]
    with caplog.at_level(logging.INFO, logger="cellbridge.encoders.tokens"):
        matrix, kept = align_genes(bulk, encoder, fill_missing=True)
    assert kept == ["B", "D"]
    np.testing.assert_array_equal(matrix[:, [0, 2]], 0.0)
    np.testing.assert_array_equal(matrix[:, [1, 3]], bulk[:, ["B", "D"]].X)
    assert "2 of 4 encoder genes filled with 0" in caplog.text
    assert "1 bulk genes have no encoder embedding" in caplog.text


def test_align_genes_refuses_no_overlap_duplicates_and_bad_values() -> None:
    encoder = ScaledGeneEmbeddings(_table(["A", "B"]))
    with pytest.raises(InputError, match="no gene in common"):
        align_genes(_bulk(["X", "Y"]), encoder, fill_missing=True)
    duplicated = _bulk(["A", "B", "C"])
    duplicated.var_names = pd.Index(["A", "B", "A"])
    with pytest.raises(InputError, match="duplicate"):
        align_genes(duplicated, encoder)
    bad = _bulk(["A", "B"])
    bad.X[0, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        align_genes(bad, encoder)
    with pytest.raises(InputError, match="layers"):
        align_genes(_bulk(["A", "B"]), encoder, layer="tpm")


class _Repeated:
    """A gene-token encoder whose gene list repeats a name."""

    genes = ("A", "A")
    dim = 1

    def tokens(self, expression: np.ndarray) -> np.ndarray:
        return expression[:, :, None]


def test_align_genes_refuses_duplicate_encoder_genes() -> None:
    assert isinstance(_Repeated(), GeneTokenEncoder)
    with pytest.raises(InputError, match=r"encoder\.genes"):
        align_genes(_bulk(["A", "B"]), _Repeated())
