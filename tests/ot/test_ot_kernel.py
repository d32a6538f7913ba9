"""The kNN diffusion kernel (POPPY A.2, Eq. 6) against a dense transcription and sklearn."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from cellbridge.errors import InputError
from cellbridge.ot import diffusion_kernel, pairwise_graph_emd

if TYPE_CHECKING:
    from conftest import OntologyGraph

HYP = settings(max_examples=30, deadline=None, derandomize=True)
E = math.exp(-1.0)


def kernel_oracle(D: np.ndarray, k: int, symmetrize: str) -> np.ndarray:
    """Eq. 6 written out entry by entry, with the documented choices (ties kept, sigma=0 limit).

    The exponent d^2 / (sigma_i sigma_j) is taken in exact rational arithmetic, so that the
    oracle itself neither under- nor overflows.
    """
    n = len(D)
    k = min(k, n - 1)
    sigma = [sorted(D[i, j] for j in range(n) if j != i)[k - 1] for i in range(n)]
    near = [[j != i and D[i, j] <= sigma[i] for j in range(n)] for i in range(n)]
    K = np.eye(n)
    for i in range(n):
        for j in range(n):
            if symmetrize == "union":
                joined = near[i][j] or near[j][i]
            else:
                joined = near[i][j] and near[j][i]
            if i != j and joined:
                d = Fraction(float(D[i, j]))
                if sigma[i] > 0 and sigma[j] > 0:
                    x = d**2 / (Fraction(float(sigma[i])) * Fraction(float(sigma[j])))
                    K[i, j] = math.exp(-float(x)) if x < 800 else 0.0
                else:
                    K[i, j] = float(d == 0)
    return K


@st.composite
def distance_matrices(
    draw: st.DrawFn, *, max_n: int = 12, floats: st.SearchStrategy[float] | None = None
) -> np.ndarray:
    """Symmetric, non-negative, zero diagonal; small integers (many ties, zeros) or floats."""
    n = draw(st.integers(2, max_n))
    m = n * (n - 1) // 2
    ties = draw(st.booleans())
    if floats is None:
        floats = st.floats(0.0, 50.0)
    values = st.integers(0, 3).map(float) if ties else floats
    D = np.zeros((n, n))
    D[np.triu_indices(n, 1)] = draw(st.lists(values, min_size=m, max_size=m))
    return D + D.T


def sklearn_knn(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Directed kNN adjacency and k-th neighbour distances from sklearn's precomputed search."""
    nn = NearestNeighbors(n_neighbors=k, metric="precomputed").fit(D)
    dist, idx = nn.kneighbors()
    A = np.zeros(D.shape, dtype=bool)
    A[np.repeat(np.arange(len(D)), k), idx.ravel()] = True
    return A, dist[:, -1]


def no_ties(D: np.ndarray) -> bool:
    off = D[np.triu_indices(len(D), 1)]
    return np.unique(off).size == off.size


# --- against the dense transcription and sklearn ---------------------------------------------


SYMMETRIZE = st.sampled_from(["union", "intersection"])


@HYP
@given(D=distance_matrices(), k=st.integers(1, 11), symmetrize=SYMMETRIZE)
def test_matches_dense_transcription(D: np.ndarray, k: int, symmetrize: str) -> None:
    k = min(k, len(D) - 1)
    K = diffusion_kernel(D, k=k, symmetrize=symmetrize)  # type: ignore[arg-type]
    assert sp.issparse(K)
    assert K.format == "csr"
    # exp(-x) carries the relative error of x (up to ~745) into its result: rtol 1e-12.
    expected = kernel_oracle(D, k, symmetrize)
    np.testing.assert_allclose(K.toarray(), expected, rtol=1e-12, atol=1e-300)


@HYP
@given(
    D=distance_matrices(floats=st.one_of(st.just(0.0), st.floats(1e-3, 50.0))),
    k=st.integers(1, 11),
    symmetrize=SYMMETRIZE,
    e=st.integers(-1000, 1000),
)
def test_does_not_depend_on_the_unit_of_distance(
    D: np.ndarray, k: int, symmetrize: str, e: int
) -> None:
    # Eq. 6 only sees d / sigma; scaling by a power of two is exact in floating point.
    k = min(k, len(D) - 1)
    K = diffusion_kernel(D, k=k, symmetrize=symmetrize)  # type: ignore[arg-type]
    scaled = diffusion_kernel(D * 2.0**e, k=k, symmetrize=symmetrize)  # type: ignore[arg-type]
    np.testing.assert_array_equal(scaled.toarray(), K.toarray())


