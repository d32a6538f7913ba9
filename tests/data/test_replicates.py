"""Pseudo-bulk replicates (BiRD A.1) against a direct NumPy implementation of the same draws."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from cellbridge.data.perturbation import perturbation_screen
from cellbridge.data.replicates import pseudobulk_replicates
from cellbridge.errors import InputError


def _cells(seed: int = 0) -> AnnData:
    """Three drugs x two lines with unequal cell numbers, rows shuffled, raw counts."""
    rng = np.random.default_rng(seed)
    sizes = {("b", "L1"): 9, ("a", "L2"): 5, ("a", "L1"): 12, ("c", "L2"): 7, ("b", "L2"): 3}
    obs = pd.DataFrame(
        [(d, c, "ctrl" if d == "a" else "drug") for (d, c), n in sizes.items() for _ in range(n)],
        columns=["drug", "cell_line", "kind"],
    )
    obs["plate"] = rng.choice(["p0", "p1"], size=len(obs))
    obs = obs.iloc[rng.permutation(len(obs))].reset_index(drop=True)
    obs.index = [f"cell{i}" for i in range(len(obs))]
    X = rng.poisson(rng.uniform(0.1, 4.0, size=(len(obs), 15))).astype(np.float64)
    return AnnData(X=sp.csr_matrix(X), obs=obs)


def _oracle(
    X: np.ndarray,
    obs: pd.DataFrame,
    n_cells: int,
    n_replicates: int,
    seed: int,
    keep: np.ndarray | None = None,
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The documented draw order, written directly: sorted conditions, kept cells in row order."""
    keep = np.ones(len(obs), dtype=bool) if keep is None else keep
    pairs = sorted(set(zip(obs["drug"].astype(str), obs["cell_line"].astype(str), strict=True)))
    rng = np.random.default_rng(seed)
    names, blocks = [], []
    for drug, line in pairs:
        rows = np.flatnonzero(
            (obs["drug"].astype(str) == drug).to_numpy()
            & (obs["cell_line"].astype(str) == line).to_numpy()
            & keep
        )
        if rows.size == 0:
            continue
        draws = rng.integers(0, rows.size, size=(n_replicates, n_cells))
        blocks.append(X[rows[draws]].mean(axis=1))
        names.append((drug, line))
    return names, np.vstack(blocks)


def test_replicates_match_a_direct_numpy_implementation() -> None:
    adata = _cells()
    out = pseudobulk_replicates(adata, n_cells=20, n_replicates=4, seed=3)
    names, expected = _oracle(adata.X.toarray(), adata.obs, 20, 4, 3)
    np.testing.assert_allclose(out.X, expected, rtol=1e-12, atol=1e-12)
    assert out.X.dtype == np.float64
    assert list(zip(out.obs["drug"], out.obs["cell_line"], strict=True))[::4] == names
    assert out.obs["replicate"].tolist() == [0, 1, 2, 3] * len(names)
    assert out.obs_names[0] == "a|L1|0"
    sizes = out.obs.groupby(["drug", "cell_line"], observed=True)["n_source_cells"].first()
    assert sizes.to_dict() == {
        ("a", "L1"): 12,
        ("a", "L2"): 5,
        ("b", "L1"): 9,
        ("b", "L2"): 3,
        ("c", "L2"): 7,
    }
    # a dense matrix gives the same numbers; float32 input stays float32
    dense = pseudobulk_replicates(
        AnnData(X=adata.X.toarray(), obs=adata.obs), n_cells=20, n_replicates=4, seed=3
    )
    np.testing.assert_allclose(dense.X, out.X, rtol=1e-12)
    single = pseudobulk_replicates(
        AnnData(X=adata.X.astype(np.float32), obs=adata.obs), n_cells=20, n_replicates=4, seed=3
    )
    assert single.X.dtype == np.float32
    np.testing.assert_allclose(single.X, out.X, rtol=1e-6)
    again = pseudobulk_replicates(adata, n_cells=20, n_replicates=4, seed=3)
    np.testing.assert_array_equal(again.X, out.X)
    assert not np.array_equal(pseudobulk_replicates(adata, n_cells=20, n_replicates=4).X, out.X)


