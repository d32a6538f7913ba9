"""Distance preservation (POPPY §3.4) against scipy.stats on hand-built pair lists."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist, squareform
from scipy.stats import ortho_group, pearsonr, spearmanr

from cellbridge.errors import InputError
from cellbridge.metrics import distance_correlation


def sample(seed: int, n: int = 30, d: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    comp = rng.dirichlet(np.ones(5), size=n)
    truth = cdist(comp, comp, metric="cityblock")
    embedding = comp @ rng.normal(size=(5, d)) + 0.05 * rng.normal(size=(n, d))
    groups = rng.choice(np.array(["a", "b", "c"]), size=n)
    return embedding, truth, groups


def pair_lists(
    embedding: np.ndarray, truth: np.ndarray, groups: np.ndarray, metric: str = "euclidean"
) -> dict[str, tuple[list[float], list[float]]]:
    E = cdist(embedding, embedding, metric=metric)
    out: dict[str, tuple[list[float], list[float]]] = {
        "within": ([], []),
        "across": ([], []),
        "all": ([], []),
    }
    n = len(embedding)
    for i in range(n):
        for j in range(i + 1, n):
            part = "within" if groups[i] == groups[j] else "across"
            for name in (part, "all"):
                out[name][0].append(E[i, j])
                out[name][1].append(truth[i, j])
    return out


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_spearman_and_pearson(metric: str, seed: int) -> None:
    embedding, truth, groups = sample(seed)
    pairs = pair_lists(embedding, truth, groups, metric)
    for method, oracle in (("spearman", spearmanr), ("pearson", pearsonr)):
        got = distance_correlation(
            embedding,
            truth,
            groups=groups,
            metric=metric,  # type: ignore[arg-type]
            method=method,  # type: ignore[arg-type]
        ).set_index("subset")
        assert got.index.tolist() == ["within", "across", "all"]
        for name, (e, t) in pairs.items():
            assert got.loc[name, "n_pairs"] == len(e)
            assert got.loc[name, "value"] == pytest.approx(
                oracle(e, t).statistic, rel=1e-10, abs=1e-12
            )
            assert got.loc[name, "reason"] == ""


def test_without_groups_only_all() -> None:
    embedding, truth, _ = sample(3)
    got = distance_correlation(embedding, truth)
    assert got["subset"].tolist() == ["all"]
    assert got["n_pairs"].tolist() == [30 * 29 // 2]
    want = spearmanr(pdist(embedding), squareform(truth, checks=False)).statistic
    assert got["value"].iloc[0] == pytest.approx(want, rel=1e-10)


def test_perfect_and_reversed_order() -> None:
    x = np.random.default_rng(4).normal(size=(12, 1))
    truth = squareform(pdist(x))
    assert distance_correlation(x, truth**3)["value"].tolist() == [pytest.approx(1.0)]
    assert distance_correlation(x, -truth)["value"].tolist() == [pytest.approx(-1.0)]


def test_ties_are_averaged_like_scipy() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0], [5.0]])
    truth = np.round(squareform(pdist(x)) / 2.0)  # many tied truth distances
    want = spearmanr(pdist(x), squareform(truth, checks=False)).statistic
    assert distance_correlation(x, truth)["value"].iloc[0] == pytest.approx(want, rel=1e-12)


def test_invariances() -> None:
    embedding, truth, groups = sample(5)
    base = distance_correlation(embedding, truth, groups=groups)["value"].to_numpy()
    R = ortho_group.rvs(embedding.shape[1], random_state=5)
    rotated = distance_correlation(embedding @ R + 3.0, truth, groups=groups)
    np.testing.assert_allclose(rotated["value"].to_numpy(), base, rtol=1e-10)
    # Spearman sees only the order of the distances: monotone maps of either side are free.
    scaled = distance_correlation(4.0 * embedding, np.sqrt(truth), groups=groups)
    np.testing.assert_allclose(scaled["value"].to_numpy(), base, rtol=1e-10)
    # Cosine distance ignores the length of each row.
    rng = np.random.default_rng(5)
    lengths = rng.uniform(0.5, 3.0, size=(len(embedding), 1))
    a = distance_correlation(embedding, truth, groups=groups, metric="cosine")["value"]
    b = distance_correlation(lengths * embedding, truth, groups=groups, metric="cosine")["value"]
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-10)


def test_relabelled_samples_give_the_same_table() -> None:
    embedding, truth, groups = sample(6)
    perm = np.random.default_rng(6).permutation(len(embedding))
    a = distance_correlation(embedding, truth, groups=groups)
    b = distance_correlation(embedding[perm], truth[np.ix_(perm, perm)], groups=groups[perm])
    np.testing.assert_allclose(b["value"].to_numpy(), a["value"].to_numpy(), rtol=1e-10)


def test_undefined_subsets_keep_their_row_with_a_reason() -> None:
    embedding, truth, _ = sample(7, n=6)
    singletons = np.arange(6)
    got = distance_correlation(embedding, truth, groups=singletons).set_index("subset")
    assert got.loc["within", "n_pairs"] == 0
    assert np.isnan(got.loc["within", "value"])
    assert got.loc["within", "reason"] == "fewer than 3 pairs"
    assert got.loc["across", "reason"] == ""
    constant = np.ones((6, 6)) - np.eye(6)
    got = distance_correlation(embedding, constant)
    assert np.isnan(got["value"].iloc[0])
    assert got["reason"].iloc[0] == "truth distances are constant"
    coincident = np.zeros((4, 2))
    got = distance_correlation(coincident, squareform(pdist(np.arange(4.0)[:, None])))
    assert got["reason"].iloc[0] == "embedding distances are constant"


E0, T0, G0 = sample(8, n=5)


@pytest.mark.parametrize(
    ("embedding", "truth", "kwargs", "field"),
    [
        (np.where(np.eye(5, 4) == 1, np.nan, E0), T0, {}, "embedding"),
        (E0, np.where(np.eye(5, k=1) == 1, np.inf, T0), {}, "truth_distances"),
        (E0, T0[:4, :4], {}, "truth_distances"),
        (E0, T0 + np.triu(np.ones((5, 5))), {}, "truth_distances"),
        (E0, T0.astype(str), {}, "truth_distances"),
        (E0[:1], T0[:1, :1], {}, "embedding"),
        (E0, T0, {"groups": G0[:4]}, "groups"),
        (E0, T0, {"groups": np.zeros(5)}, "groups"),
        (E0, T0, {"groups": np.array(["a", "b", None, "a", "b"], dtype=object)}, "groups"),
        (E0, T0, {"metric": "cityblock"}, "metric"),
        (E0, T0, {"method": "kendall"}, "method"),
        (np.vstack([np.zeros(4), E0[1:]]), T0, {"metric": "cosine"}, "embedding"),
    ],
)
def test_bad_input(embedding: np.ndarray, truth: np.ndarray, kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        distance_correlation(embedding, truth, **kwargs)
    assert err.value.field == field


def test_diagonal_is_not_used() -> None:
    embedding, truth, groups = sample(9)
    noisy = truth + np.diag(np.arange(len(truth), dtype=float))
    a = distance_correlation(embedding, truth, groups=groups)
    b = distance_correlation(embedding, noisy, groups=groups)
    np.testing.assert_array_equal(a["value"].to_numpy(), b["value"].to_numpy())