@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("geometry", ["euclidean", "arbitrary"])
def test_neighbours_and_bandwidths_match_sklearn(k: int, geometry: str) -> None:
    rng = np.random.default_rng(k)
    n = 30
    pts = rng.normal(size=(n, 3))
    if geometry == "euclidean":
        D = cdist(pts, pts)
    else:  # any symmetric matrix, not a metric; spread to [1, 2] so nothing underflows
        D = rng.uniform(1.0, 2.0, size=(n, n))
        D = np.triu(D, 1) + np.triu(D, 1).T
    assert no_ties(D)
    A, sigma = sklearn_knn(D, k)
    union = diffusion_kernel(D, k=k, symmetrize="union").toarray()
    inter = diffusion_kernel(D, k=k, symmetrize="intersection").toarray()
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_array_equal((union > 0) & off, A | A.T)
    np.testing.assert_array_equal((inter > 0) & off, A & A.T)
    # Eq. 6 with sklearn's k-th neighbour distance as the bandwidth.
    expected = np.exp(-(D**2) / np.outer(sigma, sigma))
    np.testing.assert_allclose(union[A | A.T], expected[A | A.T], rtol=1e-13)
    np.testing.assert_allclose(inter[A & A.T], expected[A & A.T], rtol=1e-13)
    # Without ties every sample has exactly k neighbours of its own: >= k after the union,
    # <= k after the intersection.
    assert np.all(((union > 0) & off).sum(axis=1) >= k)
    assert np.all(((inter > 0) & off).sum(axis=1) <= k)


def test_on_graph_emd_distances_of_cell_ontology_signals(cl_graph: OntologyGraph) -> None:
    rng = np.random.default_rng(1)
    X = np.vstack([cl_graph.propagated(rng, 12), cl_graph.dirichlet(rng, 12)])
    D = pairwise_graph_emd(X, graph=cl_graph.graph)
    for symmetrize in ("union", "intersection"):
        K = diffusion_kernel(D, k=5, symmetrize=symmetrize)  # type: ignore[arg-type]
        np.testing.assert_allclose(K.toarray(), kernel_oracle(D, 5, symmetrize), rtol=1e-13)


# --- invariants ------------------------------------------------------------------------------


@HYP
@given(D=distance_matrices(), k=st.integers(1, 11), data=st.data())
def test_symmetric_bounded_unit_diagonal_and_order_free(
    D: np.ndarray, k: int, data: st.DataObject
) -> None:
    n = len(D)
    k = min(k, n - 1)
    union = diffusion_kernel(D, k=k, symmetrize="union")
    inter = diffusion_kernel(D, k=k, symmetrize="intersection")
    for K in (union, inter):
        assert np.all(np.isfinite(K.data))
        assert (K != K.T).nnz == 0
        assert K.data.min() > 0.0  # exact zeros are not stored
        assert K.data.max() <= 1.0
        np.testing.assert_array_equal(K.diagonal(), 1.0)
    # Intersection keeps a subset of the union's pairs, with the same values.
    KU, KI = union.toarray(), inter.toarray()
    assert np.all((KI > 0) <= (KU > 0))
    np.testing.assert_array_equal(KI[KI > 0], KU[KI > 0])
    # Relabelling the samples relabels the kernel: ties are not broken by position.
    perm = np.array(data.draw(st.permutations(range(n)), label="perm"))
    for symmetrize, K in (("union", KU), ("intersection", KI)):
        P = diffusion_kernel(D[np.ix_(perm, perm)], k=k, symmetrize=symmetrize)  # type: ignore[arg-type]
        np.testing.assert_array_equal(P.toarray(), K[np.ix_(perm, perm)])


def test_ties_at_the_kth_distance_are_all_kept() -> None:
    # Points on a line; 0 has two nearest neighbours at distance 1 (1 and 2), 1 has two too.
    x = np.array([0.0, 1.0, -1.0, 2.0, 5.0])
    D = np.abs(x[:, None] - x[None, :])
    inter = np.eye(5)
    for i, j in [(0, 1), (0, 2), (1, 3)]:  # d = 1 and sigma = 1 on both sides
        inter[i, j] = inter[j, i] = E
    union = inter.copy()
    union[3, 4] = union[4, 3] = math.exp(-9.0 / 3.0)  # only 4 -> 3; sigma_4 = 3, sigma_3 = 1
    np.testing.assert_allclose(diffusion_kernel(D, k=1, symmetrize="intersection").toarray(), inter)
    np.testing.assert_allclose(diffusion_kernel(D, k=1).toarray(), union)
    # Breaking the tie of 0 (or of 1) by position would lose a pair of the intersection.
    assert (diffusion_kernel(D, k=1, symmetrize="intersection").toarray()[0] > 0).sum() == 3


