"""The expression decomposition targets of stage 2 (cellbridge.poppy.decomposition)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData

from cellbridge.errors import InputError
from cellbridge.poppy.decomposition import expression_decomposition


def _atlas(n_cells: int = 300, n_genes: int = 40, seed: int = 0) -> AnnData:
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.5, 2.0, size=(4, n_genes))
    kind = rng.integers(0, 4, size=n_cells)
    counts = rng.poisson(rates[kind] * rng.lognormal(0, 0.3, size=(n_cells, 1)))
    counts[:, 0] += 1  # no empty cells
    return AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]),
    )


@pytest.mark.parametrize("sparse", [True, False])
def test_a_pseudobulk_is_the_count_weighted_mixture_of_its_cells(sparse: bool) -> None:
    """Summed counts = sum_i (t_i / T) c_i in fractions, and P is affine with weights that
    sum to 1, so the projected bulk equals the same mixture of the projected cells."""
    atlas = _atlas()
    if not sparse:
        atlas.X = np.asarray(atlas.X.toarray())
    genes = list(atlas.var_names[::-1][:30])  # another order and a subset of the genes
    X = np.asarray(sp.csr_matrix(atlas[:, genes].X).toarray(), dtype=np.float64)
    members = [np.arange(0, 50), np.arange(100, 300, 3)]
    bulk = np.stack([X[m].sum(axis=0) for m in members]) * 7.0  # any linear scale
    rows = np.arange(atlas.n_obs)
    dec = expression_decomposition(atlas, bulk, rows, genes, n_components=10, seed=0)
    assert dec.cells.shape == (atlas.n_obs, 10) and dec.bulk.shape == (2, 10)
    totals = X.sum(axis=1)
    for b, m in enumerate(members):
        weights = torch.from_numpy(totals[m] / totals[m].sum()).float()
        mixture = weights @ dec.cells[m]
        torch.testing.assert_close(mixture, dec.bulk[b], rtol=1e-4, atol=1e-4)
        assert float(dec.loss(mixture[None], dec.bulk[b][None])) < 1e-8
    # a wrong mixture is penalised, on the scale of the cells' spread
    uniform = dec.cells[members[0]].mean(dim=0)
    assert float(dec.loss(dec.cells[:1], dec.bulk[1:])) > 0.1
    assert float(dec.loss(uniform[None], dec.bulk[:1])) > 0
    centred = dec.cells - dec.cells.mean(dim=0)
    assert dec.scale == pytest.approx(float((centred**2).sum(dim=1).mean()), rel=1e-4)


def test_a_subset_of_reference_rows_is_used() -> None:
    atlas = _atlas()
    rows = np.arange(0, atlas.n_obs, 2)
    genes = list(atlas.var_names)
    bulk = np.asarray(atlas.X[:5].sum(axis=0))
    dec = expression_decomposition(atlas, bulk, rows, genes, n_components=5)
    assert dec.cells.shape == (rows.size, 5)


@pytest.mark.parametrize(
    ("bulk_value", "cell_change", "match"),
    [
        (np.nan, None, "NaN"),
        (-1.0, None, "negative"),
        (None, "empty", "no expression"),
        (None, "negative", "negative"),
        (None, "missing", "lacks genes"),
    ],
)
def test_bad_input_is_refused(
    bulk_value: float | None, cell_change: str | None, match: str
) -> None:
    atlas = _atlas()
    genes = list(atlas.var_names)
    bulk = np.asarray(atlas.X[:5].sum(axis=0), dtype=np.float64)
    if bulk_value is not None:
        bulk[0, 3] = bulk_value
    if cell_change == "empty":
        atlas.X = sp.csr_matrix(atlas.X.toarray() * (np.arange(atlas.n_obs) != 7)[:, None])
    elif cell_change == "negative":
        dense = atlas.X.toarray()
        dense[2, 2] = -3
        atlas.X = sp.csr_matrix(dense)
    elif cell_change == "missing":
        genes = [*genes, "not-a-gene"]
        bulk = np.hstack([bulk, np.ones((1, 1))])
    with pytest.raises(InputError, match=match):
        expression_decomposition(atlas, bulk, np.arange(atlas.n_obs), genes)
