"""BiRD DE signatures (§2, Algorithm 1 stage 1) against scanpy's rank_genes_groups."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.bird import compare_groups, differential_response
from cellbridge.data import perturbation_screen
from cellbridge.errors import InputError


def _two_groups(seed: int, n: int = 40, m: int = 50, genes: int = 400) -> AnnData:
    rng = np.random.default_rng(seed)
    shift = np.zeros(genes)
    shift[:10] = 1.5  # 10 up-regulated genes
    base = rng.normal(0.5, 0.5, genes)
    X = np.vstack(
        [
            rng.poisson(np.exp(base + shift), size=(n, genes)),
            rng.poisson(np.exp(base), size=(m, genes)),
        ]
    ).astype(np.float32)
    obs = pd.DataFrame(
        {"group": ["drug"] * n + ["DMSO"] * m}, index=[f"c{i}" for i in range(n + m)]
    )
    adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(genes)]))
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("method", ["wilcoxon", "t-test"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_equal_scanpy(method: str, seed: int, sparse: bool) -> None:
    adata = _two_groups(seed)
    sc.tl.rank_genes_groups(
        adata, "group", groups=["drug"], reference="DMSO", method=method, n_genes=adata.n_vars
    )
    oracle = sc.get.rank_genes_groups_df(adata, group="drug").set_index("names")
    X = sp.csr_matrix(adata.X) if sparse else np.asarray(adata.X)
    is_drug = (adata.obs["group"] == "drug").to_numpy()
    got = compare_groups(X[is_drug], X[~is_drug], method=method)  # type: ignore[arg-type]
    got.index = adata.var_names
    oracle = oracle.loc[got.index]
    # scanpy stores scores as float32; its t-test means/variances are float32 sums
    rtol = 1e-6 if method == "wilcoxon" else 1e-4
    atol = 1e-6 if method == "wilcoxon" else 1e-4
    np.testing.assert_allclose(got["score"], oracle["scores"], rtol=1e-5, atol=atol)
    np.testing.assert_allclose(got["pval"], oracle["pvals"], rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(got["qval"], oracle["pvals_adj"], rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(got["logfc"], oracle["logfoldchanges"], rtol=1e-4, atol=1e-4)
    # the planted genes are the most significant
    assert set(got["pval"].nsmallest(10).index) == {f"g{j}" for j in range(10)}


def test_signatures_are_the_top_k_significant_genes_by_abs_logfc() -> None:
    adata, truth = perturbation_screen(n_drugs=6, n_cell_lines=2, cells_per_condition=40, seed=1)
    sig = differential_response(adata, reference_lines=["line0"], top_k=20, alpha=0.05)
    line = adata[adata.obs["cell_line"] == "line0"]
    X = sc.pp.log1p(sc.pp.normalize_total(line, target_sum=1e4, copy=True), copy=True).X
    X = X.toarray() if sp.issparse(X) else X
    drug = sorted(set(line.obs.loc[~line.obs["control"], "drug"]))[0]
    treated = ((line.obs["drug"] == drug) & ~line.obs["control"]).to_numpy()
    plates = set(line.obs.loc[treated, "plate"])
    control = (line.obs["control"] & line.obs["plate"].isin(plates)).to_numpy()
    stat = compare_groups(X[treated], X[control])
    stat.index = adata.var_names
    kept = stat[stat["qval"] <= 0.05]
    expected = list(kept["logfc"].abs().sort_values(ascending=False, kind="stable").index[:20])
    assert sig.genes[("line0", drug)] == expected
    rows = sig.table[(sig.table["drug"] == drug)]
    assert list(rows["gene"]) == expected and list(rows["rank"]) == list(range(1, 21))
    assert sig.n_significant.loc["line0", drug] == len(kept)
    assert (
        set(sig.for_line("line0")) == set(truth.drugs) - {"DMSO"}
        if hasattr(truth, "drugs")
        else True
    )


def test_drugs_without_significant_genes_warn_and_keep_empty_signatures() -> None:
    adata, _ = perturbation_screen(n_drugs=4, n_cell_lines=1, cells_per_condition=20, seed=2)
    with pytest.warns(UserWarning, match="no gene with q <= 1e-300"):
        sig = differential_response(adata, reference_lines=["line0"], alpha=1e-300)
    assert all(len(g) == 0 for g in sig.genes.values())


def test_refusals() -> None:
    adata, _ = perturbation_screen(n_drugs=4, n_cell_lines=1, cells_per_condition=20, seed=3)
    with pytest.raises(InputError, match="reference_lines"):
        differential_response(adata, reference_lines=["lineX"])
    with pytest.raises(InputError, match="top_k"):
        differential_response(adata, reference_lines=["line0"], top_k=0)
    with pytest.raises(InputError, match="alpha"):
        differential_response(adata, reference_lines=["line0"], alpha=0)
    bad = adata.copy()
    bad.obs["control"] = bad.obs["control"].astype(str)
    with pytest.raises(InputError, match="boolean"):
        differential_response(bad, reference_lines=["line0"])
    no_plate = adata.copy()
    del no_plate.obs["plate"]
    with pytest.raises(InputError, match="plate"):
        differential_response(no_plate, reference_lines=["line0"])
    with pytest.raises(InputError, match="method"):
        compare_groups(np.zeros((3, 2)), np.zeros((3, 2)), method="anova")  # type: ignore[arg-type]
    negative = adata.copy()
    negative.X = negative.X.toarray() - 5 if sp.issparse(negative.X) else negative.X - 5
    with pytest.raises(InputError, match=r"adata\.X|negative"):
        differential_response(negative, reference_lines=["line0"])


@pytest.mark.parametrize("method", ["wilcoxon", "t-test"])
def test_sparse_input_in_gene_chunks_equals_dense(method: str) -> None:
    adata = _two_groups(4, genes=300)
    X = np.asarray(adata.X)
    drug = (adata.obs["group"] == "drug").to_numpy()
    dense = compare_groups(X[drug], X[~drug], method=method)  # type: ignore[arg-type]
    S = sp.csr_matrix(X)
    chunked = compare_groups(S[drug], S[~drug], method=method, chunk_genes=7)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(chunked, dense, rtol=1e-12, atol=1e-300)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), m=st.integers(1, 30))
def test_mann_whitney_u_equals_scipy(seed: int, n: int, m: int) -> None:
    from scipy.stats import mannwhitneyu

    from cellbridge.bird import mann_whitney_u

    rng = np.random.default_rng(seed)
    # small integers: many ties, as in sparse counts
    t = rng.integers(0, 4, size=(n, 5)).astype(float)
    c = rng.integers(0, 4, size=(m, 5)).astype(float)
    u = mann_whitney_u(t, np.sort(c, axis=0))
    expected = [mannwhitneyu(t[:, j], c[:, j], method="asymptotic").statistic for j in range(5)]
    np.testing.assert_allclose(u, expected, rtol=0, atol=1e-9)


def test_mann_whitney_u_refuses_unsorted_controls_and_bad_values() -> None:
    from cellbridge.bird import mann_whitney_u

    t = np.array([[1.0, 2.0], [3.0, 0.0]])
    c = np.array([[0.0, 5.0], [2.0, 1.0], [4.0, 3.0]])  # gene 1 unsorted
    with pytest.raises(InputError, match="not sorted") as info:
        mann_whitney_u(t, c)
    assert info.value.values == [1]
    np.testing.assert_array_equal(mann_whitney_u(t, np.sort(c, axis=0)), [3.0, 1.0])
    with pytest.raises(InputError, match="same genes"):
        mann_whitney_u(t, np.sort(c, axis=0)[:, :1])
    with pytest.raises(InputError, match="NaN"):
        mann_whitney_u(np.array([[np.nan, 1.0]]), np.sort(c, axis=0))


def test_many_groups_against_shared_controls_equal_one_at_a_time() -> None:
    from cellbridge.bird import compare_many

    adata = _two_groups(5, genes=120)
    X = np.asarray(adata.X)
    groups = [X[:10], X[10:25], X[25:40]]
    control = X[40:]
    many = compare_many(groups, control, chunk_genes=50)
    for g, frame in zip(groups, many, strict=True):
        pd.testing.assert_frame_equal(frame, compare_groups(g, control), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:.*have no gene with q:UserWarning")
def test_plate_by_plate_from_a_backed_file_equals_line_by_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import anndata

    adata, _ = perturbation_screen(n_drugs=8, n_cell_lines=2, cells_per_condition=30, seed=6)
    # Tahoe's design: every (line, drug) on one plate; controls on every plate
    drugs = sorted(set(adata.obs.loc[~adata.obs["control"], "drug"]))
    home = {d: f"plate{i % 2}" for i, d in enumerate(drugs)}
    keep = adata.obs["control"] | (adata.obs["plate"] == adata.obs["drug"].map(home))
    adata = adata[keep.to_numpy()].copy()
    for column in ("drug", "cell_line", "plate", "atc", "smiles", "drugbank_id"):
        adata.obs[column] = adata.obs[column].astype(str)
    by_line = differential_response(adata, reference_lines=["line0", "line1"], top_k=20)
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    backed = anndata.read_h5ad(path, backed="r")
    by_plate = differential_response(
        backed, reference_lines=["line0", "line1"], top_k=20, by="plate"
    )
    assert by_plate.genes == by_line.genes
    assert sum(len(g) for g in by_line.genes.values()) > 50  # not trivially empty
    pd.testing.assert_frame_equal(
        by_plate.n_significant.sort_index(axis=1), by_line.n_significant.sort_index(axis=1)
    )


def test_plate_mode_refuses_drugs_on_several_plates() -> None:
    adata, _ = perturbation_screen(n_drugs=4, n_cell_lines=1, cells_per_condition=20, seed=7)
    with pytest.raises(InputError, match="one plate"):
        differential_response(adata, reference_lines=["line0"], by="plate")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    n_groups=st.integers(1, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
    block=st.integers(1, 7),
    buckets=st.sampled_from([1, 2, 16]),
)
def test_rows_in_place_equal_scipy_mann_whitney(
    seed: int, n_groups: int, dtype: type, block: int, buckets: int
) -> None:
    """The sparse path (each treated value looked up among its gene's control values)
    gives scipy's U for every group: many ties, zeros stored and implicit (and -0.0),
    rows outside every group, groups in any row order, unsorted CSR indices, genes
    gathered in blocks of any size, lookup buckets coarse (several values per bucket)
    or fine."""
    from unittest.mock import patch

    from scipy.stats import mannwhitneyu, norm

    from cellbridge.bird import _wilcoxon, compare_rows

    rng = np.random.default_rng(seed)
    n_rows, genes = 70, 6
    dense = rng.integers(0, 4, size=(n_rows, genes)).astype(dtype) * dtype(0.75)
    dense[:, 0] = rng.random(n_rows).astype(dtype) * 100  # no ties, large values
    X = sp.csr_matrix(dense)
    X.data[rng.random(X.nnz) < 0.1] = 0  # explicitly stored zeros
    for r in range(n_rows):  # column indices out of order within rows, as CSR allows
        a, b = X.indptr[r], X.indptr[r + 1]
        perm = a + rng.permutation(b - a)
        X.indices[a:b], X.data[a:b] = X.indices[perm], X.data[perm]
    X.has_sorted_indices = False
    order = rng.permutation(n_rows)
    control = order[:15]
    cuts = np.sort(rng.choice(np.arange(17, 60), size=n_groups, replace=False))
    groups = [order[a:b] for a, b in zip([15, *cuts[:-1]], cuts, strict=True)]
    groups = [g for g in groups if g.size >= 2] or [order[15:20]]
    X.data[(X.data == 0) & (rng.random(X.nnz) < 0.5)] = -0.0  # a zero all the same
    with (
        patch.object(_wilcoxon, "GENE_BLOCK", block),
        patch.object(_wilcoxon, "BUCKETS_PER_VALUE", buckets),
    ):
        got = compare_rows(X, groups, control)
    dense = X.toarray().astype(np.float64)
    for rows, frame in zip(groups, got, strict=True):
        n, m = rows.size, control.size
        u = np.array(
            [
                mannwhitneyu(dense[rows, j], dense[control, j], method="asymptotic").statistic
                for j in range(genes)
            ]
        )
        z = (u - n * m / 2) / np.sqrt(n * m * (n + m + 1) / 12)
        np.testing.assert_allclose(frame["score"], z, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(frame["pval"], 2 * norm.sf(abs(z)))
        means = dense[rows].mean(axis=0), dense[control].mean(axis=0)
        logfc = np.log2((np.expm1(means[0]) + 1e-9) / (np.expm1(means[1]) + 1e-9))
        np.testing.assert_allclose(frame["logfc"], logfc, rtol=1e-9, atol=1e-9)
        # and the same as slicing the groups out
        sliced = compare_groups(X[rows], X[control])
        tests = ["score", "pval", "qval"]
        pd.testing.assert_frame_equal(frame[tests], sliced[tests], rtol=1e-12, atol=1e-300)
        # the means are summed in another order: logFC of near-equal means moves by ulps
        np.testing.assert_allclose(frame["logfc"], sliced["logfc"], rtol=1e-12, atol=1e-12)


def test_compare_rows_refuses_overlapping_or_bad_rows() -> None:
    from cellbridge.bird import compare_rows

    X = sp.csr_matrix(np.ones((10, 3), dtype=np.float32))
    with pytest.raises(InputError, match="more than one group"):
        compare_rows(X, [np.array([0, 1, 2])], np.array([2, 3, 4]))
    with pytest.raises(InputError, match="more than one group"):
        compare_rows(X, [np.array([0, 0, 1])], np.array([3, 4]))
    with pytest.raises(InputError, match="rows of X"):
        compare_rows(X, [np.array([0, 12])], np.array([3, 4]))
    with pytest.raises(InputError, match="at least 2 cells"):
        compare_rows(X, [np.array([0])], np.array([3, 4]))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=300
    ),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_value_summary_counts_non_finite_and_finds_the_minimum(values: list, dtype: type) -> None:
    """The one-pass check behind DE's input validation equals numpy's answer."""
    from cellbridge.bird._wilcoxon import value_summary

    x = np.asarray(values, dtype=dtype)
    n_bad, low = value_summary(x)
    finite = x[np.isfinite(x)]
    assert n_bad == int((~np.isfinite(x)).sum())
    assert low == (float(finite.min()) if finite.size else np.inf)


def test_sparse_input_with_negative_values_takes_the_exact_dense_path() -> None:
    """Scaled data (negative values) breaks the zeros-below-everything shortcut of the
    sparse kernel: compare_rows notices in its first read and answers with the dense
    path, equal to scipy's U."""
    from scipy.stats import mannwhitneyu

    from cellbridge.bird import compare_rows

    rng = np.random.default_rng(3)
    dense = rng.normal(size=(40, 5))
    dense[rng.random(dense.shape) < 0.4] = 0.0
    X = sp.csr_matrix(dense)
    treated, control = [np.arange(0, 15), np.arange(15, 25)], np.arange(25, 40)
    with warnings.catch_warnings():  # logFC assumes log1p data: undefined on scaled data
        warnings.filterwarnings("ignore", "invalid value encountered in log2", RuntimeWarning)
        got = compare_rows(X, treated, control)
    for rows, frame in zip(treated, got, strict=True):
        n, m = rows.size, control.size
        u = [mannwhitneyu(dense[rows, j], dense[control, j]).statistic for j in range(5)]
        z = (np.asarray(u) - n * m / 2) / np.sqrt(n * m * (n + m + 1) / 12)
        np.testing.assert_allclose(frame["score"], z, rtol=1e-12, atol=1e-12)
    X.data[3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        compare_rows(X, treated, control)