def test_zero_bandwidth_takes_the_limit() -> None:
    # Three copies of one sample: their 2nd nearest neighbour is at distance 0.
    x = np.array([0.0, 0.0, 0.0, 5.0, 6.0])
    D = np.abs(x[:, None] - x[None, :])
    with np.errstate(all="raise"):  # no 0/0 or x/0 anywhere
        K = diffusion_kernel(D, k=2)
    expected = np.zeros((5, 5))
    expected[:3, :3] = 1.0
    expected[3, 3] = expected[4, 4] = 1.0
    expected[3, 4] = expected[4, 3] = math.exp(-1.0 / (5.0 * 6.0))
    np.testing.assert_allclose(K.toarray(), expected, rtol=1e-15)
    assert np.all(np.isfinite(K.data))
    assert K.nnz == 13  # 3-{0,1,2} are joined but evaluate to 0 and are not stored


def test_k_at_least_n_warns_and_uses_every_other_sample() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(4, 2))
    D = cdist(pts, pts)
    full = diffusion_kernel(D, k=3)
    for k in (4, 10):
        with pytest.warns(UserWarning, match=rf"k={k} >= number of samples 4: using k=3"):
            K = diffusion_kernel(D, k=k)
        np.testing.assert_array_equal(K.toarray(), full.toarray())
    # k = N - 1: every pair joined, sigma_i = the farthest other sample.
    sigma = D.max(axis=1)
    np.testing.assert_allclose(full.toarray(), np.exp(-(D**2) / np.outer(sigma, sigma)), rtol=1e-14)


def test_single_sample() -> None:
    K = diffusion_kernel(np.zeros((1, 1)), k=1)
    assert K.format == "csr"
    np.testing.assert_array_equal(K.toarray(), [[1.0]])


def test_docstring_example_values() -> None:
    D = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    # sigma = (1, 1, 2); kNN: 0 -> 1, 1 -> 0, 2 -> 1; union joins 0-1 and 1-2.
    expected = np.array([[1.0, E, 0.0], [E, 1.0, math.exp(-4.0 / 2.0)], [0.0, math.exp(-2.0), 1.0]])
    np.testing.assert_allclose(diffusion_kernel(D, k=1).toarray(), expected, rtol=1e-15)
    expected[1, 2] = expected[2, 1] = 0.0
    np.testing.assert_allclose(
        diffusion_kernel(D, k=1, symmetrize="intersection").toarray(), expected, rtol=1e-15
    )


# --- bad input -------------------------------------------------------------------------------

GOOD = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])


def changed(i: int, j: int, value: float, *, mirror: bool = True) -> np.ndarray:
    D = GOOD.copy()
    D[i, j] = value
    if mirror:
        D[j, i] = value
    return D


@pytest.mark.parametrize(
    ("D", "match"),
    [
        (np.zeros((2, 3)), r"must be a square distance matrix, got shape \(2, 3\)"),
        (np.zeros(3), r"must be a square distance matrix, got shape \(3,\)"),
        (np.zeros((2, 2, 2)), r"must be a square distance matrix, got shape \(2, 2, 2\)"),
        (changed(0, 1, np.nan), r"contains NaN or infinite distances at \(\[0, 1\], \[1, 0\]\)"),
        (changed(1, 2, np.inf), r"contains NaN or infinite distances at \(\[1, 2\], \[2, 1\]\)"),
        (changed(0, 2, -0.5), r"contains negative distances at \(\[0, 2\], \[2, 0\]\)"),
        (changed(0, 2, 3.5, mirror=False), r"is not symmetric \(D\[0,2\]=3\.5, D\[2,0\]=3\.0\)"),
        (changed(1, 1, 0.1), r"has a non-zero diagonal at rows \(1\)"),
        (GOOD.astype(str), r"must be numeric, got dtype <U"),
        (GOOD.astype(complex), r"must be numeric, got dtype complex128"),
    ],
)
def test_bad_distances_are_refused(D: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=rf"^D: {match}"):
        diffusion_kernel(D, k=1)


@pytest.mark.parametrize("k", [0, -1, True, False, 2.0, "2", None])
def test_bad_k_is_refused(k: object) -> None:
    with pytest.raises(InputError, match=rf"k: must be a positive integer, got {k!r}"):
        diffusion_kernel(GOOD, k=k)  # type: ignore[arg-type]


def test_numpy_integer_k_is_accepted() -> None:
    np.testing.assert_array_equal(
        diffusion_kernel(GOOD, k=np.int64(1)).toarray(), diffusion_kernel(GOOD, k=1).toarray()
    )


def test_bad_symmetrize_is_refused() -> None:
    with pytest.raises(
        InputError, match=r"symmetrize: must be 'union' or 'intersection', got 'both'"
    ):
        diffusion_kernel(GOOD, k=1, symmetrize="both")  # type: ignore[arg-type]


def test_no_samples_is_refused() -> None:
    with pytest.raises(InputError, match="no samples"):
        diffusion_kernel(np.zeros((0, 0)), k=1)
