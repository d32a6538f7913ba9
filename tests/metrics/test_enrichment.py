"""MELD-style label enrichment (POPPY §3.5) against a dense oracle and closed forms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from cellbridge.errors import CellbridgeError, InputError
from cellbridge.metrics import enrichment as enrichment_module
from cellbridge.metrics import label_enrichment

HYP = settings(max_examples=40, deadline=None, derandomize=True)


def dense_oracle(
    X: np.ndarray, samples: np.ndarray, label_of: Mapping[Any, int], k: int, beta: float
) -> np.ndarray:
    """The same definition, built densely: argsort kNN, eigvalsh, np.linalg.solve."""
    n = len(X)
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    neighbours = np.argsort(D, axis=1)[:, :k]
    A = np.zeros((n, n))
    A[np.repeat(np.arange(n), k), neighbours.ravel()] = 1.0
    W = np.maximum(A, A.T)
    L = np.diag(W.sum(axis=1)) - W
    lmax = np.linalg.eigvalsh(L)[-1]
    x = np.zeros((n, 2))
    for c in (0, 1):
        members = [s for s in np.unique(samples) if label_of[s] == c]
        for s in members:
            cells = samples == s
            x[cells, c] = 1.0 / cells.sum() / len(members)
    f = np.linalg.solve(np.eye(n) + beta / lmax * L, x)
    return f[:, 1] / f.sum(axis=1)


def cohort(
    seed: int, n: int = 60, d: int = 4, n_samples: int = 7
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Cells from samples of unequal sizes; 3 responder samples and 4 others."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    names = [f"p{i}" for i in range(n_samples)]
    # Every sample has a cell; the rest are spread unevenly (sizes differ by design).
    weights = rng.dirichlet(np.ones(n_samples))
    samples = np.array(names + list(rng.choice(names, size=n - n_samples, p=weights)))
    rng.shuffle(samples)
    labels = {name: i % 2 for i, name in enumerate(names)}
    return X, samples, labels


@pytest.mark.parametrize("beta", [0.5, 60.0, 1000.0])
@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_dense_solve(seed: int, k: int, beta: float) -> None:
    X, samples, labels = cohort(seed)
    got = label_enrichment(X, samples, labels, k=k, beta=beta)
    want = dense_oracle(X, samples, labels, k, beta)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert got.dtype == np.float64
    assert got.shape == (len(X),)
    assert ((got >= 0) & (got <= 1)).all()


def test_per_cell_labels_give_the_same_scores_as_the_mapping() -> None:
    X, samples, labels = cohort(3)
    per_cell = np.array([labels[s] for s in samples])
    np.testing.assert_array_equal(
        label_enrichment(X, samples, per_cell), label_enrichment(X, samples, labels)
    )
    as_bool = {s: bool(v) for s, v in labels.items()}
    np.testing.assert_array_equal(
        label_enrichment(X, samples, as_bool), label_enrichment(X, samples, labels)
    )


def test_beta_zero_is_the_raw_normalised_indicator_ratio() -> None:
    """No smoothing: x_1 / (x_0 + x_1) is 1 on responder cells and 0 elsewhere."""
    X, samples, labels = cohort(4)
    got = label_enrichment(X, samples, labels, k=5, beta=0.0)
    np.testing.assert_array_equal(got, [float(labels[s]) for s in samples])


@pytest.mark.parametrize("beta", [0.0, 1.0, 60.0])
def test_complete_graph_closed_form(beta: float) -> None:
    """k = n - 1 joins every pair: L = nI - J, lambda_max = n, and
    (I + beta L / n)^{-1} x = x / (1 + beta) + beta / (1 + beta) * mean(x)."""
    sizes = {"r1": 2, "r2": 5, "n1": 3, "n2": 1, "n3": 4}
    labels = {"r1": 1, "r2": 1, "n1": 0, "n2": 0, "n3": 0}
    samples = np.array([s for s, size in sizes.items() for _ in range(size)])
    n = len(samples)
    X = np.random.default_rng(5).normal(size=(n, 3))
    m = {c: sum(v == c for v in labels.values()) for c in (0, 1)}
    x = {c: np.array([(labels[s] == c) / (sizes[s] * m[c]) for s in samples]) for c in (0, 1)}
    f = {c: x[c] / (1 + beta) + beta / (1 + beta) / n for c in (0, 1)}
    want = f[1] / (f[0] + f[1])
    got = label_enrichment(X, samples, labels, k=n - 1, beta=beta)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_separated_clusters_score_their_condition() -> None:
    """A responder-only cluster scores 1, a non-responder-only cluster 0, a balanced
    mixed cluster about 1/2 — with unequal sample sizes, since samples weigh the same."""
    rng = np.random.default_rng(6)
    pure = {"a": 30, "b": 10, "c": 25, "d": 15}  # a, b responders; c, d not
    labels = {"a": 1, "b": 1, "c": 0, "d": 0}
    centre = {"a": 0.0, "b": 0.0, "c": 100.0, "d": 100.0}
    blocks, samples = [], []
    for s, size in pure.items():
        blocks.append(centre[s] + rng.normal(size=(size, 2)))
        samples += [s] * size
    # The mixed cluster takes the same share (1/4) of every sample, so it is balanced
    # once each sample is normalised to sum 1.
    for s, size in pure.items():
        share = size // 3
        blocks.append(200.0 + rng.normal(size=(share, 2)))
        samples += [s] * share
    X = np.vstack(blocks)
    where = np.repeat(["R", "NR", "mixed"], [40, 40, len(X) - 80])
    got = label_enrichment(X, np.array(samples), labels, k=5)
    assert got[where == "R"].min() > 0.99
    assert got[where == "NR"].max() < 0.01
    assert abs(got[where == "mixed"].mean() - 0.5) < 0.05


def test_large_beta_flattens_each_component_to_its_condition_ratio() -> None:
    """beta -> inf: f_c tends to the mean of x_c over the (connected) graph."""
    X, samples, labels = cohort(7, n=40)
    got = label_enrichment(X, samples, labels, k=39, beta=1e9)
    np.testing.assert_allclose(got, 0.5, rtol=0, atol=1e-6)


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, dict[int, int], int, float]:
    n = draw(st.integers(4, 25))
    n_samples = draw(st.integers(2, min(5, n)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.normal(size=(n, 2))
    samples = np.concatenate([np.arange(n_samples), rng.integers(0, n_samples, n - n_samples)])
    flags = draw(st.lists(st.booleans(), min_size=n_samples, max_size=n_samples))
    flags[0], flags[1] = True, False  # both conditions present
    labels = {s: int(f) for s, f in enumerate(flags)}
    k = draw(st.integers(1, n - 1))
    beta = draw(st.floats(0.0, 500.0))
    return X, samples, labels, k, beta


@HYP
@given(problem=problems())
def test_flipping_the_labels_gives_one_minus_the_score(
    problem: tuple[np.ndarray, np.ndarray, dict[int, int], int, float],
) -> None:
    X, samples, labels, k, beta = problem
    score = label_enrichment(X, samples, labels, k=k, beta=beta)
    flipped = label_enrichment(X, samples, {s: 1 - v for s, v in labels.items()}, k=k, beta=beta)
    np.testing.assert_allclose(flipped, 1.0 - score, rtol=0, atol=1e-12)


@HYP
@given(problem=problems(), seed=st.integers(0, 1000))
def test_scores_follow_the_cells_when_they_are_reordered(
    problem: tuple[np.ndarray, np.ndarray, dict[int, int], int, float], seed: int
) -> None:
    X, samples, labels, k, beta = problem
    order = np.random.default_rng(seed).permutation(len(X))
    score = label_enrichment(X, samples, labels, k=k, beta=beta)
    moved = label_enrichment(X[order], samples[order], labels, k=k, beta=beta)
    np.testing.assert_allclose(moved, score[order], rtol=0, atol=1e-8)


def _valid() -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    return cohort(8, n=20, n_samples=4)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_refuses_a_non_finite_embedding(bad: float) -> None:
    X, samples, labels = _valid()
    X[3, 1] = bad
    with pytest.raises(InputError, match=r"embedding.*\(3\)"):
        label_enrichment(X, samples, labels)


def test_refuses_length_mismatches() -> None:
    X, samples, labels = _valid()
    with pytest.raises(InputError, match="samples: has 19 entries but the embedding has 20"):
        label_enrichment(X, samples[:-1], labels)
    per_cell = np.array([labels[s] for s in samples])
    with pytest.raises(InputError, match="labels: has 21 entries"):
        label_enrichment(X, samples, np.append(per_cell, 1))


def test_refuses_samples_without_a_label() -> None:
    X, samples, labels = _valid()
    del labels["p2"]
    with pytest.raises(InputError, match=r"labels: no label for 1 samples \('p2'\)"):
        label_enrichment(X, samples, labels)
    per_cell = np.array([labels.get(s, np.nan) for s in samples], dtype=float)
    with pytest.raises(InputError, match=r"labels: .* missing labels"):
        label_enrichment(X, samples, per_cell)
    missing_sample = samples.astype(object)
    missing_sample[0] = None
    with pytest.raises(InputError, match="samples: 1 missing"):
        label_enrichment(X, missing_sample, labels)


@pytest.mark.parametrize("value", [2, 0.5, "R", -1, np.nan])
def test_refuses_labels_that_are_not_binary(value: object) -> None:
    X, samples, labels = _valid()
    bad: dict[str, object] = {**labels, "p1": value}
    with pytest.raises(InputError, match=r"labels: must be 0 .* or 1 .*'p1'"):
        label_enrichment(X, samples, bad)  # type: ignore[arg-type]


def test_refuses_per_cell_labels_that_disagree_within_a_sample() -> None:
    X, samples, labels = _valid()
    per_cell = np.array([labels[s] for s in samples])
    first = np.flatnonzero(samples == "p0")[0]
    per_cell[first] = 1 - per_cell[first]
    with pytest.raises(InputError, match=r"labelled both 0 and 1 \('p0'\)"):
        label_enrichment(X, samples, per_cell)


def test_refuses_a_single_condition() -> None:
    X, samples, _ = _valid()
    with pytest.raises(InputError, match="only one condition"):
        label_enrichment(X, samples, dict.fromkeys(np.unique(samples), 1))
    # The other condition exists in the mapping but has no cells: still one condition.
    only_one = {s: 1 for s in np.unique(samples)} | {"absent": 0}
    with pytest.raises(InputError, match="only one condition"):
        label_enrichment(X, samples, only_one)


@pytest.mark.parametrize("k", [0, -1, 20, 25, 2.5, True])
def test_refuses_bad_k(k: object) -> None:
    X, samples, labels = _valid()
    with pytest.raises(InputError, match=r"^k: "):
        label_enrichment(X, samples, labels, k=k)  # type: ignore[arg-type]


@pytest.mark.parametrize("beta", [-0.1, np.nan, np.inf, "60"])
def test_refuses_bad_beta(beta: object) -> None:
    X, samples, labels = _valid()
    with pytest.raises(InputError, match=r"^beta: "):
        label_enrichment(X, samples, labels, beta=beta)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("densities", "message"),
    [(0.0, "zero smoothed density"), (-1.0, "negative value")],
)
def test_a_failed_solve_is_refused_not_patched(
    monkeypatch: pytest.MonkeyPatch, densities: float, message: str
) -> None:
    """0/0 and negative densities cannot come out of the filter; if a solver returned
    them, the function raises instead of inventing a score."""
    X, samples, labels = _valid()
    monkeypatch.setattr(
        enrichment_module,
        "_smooth",
        lambda L, signals, beta: np.full_like(signals, densities),
    )
    with pytest.raises(CellbridgeError, match=message):
        label_enrichment(X, samples, labels)
