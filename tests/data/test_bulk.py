"""Bulk constructions against pandas / NumPy oracles and closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData
from scipy import stats

from cellbridge.data.bulk import (
    cancer_normal_tumours,
    log1p_cpm,
    matched_bulk,
    mix_profiles,
    pseudobulk,
    random_tumours,
    stack_profiles,
)
from cellbridge.errors import InputError


def _cells(seed: int = 0, n: int = 120, genes: int = 30) -> AnnData:
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, size=(n, genes)).astype(np.float32)
    obs = pd.DataFrame(
        {"sample": rng.choice(["a", "b", "c", "d"], size=n), "cohort": "x"},
        index=[f"c{i}" for i in range(n)],
    )
    obs["cohort"] = obs["sample"].map({"a": "k1", "b": "k1", "c": "k2", "d": "k2"})
    obs["batch"] = rng.choice(["u", "v"], size=n)  # varies within samples: not carried
    return AnnData(
        X=sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(genes)])
    )


def _profiles(types: list[str], per_type: int = 1, seed: int = 0, genes: int = 25) -> AnnData:
    rng = np.random.default_rng(seed)
    names = [f"{t}|{r}" for t in types for r in range(per_type)]
    obs = pd.DataFrame({"cell_type": [t for t in types for _ in range(per_type)]}, index=names)
    X = rng.gamma(2.0, 50.0, size=(len(names), genes))
    return AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(genes)]))


def _cpm(X: np.ndarray) -> np.ndarray:
    return X / X.sum(axis=1, keepdims=True) * 1e6


def test_pseudobulk_equals_pandas_groupby_sum() -> None:
    cells = _cells()
    pb = pseudobulk(cells)
    expected = pd.DataFrame(cells.X.toarray(), index=cells.obs["sample"]).groupby(level=0).sum()
    np.testing.assert_array_equal(pb.X, expected.loc[pb.obs_names].to_numpy())
    counts = cells.obs["sample"].value_counts()
    assert (pb.obs["n_cells"] == counts.loc[pb.obs_names].to_numpy()).all()
    assert list(pb.obs["cohort"]) == ["k1", "k1", "k2", "k2"]
    assert "batch" not in pb.obs


def test_pseudobulk_normalisations() -> None:
    cells = _cells(1)
    raw = pseudobulk(cells).X
    np.testing.assert_allclose(pseudobulk(cells, normalize="cpm").X, _cpm(raw))
    np.testing.assert_allclose(pseudobulk(cells, normalize="log1p_cpm").X, np.log1p(_cpm(raw)))
    with pytest.raises(InputError, match="normalize"):
        pseudobulk(cells, normalize="tpm")  # type: ignore[arg-type]


def test_pseudobulk_refuses_log_transformed_input() -> None:
    cells = _cells(2)
    logged = cells.copy()
    sc.pp.normalize_total(logged)
    sc.pp.log1p(logged)
    with pytest.raises(InputError, match="log-transformed"):
        pseudobulk(logged)
    del logged.uns["log1p"]  # no mark left: detected from the values
    with pytest.raises(InputError, match="log-transformed"):
        pseudobulk(logged)
    scaled = cells.copy()
    scaled.X = scaled.X * 1000.5  # non-integer, not logged
    with pytest.raises(InputError, match="not integer counts"):
        pseudobulk(scaled)
    assert pseudobulk(scaled, allow_non_integer=True).n_obs == 4


def _edited(kind: str) -> AnnData:
    cells = _cells(3)
    if kind == "negative":
        cells.X.data[0] = -1.0
    elif kind == "nan":
        cells.X.data[0] = np.nan
    elif kind == "empty category":
        cats = ["a", "b", "c", "d", "ghost"]
        cells.obs["sample"] = pd.Categorical(cells.obs["sample"], categories=cats)
    elif kind == "no sample":
        sample = cells.obs["sample"].to_numpy().astype(object)
        sample[0] = None
        cells.obs["sample"] = sample
    elif kind == "duplicate cells":
        cells.obs_names = ["same", *cells.obs_names[1:-1], "same"]
    return cells


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("negative", "negative"),
        ("nan", "NaN"),
        ("empty category", "ghost"),
        ("no sample", "cells without a value"),
        ("duplicate cells", "same"),
    ],
)
def test_pseudobulk_bad_input(kind: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        pseudobulk(_edited(kind))


def test_pseudobulk_min_cells_and_missing_key() -> None:
    cells = _cells(4, n=30)
    with pytest.raises(InputError, match="fewer than 100 cells"):
        pseudobulk(cells, min_cells=100)
    with pytest.raises(InputError, match="donor"):
        pseudobulk(cells, sample_key="donor")


def test_mix_profiles_closed_form_with_one_profile_per_type() -> None:
    profiles = _profiles(["T", "B", "NK"])
    props = pd.DataFrame(
        [[0.5, 0.3, 0.2], [0.0, 0.0, 1.0]], columns=["T", "B", "NK"], index=["s1", "s2"]
    )
    bulk = mix_profiles(profiles, props)
    P = _cpm(profiles.X)  # rows in order T, B, NK
    np.testing.assert_allclose(bulk.X, props.to_numpy() @ P)
    pd.testing.assert_frame_equal(bulk.obsm["proportions"], props)


def test_mix_profiles_resamples_within_types_seeded() -> None:
    profiles = _profiles(["T", "B"], per_type=4)
    props = pd.DataFrame(
        {"T": np.linspace(0, 1, 50), "B": 1 - np.linspace(0, 1, 50)},
        index=[f"s{i}" for i in range(50)],
    )
    a, b = mix_profiles(profiles, props, seed=1), mix_profiles(profiles, props, seed=1)
    np.testing.assert_array_equal(a.X, b.X)
    picks = a.obsm["profile_index"]
    assert picks["T"].nunique() == 4  # every T profile used across 50 samples
    types = profiles.obs["cell_type"].to_numpy()
    assert (types[picks["T"]] == "T").all() and (types[picks["B"]] == "B").all()
    P = _cpm(profiles.X)
    expected = (
        props["T"].to_numpy()[:, None] * P[picks["T"]]
        + props["B"].to_numpy()[:, None] * P[picks["B"]]
    )
    np.testing.assert_allclose(a.X, expected)


@pytest.mark.parametrize(
    ("props", "needle"),
    [
        (pd.DataFrame({"T": [0.7], "B": [0.4]}, index=["s"]), "do not sum to 1"),
        (pd.DataFrame({"T": [1.5], "B": [-0.5]}, index=["s"]), "negative"),
        (pd.DataFrame({"T": [0.5], "Mast": [0.5]}, index=["s"]), "Mast"),
        (pd.DataFrame([[0.5, 0.5]], columns=["T", "T"], index=["s"]), "duplicate"),
    ],
)
def test_mix_profiles_bad_proportions(props: pd.DataFrame, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        mix_profiles(_profiles(["T", "B"]), props)


def test_matched_bulk_renormalises_over_shared_types() -> None:
    profiles = _profiles(["T", "B"])
    comp = pd.DataFrame({"T": [0.3, 0.5], "B": [0.3, 0.5], "Mast": [0.4, 0.0]}, index=["s1", "s2"])
    bulk = matched_bulk(profiles, comp)
    np.testing.assert_allclose(bulk.obsm["proportions"].to_numpy(), [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(bulk.obs["unmatched_fraction"], [0.4, 0.0], atol=1e-12)
    with pytest.raises(InputError, match="no cell type shared"):
        matched_bulk(profiles, pd.DataFrame({"Mast": [1.0]}, index=["s"]))
    with pytest.raises(InputError, match="no cells of a profiled type"):
        matched_bulk(profiles, pd.DataFrame({"T": [0.0], "Mast": [1.0]}, index=["s"]))


def test_random_tumours_are_uniform_on_the_simplex() -> None:
    types = ["A", "B", "C", "D"]
    bulk = random_tumours(_profiles(types), n=1000, seed=5)
    props = bulk.obsm["proportions"].to_numpy()
    np.testing.assert_allclose(props.sum(axis=1), 1.0)
    # Dirichlet(1,...,1) marginals are Beta(1, K-1)
    for k in range(len(types)):
        assert stats.kstest(props[:, k], stats.beta(1, len(types) - 1).cdf).pvalue > 1e-3
    np.testing.assert_allclose(bulk.X, props @ _cpm(_profiles(types).X))


def test_cancer_normal_tumours_recipe() -> None:
    normal_types = [f"N{k}" for k in range(12)]
    normal = _profiles(normal_types, seed=1)
    cancer = _profiles(["lineA", "lineB"], seed=2)
    bulk = cancer_normal_tumours(cancer, normal, n=40, seed=3)
    props = bulk.obsm["proportions"]
    np.testing.assert_allclose(props.sum(axis=1), 1.0)
    f = props["cancer"].to_numpy()
    assert ((f >= 0.2) & (f <= 0.8)).all()
    # nine normal draws without replacement: nine types at (1 - f) / 9 each
    normal_part = props[normal_types].to_numpy()
    assert ((normal_part > 0).sum(axis=1) == 9).all()
    np.testing.assert_allclose(normal_part.max(axis=1), (1 - f) / 9)
    # the expression is exactly what the proportions say, given the cancer line used
    N, C = _cpm(normal.X), _cpm(cancer.X)
    tme = normal_part @ N
    resid = bulk.X - tme
    line = [np.argmin([np.abs(resid[s] - f[s] * C[c]).max() for c in range(2)]) for s in range(40)]
    np.testing.assert_allclose(resid, f[:, None] * C[line], rtol=1e-9, atol=1e-6)


def test_cancer_normal_tumours_bad_input() -> None:
    normal = _profiles([f"N{k}" for k in range(12)])
    other = _profiles(["lineA"], genes=10)
    with pytest.raises(InputError, match="genes differ"):
        cancer_normal_tumours(other, normal)
    with pytest.raises(InputError, match="cancer_fraction"):
        cancer_normal_tumours(_profiles(["lineA"]), normal, cancer_fraction=(0.9, 0.1))
    with pytest.raises(InputError, match="fewer than n_normal"):
        cancer_normal_tumours(_profiles(["lineA"]), _profiles(["N0", "N1"]))


def test_log1p_cpm_matches_scanpy() -> None:
    bulk = _profiles(["a", "b"], per_type=3)
    oracle = bulk.copy()
    sc.pp.normalize_total(oracle, target_sum=1e6)
    sc.pp.log1p(oracle)
    out = log1p_cpm(bulk)
    np.testing.assert_allclose(out.X, oracle.X, rtol=1e-10)
    assert out.uns["cellbridge"]["normalize"] == "log1p_cpm"
    assert bulk.X.max() > 50  # the input is untouched


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_log1p_cpm_refuses_bad_values(bad: float) -> None:
    bulk = _profiles(["a"], per_type=2)
    bulk.X[1, 3] = bad
    with pytest.raises(InputError, match=r"adata\.X"):
        log1p_cpm(bulk)


def test_log1p_cpm_refuses_log_scale_input() -> None:
    bulk = log1p_cpm(_profiles(["a"], per_type=2))
    bulk.uns["log1p"] = {"base": None}
    with pytest.raises(InputError, match=r"adata\.X"):
        log1p_cpm(bulk)


def test_stack_profiles_names_samples_and_assays() -> None:
    pb = _profiles(["a", "b"])
    pb.obs["cohort"] = ["k1", "k2"]
    isb = _profiles(["a", "b"], seed=1)
    isb.obs["cohort"] = ["k1", "k2"]
    isb.obs["sample"] = ["a|0", "b|0"]
    out = stack_profiles({"pseudobulk": pb, "in-silico": isb})
    assert list(out.obs_names) == [
        "a|0|pseudobulk",
        "b|0|pseudobulk",
        "a|0|in-silico",
        "b|0|in-silico",
    ]
    assert list(out.obs["sample"]) == ["a|0", "b|0", "a|0", "b|0"]
    assert list(out.obs["assay"]) == ["pseudobulk"] * 2 + ["in-silico"] * 2
    assert list(out.obs["cohort"]) == ["k1", "k2", "k1", "k2"]
    np.testing.assert_array_equal(out.X, np.vstack([pb.X, isb.X]))
    assert list(out.var_names) == list(pb.var_names)


def test_stack_profiles_refusals() -> None:
    pb = _profiles(["a", "b"])
    with pytest.raises(InputError, match="profiles"):
        stack_profiles({})
    with pytest.raises(InputError, match=r"profiles\['x'\]\.var_names"):
        stack_profiles({"pb": pb, "x": pb[:, ::-1].copy()})
    one, other = pb[:1].copy(), pb[1:].copy()
    one.obs_names, other.obs_names = ["s|x"], ["s"]
    with pytest.raises(InputError, match="s\\|x\\|y"):
        stack_profiles({"y": one, "x|y": other})  # both would be "s|x|y"
