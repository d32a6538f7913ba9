"""recall@k (POPPY §3.3) against sklearn NearestNeighbors and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.neighbors import NearestNeighbors

from cellbridge.errors import InputError
from cellbridge.metrics import recall_at_k
from cellbridge.metrics import retrieval as retrieval_module


def recall_oracle(query: np.ndarray, reference: np.ndarray, k: int, metric: str) -> float:
    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(reference)
    neighbours = nn.kneighbors(query, return_distance=False)
    return float(np.mean([i in row for i, row in enumerate(neighbours)]))


def paired(seed: int, n: int = 60, d: int = 8, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(n, d))
    return reference + noise * rng.normal(size=(n, d)), reference


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_nearest_neighbors(metric: str, seed: int) -> None:
    query, reference = paired(seed)
    ks = [1, 3, 5, 10, 60]
    got = recall_at_k(query, reference, k=ks, metric=metric)  # type: ignore[arg-type]
    want = [recall_oracle(query, reference, k, metric) for k in ks]
    np.testing.assert_allclose(got.to_numpy(), want, rtol=0, atol=1e-12)
    assert got.index.tolist() == ks
    assert got.index.name == "k"
    assert got.name == "recall"


def test_blocks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    query, reference = paired(3, n=50)
    whole = recall_at_k(query, reference, k=(1, 5))
    monkeypatch.setattr(retrieval_module, "_CHUNK", 7)
    np.testing.assert_array_equal(recall_at_k(query, reference, k=(1, 5)).to_numpy(), whole)


def test_hand_computed_ranks() -> None:
    query = np.array([[0.0], [1.0], [10.0]])
    reference = np.array([[0.4], [5.0], [9.0]])
    # ranks: query 0 -> 1, query 1 -> 2 (reference 0 is closer), query 2 -> 1
    got = recall_at_k(query, reference, k=(1, 2, 3), metric="euclidean")
    np.testing.assert_allclose(got.to_numpy(), [2 / 3, 1.0, 1.0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_identical_embeddings_retrieve_everything(metric: str) -> None:
    x = np.random.default_rng(4).normal(size=(40, 6))
    got = recall_at_k(x, x, k=(1, 5), metric=metric)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.to_numpy(), [1.0, 1.0])


def test_k_equal_n_is_always_one() -> None:
    query, reference = paired(5, n=20, noise=100.0)
    assert recall_at_k(query, reference, k=20).tolist() == [1.0]


def test_tie_at_the_kth_distance_counts_as_retrieved() -> None:
    # References 0 and 1 coincide: each query ties with the other reference and is retrieved.
    x = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    got = recall_at_k(x, x, k=1, metric="euclidean")
    assert got.tolist() == [1.0]


def test_random_pairs_score_k_over_n() -> None:
    rng = np.random.default_rng(6)
    n, k = 2000, 200
    query, reference = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    got = float(recall_at_k(query, reference, k=k, metric="euclidean").iloc[0])
    # E = k / N = 0.1; the binomial sd is about 0.007
    assert abs(got - k / n) < 0.03


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_rotation_invariance(metric: str) -> None:
    query, reference = paired(7, noise=1.5)
    R = ortho_group.rvs(8, random_state=7)
    ks = (1, 5, 10)
    a = recall_at_k(query, reference, k=ks, metric=metric)  # type: ignore[arg-type]
    b = recall_at_k(query @ R, reference @ R, k=ks, metric=metric)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_cosine_ignores_row_scaling() -> None:
    query, reference = paired(8, noise=1.5)
    rng = np.random.default_rng(8)
    scaled_q = query * rng.uniform(0.1, 10.0, size=(len(query), 1))
    scaled_r = reference * rng.uniform(0.1, 10.0, size=(len(reference), 1))
    a = recall_at_k(query, reference, k=(1, 5, 10))
    b = recall_at_k(scaled_q, scaled_r, k=(1, 5, 10))
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_integer_k_gives_one_entry() -> None:
    query, reference = paired(9)
    got = recall_at_k(query, reference, k=np.int64(3))
    assert got.index.tolist() == [3]


GOOD = np.random.default_rng(10).normal(size=(5, 3))


@pytest.mark.parametrize(
    ("query", "reference", "kwargs", "field"),
    [
        (np.array([[np.nan, 0, 0]]).repeat(5, axis=0), GOOD, {}, "query"),
        (GOOD, np.where(np.eye(5, 3) == 1, np.inf, GOOD), {}, "reference"),
        (GOOD, GOOD[:4], {}, "reference"),
        (GOOD, GOOD[:, :2], {}, "reference"),
        (GOOD[:1], GOOD[:1], {"k": 1}, "query"),
        (GOOD[0], GOOD[0], {}, "query"),
        (GOOD.astype(str), GOOD, {}, "query"),
        (GOOD, GOOD, {"k": 0}, "k"),
        (GOOD, GOOD, {"k": 6}, "k"),
        (GOOD, GOOD, {"k": (1, 1)}, "k"),
        (GOOD, GOOD, {"k": ()}, "k"),
        (GOOD, GOOD, {"k": 1.5}, "k"),
        (GOOD, GOOD, {"k": True}, "k"),
        (GOOD, GOOD, {"k": 1, "metric": "manhattan"}, "metric"),
        (np.vstack([np.zeros(3), GOOD[1:]]), GOOD, {"k": 1}, "query"),
    ],
)
def test_bad_input(query: np.ndarray, reference: np.ndarray, kwargs: dict, field: str) -> None:
    kwargs = {"k": (1, 5)} | kwargs
    with pytest.raises(InputError) as err:
        recall_at_k(query, reference, **kwargs)
    assert err.value.field == field
