"""Program membership (POPPY A.1) against a per-column numpy oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.errors import InputError
from cellbridge.ontology import assign_programs, is_program_node, nmf_programs, program_node_id


def _loadings(seed: int, n_cells: int = 40, n_programs: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n_cells, n_programs))
    return pd.DataFrame(
        values,
        index=[f"cell{i}" for i in range(n_cells)],
        columns=[f"MP{j}" for j in range(n_programs)],
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**16),
    n_cells=st.integers(1, 60),
    quantile=st.floats(0.01, 0.99),
)
def test_matches_quantile_oracle(seed: int, n_cells: int, quantile: float) -> None:
    loadings = _loadings(seed, n_cells)
    # Ties make the strict inequality matter.
    loadings.iloc[: n_cells // 3, 0] = 0.5
    member = assign_programs(loadings, quantile=quantile)
    assert member.index.equals(loadings.index) and member.columns.equals(loadings.columns)
    for program in loadings.columns:
        column = loadings[program].to_numpy()
        expected = [x > 0 and x > np.quantile(column, quantile) for x in column]
        assert member[program].tolist() == expected


def test_default_is_the_75th_percentile() -> None:
    loadings = pd.DataFrame({"MP1": [1.0, 2.0, 3.0, 4.0, 5.0]}, index=list("abcde"))
    # np.quantile(..., 0.75) = 4.0; only 5.0 is strictly greater.
    assert assign_programs(loadings)["MP1"].tolist() == [False] * 4 + [True]


def test_non_positive_loadings_never_belong() -> None:
    loadings = pd.DataFrame({"MP1": [-4.0, -3.0, -2.0, -1.0, 0.0]}, index=list("abcde"))
    assert not assign_programs(loadings, quantile=0.1)["MP1"].any()


def test_all_tied_means_nobody() -> None:
    loadings = pd.DataFrame({"MP1": [1.0] * 4}, index=list("abcd"))
    assert not assign_programs(loadings)["MP1"].any()


@pytest.mark.parametrize("quantile", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_quantile_outside_unit_interval(quantile: float) -> None:
    with pytest.raises(InputError, match="quantile"):
        assign_programs(_loadings(0), quantile=quantile)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_loadings_are_named(bad: float) -> None:
    loadings = _loadings(0)
    loadings.loc["cell7", "MP2"] = bad
    with pytest.raises(InputError, match=r"\('cell7', 'MP2'\)"):
        assign_programs(loadings)


def test_bad_frames() -> None:
    with pytest.raises(InputError, match="non-empty"):
        assign_programs(pd.DataFrame())
    dup = _loadings(0)
    dup.columns = ["MP0", "MP0", "MP1"]
    with pytest.raises(InputError, match="MP0"):
        assign_programs(dup)
    text = _loadings(0).assign(MP9="high")
    with pytest.raises(InputError, match="MP9"):
        assign_programs(text)


def test_program_node_id() -> None:
    node = program_node_id("CL:0000236", "MP1")
    assert node == "CL:0000236/program:MP1"
    assert is_program_node(node) and not is_program_node("CL:0000236")
    with pytest.raises(InputError, match="''"):
        program_node_id("CL:0000236", "")
    with pytest.raises(InputError, match="program:MP1"):
        program_node_id(node, "MP1")


def _planted(seed: int = 0) -> tuple[AnnData, np.ndarray]:
    """Counts where half the cells express gene block A, the other half block B."""
    rng = np.random.default_rng(seed)
    n, genes = 80, 40
    group = np.repeat([0, 1], n // 2)
    rate = np.full((n, genes), 0.5)
    rate[group == 0, :20] = 20.0
    rate[group == 1, 20:] = 20.0
    X = rng.poisson(rate).astype(np.float32)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n)])
    return AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(genes)])), group


def test_nmf_programs_match_sklearn_and_recover_planted_programs() -> None:
    from sklearn.decomposition import NMF

    adata, group = _planted()
    W = nmf_programs(adata, n_programs=2, seed=3)
    assert list(W.columns) == ["NMF1", "NMF2"] and list(W.index) == list(adata.obs_names)
    X = np.log1p(adata.X / adata.X.sum(axis=1, keepdims=True) * 1e4)
    oracle = NMF(2, init="nndsvda", random_state=3, max_iter=500, tol=1e-3).fit_transform(X)
    np.testing.assert_allclose(W.to_numpy(), oracle, rtol=1e-5, atol=1e-6)
    member = assign_programs(W)
    # each program's members are cells of one planted group only
    for program in member.columns:
        groups = set(group[member[program].to_numpy()])
        assert len(groups) == 1, (program, groups)
    assert member.any(axis=0).all()


@pytest.mark.parametrize("n_programs", [0, 40, 2.0, True])
def test_nmf_programs_refuse_bad_counts_of_programs(n_programs: object) -> None:
    adata, _ = _planted()
    with pytest.raises(InputError, match="n_programs"):
        nmf_programs(adata, n_programs=n_programs)  # type: ignore[arg-type]


def test_nmf_programs_refuse_scaled_expression() -> None:
    adata, _ = _planted()
    adata.X = adata.X - adata.X.mean(axis=0)
    with pytest.raises(InputError, match=r"adata\.X"):
        nmf_programs(adata, n_programs=2)