def test_constant_obs_columns_are_carried_and_varying_ones_are_not() -> None:
    adata = _cells()
    adata.obs["kind"] = adata.obs["kind"].astype("category")
    adata.obs["replicate"] = "same everywhere"
    out = pseudobulk_replicates(adata, n_cells=5, n_replicates=2, progress=True)
    assert "plate" not in out.obs
    assert out.obs["replicate"].tolist() == [0, 1] * 5
    assert out.obs["kind"].dtype == adata.obs["kind"].dtype
    assert (out.obs["kind"] == np.where(out.obs["drug"] == "a", "ctrl", "drug")).all()
    assert out.uns["cellbridge"]["n_cells"] == 5


def test_low_count_cells_are_dropped_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    adata = _cells()
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    threshold = float(np.quantile(totals, 0.3))
    keep = totals >= threshold
    with caplog.at_level(logging.INFO, logger="cellbridge.data.replicates"):
        out = pseudobulk_replicates(
            adata, n_cells=10, n_replicates=3, min_counts=threshold, seed=1, drop_empty=True
        )
    _, expected = _oracle(adata.X.toarray(), adata.obs, 10, 3, 1, keep=keep)
    np.testing.assert_allclose(out.X, expected, rtol=1e-12)
    table = out.uns["cellbridge"]["conditions"].set_index(["drug", "cell_line"])
    counted = adata.obs.assign(dropped=~keep).groupby(["drug", "cell_line"])["dropped"].sum()
    assert table["n_cells_dropped"].to_dict() == counted.to_dict()
    assert (table["n_cells_kept"] + table["n_cells_dropped"] == table["n_cells_total"]).all()
    assert f"dropped {int((~keep).sum())} of {len(keep)} cells" in caplog.text
    assert out.uns["cellbridge"]["min_counts"] == threshold


def test_a_condition_left_empty_is_refused_or_dropped_on_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adata = _cells()
    # every cell of (b, L2) gets a tiny total; every other cell a large one
    rows = ((adata.obs["drug"] == "b") & (adata.obs["cell_line"] == "L2")).to_numpy()
    X = adata.X.toarray()
    X[rows] = 0.0
    X[rows, 0] = 1.0
    X[~rows, 0] += 100.0
    adata.X = sp.csr_matrix(X)
    with pytest.raises(InputError, match="no cell with total counts >= 50") as err:
        pseudobulk_replicates(adata, n_cells=4, n_replicates=2, min_counts=50)
    assert err.value.values == ["b|L2"]
    with caplog.at_level(logging.WARNING, logger="cellbridge.data.replicates"):
        out = pseudobulk_replicates(
            adata, n_cells=4, n_replicates=2, min_counts=50, drop_empty=True
        )
    assert "dropped 1 conditions with no cells left: b|L2 (3)" in caplog.text
    assert ("b", "L2") not in set(zip(out.obs["drug"], out.obs["cell_line"], strict=True))
    table = out.uns["cellbridge"]["conditions"]
    assert table.loc[~table["kept"], ["drug", "cell_line"]].values.tolist() == [["b", "L2"]]
    _, expected = _oracle(X, adata.obs, 4, 2, 0, keep=X.sum(axis=1) >= 50)
    np.testing.assert_allclose(out.X, expected, rtol=1e-12)


def test_average_one_layer_and_filter_on_the_counts_of_another(tmp_path: Path) -> None:
    adata = _cells()
    counts = adata.X.toarray()
    adata.layers["counts"] = adata.X.copy()
    logged = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    adata.X = logged
    out = pseudobulk_replicates(
        adata,
        n_cells=6,
        n_replicates=2,
        min_counts=20,
        counts_layer="counts",
        drop_empty=True,
        seed=4,
    )
    _, expected = _oracle(logged, adata.obs, 6, 2, 4, keep=counts.sum(axis=1) >= 20)
    np.testing.assert_allclose(out.X, expected, rtol=1e-12)
    with_layer = pseudobulk_replicates(adata, layer="counts", n_cells=6, n_replicates=2)
    np.testing.assert_allclose(with_layer.X, _oracle(counts, adata.obs, 6, 2, 0)[1], rtol=1e-12)
    # the record of what was dropped survives a round trip through h5ad
    out.write_h5ad(tmp_path / "replicates.h5ad")
    back = anndata.read_h5ad(tmp_path / "replicates.h5ad")
    table = back.uns["cellbridge"]["conditions"]
    assert (
        table["n_cells_dropped"].tolist()
        == out.uns["cellbridge"]["conditions"]["n_cells_dropped"].tolist()
    )


def test_sparse_input_is_never_densified_whole() -> None:
    rng = np.random.default_rng(0)
    n_obs, n_vars = 20_000, 5_000  # dense float64 would take 800 MB
    X = sp.random(n_obs, n_vars, density=0.0005, format="csr", random_state=rng) * 10
    obs = pd.DataFrame(
        {"drug": rng.choice(["d0", "d1"], n_obs), "cell_line": rng.choice(["L0", "L1"], n_obs)},
        index=[f"c{i}" for i in range(n_obs)],
    )
    adata = AnnData(X=X.astype(np.float32), obs=obs)
    tracemalloc.start()
    try:
        out = pseudobulk_replicates(adata, n_cells=200, n_replicates=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (4 * 3, n_vars)
    assert peak < 60e6


def test_replicates_of_the_simulated_screen() -> None:
    cells, _ = perturbation_screen(
        n_cell_lines=2, n_drugs=3, n_plates=2, cells_per_condition=10, n_genes=50, seed=0
    )
    out = pseudobulk_replicates(cells, n_cells=30, n_replicates=5)
    assert out.n_obs == 2 * 4 * 5
    assert {"control", "atc", "smiles", "drugbank_id"} <= set(out.obs.columns)
    assert (out.obs["n_source_cells"] == 20).all()
    assert "SIMULATED" in out.uns["cellbridge"]["provenance"]


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"drug_key": "compound"}, "drug_key", "compound"),
        ({"cell_line_key": "line"}, "cell_line_key", "line"),
        ({"n_cells": 0}, "n_cells", 0),
        ({"n_replicates": 2.5}, "n_replicates", 2.5),
        ({"min_counts": -1}, "min_counts", -1),
        ({"layer": "counts"}, "layer", "counts"),
        ({"min_counts": 1, "counts_layer": "raw"}, "counts_layer", "raw"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], field: str, value: object) -> None:
    with pytest.raises(InputError) as err:
        pseudobulk_replicates(_cells(), **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
    assert value in err.value.values


def test_bad_data_is_refused() -> None:
    adata = _cells()
    adata.obs.loc["cell3", "drug"] = None
    with pytest.raises(InputError, match="1 cells without a value") as err:
        pseudobulk_replicates(adata)
    assert err.value.values == ["cell3"]
    adata = _cells()
    X = adata.X.toarray()
    X[2, 3] = np.nan
    with pytest.raises(InputError, match="1 NaN or infinite values"):
        pseudobulk_replicates(AnnData(X=X, obs=adata.obs))
    X[2, 3] = -2.0
    with pytest.raises(InputError, match="negative values") as err:
        pseudobulk_replicates(AnnData(X=X, obs=adata.obs), min_counts=1)
    assert err.value.values == [-2.0]
    adata = _cells()
    adata.obs_names = ["same"] * adata.n_obs
    with pytest.raises(InputError, match="duplicate cell names"):
        pseudobulk_replicates(adata)
