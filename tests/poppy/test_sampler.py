"""Cross-cohort positive sampler (POPPY §2.2.4): properties, fallbacks, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.errors import InputError
from cellbridge.poppy import CrossCohortSampler, sample_batch

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


def _kernel_like(rng: np.random.Generator, n: int, density: float) -> np.ndarray:
    """Non-negative, symmetric, diagonal 1, sparse with ties, like the diffusion kernel."""
    s = np.round(rng.random((n, n)), 1) * (rng.random((n, n)) < density)
    s = np.maximum(s, s.T)
    np.fill_diagonal(s, 1.0)
    return s


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    n = draw(st.integers(3, 14))
    n_cohorts = draw(st.integers(1, 4))
    density = draw(st.sampled_from([0.0, 0.2, 0.5, 0.9]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    S = _kernel_like(rng, n, density)
    cohorts = rng.integers(0, n_cohorts, size=n)
    B = draw(st.integers(2, n))
    i = draw(st.integers(0, n - 1))
    return S, cohorts, B, i, seed


def _recorded(fn: object) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()  # type: ignore[operator]
    return out, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@SETTINGS
@given(problems())
def test_batch_properties(problem: tuple[np.ndarray, np.ndarray, int, int, int]) -> None:
    S, cohorts, B, i, seed = problem
    n = len(cohorts)
    row = S[i]
    batch, messages = _recorded(
        lambda: sample_batch(i, row, cohorts, B, np.random.default_rng(seed))
    )
    assert isinstance(batch, np.ndarray)
    # Shape, distinctness, anchor first.
    assert batch.shape == (B,)
    assert len(set(batch.tolist())) == B
    assert batch[0] == i
    assert np.all((batch >= 0) & (batch < n))
    p, fillers = int(batch[1]), batch[2:]

    cross = [j for j in range(n) if j != i and cohorts[j] != cohorts[i] and row[j] > 0]
    if cross:
        # The positive is a cross-cohort sample with S > 0; no positive fallback.
        assert p in cross
        assert not any("its positive is" in m or "one cohort" in m for m in messages)
    else:
        assert any("its positive is" in m or "one cohort" in m for m in messages)

    rest = [j for j in range(n) if j not in (i, p)]
    less = [j for j in rest if row[j] < row[p]]
    same_less = [j for j in less if cohorts[j] == cohorts[i]]
    if len(less) >= B - 2:
        # Strictly less similar fillers, same cohort preferred.
        assert np.all(row[fillers] < row[p])
        if len(same_less) >= B - 2:
            assert np.all(cohorts[fillers] == cohorts[i])
        else:
            assert set(same_less) <= set(fillers.tolist())
        assert not any("fewer than" in m for m in messages)
    else:
        # Fallback: every strictly-less one, then the rest by increasing similarity.
        assert any("fewer than" in m for m in messages)
        assert set(less) <= set(fillers.tolist())
        extra = [j for j in fillers.tolist() if j not in less]
        assert np.all(np.diff(row[extra]) >= 0)
        unused = [j for j in rest if j not in fillers]
        if extra and unused:
            assert row[extra].max() <= row[unused].min()


@SETTINGS
@given(problems())
def test_epoch_covers_every_anchor_once(
    problem: tuple[np.ndarray, np.ndarray, int, int, int],
) -> None:
    S, cohorts, B, _, seed = problem
    sampler, _ = _recorded(lambda: CrossCohortSampler(S, cohorts, B, seed=seed))
    assert isinstance(sampler, CrossCohortSampler)
    batches, _ = _recorded(lambda: list(sampler))
    assert isinstance(batches, list)
    assert len(batches) == len(sampler) == len(cohorts)
    assert sorted(b[0] for b in batches) == list(range(len(cohorts)))
    for b in batches:
        assert len(b) == B == len(set(b))
        assert all(isinstance(j, int) for j in b)


def _cohort_problem(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    S = _kernel_like(rng, n, 0.4)
    cohorts = np.repeat(np.array(["a", "b", "c", "d"]), n // 4)
    # Give every anchor a cross-cohort positive, so no fallback warning is expected.
    for i in range(n):
        j = (i + n // 4) % n
        S[i, j] = S[j, i] = max(S[i, j], 0.5)
    return S, cohorts


def test_seeded_determinism_and_epochs_differ() -> None:
    S, cohorts = _cohort_problem()
    a = CrossCohortSampler(S, cohorts, 8, seed=3)
    b = CrossCohortSampler(S, cohorts, 8, seed=3)
    first = list(a)
    assert first == list(b)
    assert first == list(a)  # same epoch, same batches
    a.set_epoch(1)
    second = list(a)
    assert second != first
    b.set_epoch(1)
    assert second == list(b)
    # seed + epoch: epoch 1 of seed 3 is epoch 0 of seed 4.
    assert second == list(CrossCohortSampler(S, cohorts, 8, seed=4))
    assert list(CrossCohortSampler(S, cohorts, 8, seed=5)) != first


def test_sparse_and_dense_give_same_batches() -> None:
    S, cohorts = _cohort_problem()
    dense = list(CrossCohortSampler(S, cohorts, 6, seed=1))
    sparse = list(CrossCohortSampler(sp.csr_array(S), cohorts, 6, seed=1))
    assert dense == sparse


def test_positive_is_uniform_over_candidates() -> None:
    n = 10
    row = np.zeros(n)
    row[0] = 1.0
    row[[3, 5, 7]] = [0.2, 0.9, 0.5]  # cross-cohort candidates, unequal similarity
    row[1] = 0.95  # same cohort: never the positive
    cohorts = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    rng = np.random.default_rng(0)
    draws = 6000
    counts = np.bincount(
        [int(sample_batch(0, row, cohorts, 2, rng)[1]) for _ in range(draws)], minlength=n
    )
    assert counts[[3, 5, 7]].sum() == draws
    # Binomial sd ~ sqrt(6000 * 1/3 * 2/3) = 36.5; allow 5 sd.
    np.testing.assert_allclose(counts[[3, 5, 7]], draws / 3, atol=5 * 36.5)


def test_same_cohort_fillers_first() -> None:
    row = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8])
    cohorts = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    for seed in range(20):
        batch = sample_batch(0, row, cohorts, 5, np.random.default_rng(seed))
        assert batch[1] == 7
        assert sorted(batch[2:].tolist()) == [1, 2, 3]
        batch = sample_batch(0, row, cohorts, 6, np.random.default_rng(seed))
        assert set(batch[2:].tolist()) >= {1, 2, 3}


def test_single_cohort_warns_once_and_falls_back() -> None:
    S, _ = _cohort_problem(12)
    cohorts = np.zeros(12, dtype=int)
    with pytest.warns(UserWarning, match="only one cohort"):
        sampler = CrossCohortSampler(S, cohorts, 2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no further warning on iteration
        batches = list(sampler)
    for anchor, p in batches:
        others = [j for j in range(12) if j != anchor and S[anchor, j] > 0]
        assert p in others


def test_no_cross_cohort_positive_takes_most_similar() -> None:
    row = np.array([1.0, 0.3, 0.7, 0.0, 0.0])
    cohorts = np.array([0, 0, 0, 1, 1])
    with pytest.warns(UserWarning, match="most similar"):
        batch = sample_batch(0, row, cohorts, 4, np.random.default_rng(0))
    assert batch[1] == 2
    assert set(batch[2:].tolist()) <= {1, 3, 4}
    assert np.all(row[batch[2:]] < row[2])


def test_no_similar_sample_takes_random_other() -> None:
    row = np.array([1.0, 0.0, 0.0, 0.0])
    cohorts = np.array([0, 1, 1, 0])
    seen = set()
    for seed in range(30):
        with pytest.warns(UserWarning) as record:
            batch = sample_batch(0, row, cohorts, 3, np.random.default_rng(seed))
        messages = " ".join(str(w.message) for w in record)
        assert "no other sample with S > 0" in messages
        # Nothing is strictly below 0, so the filler comes from the few-negatives fallback.
        assert "fewer than" in messages
        assert batch[0] == 0 and len(set(batch.tolist())) == 3
        seen.add(int(batch[1]))
    assert seen == {1, 2, 3}


def test_few_negatives_fill_by_increasing_similarity() -> None:
    row = np.array([1.0, 0.1, 0.9, 0.5, 0.4, 0.6])
    cohorts = np.array([0, 1, 1, 0, 0, 0])
    # Positive is the only cross-cohort candidates 1 (0.1) or 2 (0.9); pick a seed for 1.
    for seed in range(50):
        rng = np.random.default_rng(seed)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            batch = sample_batch(0, row, cohorts, 5, rng)
        if batch[1] == 1:
            assert any("fewer than" in str(w.message) for w in record)
            # Nothing is below 0.1: fill with 4 (0.4), 3 (0.5), 5 (0.6) in that order.
            assert batch[2:].tolist() == [4, 3, 5]
            return
    pytest.fail("no seed drew positive 1")


def test_sampler_warns_each_fallback_once_per_sampler() -> None:
    n = 10
    S = np.eye(n)  # nobody has a similar sample: every anchor falls back
    cohorts = np.arange(n) % 2
    sampler = CrossCohortSampler(S, cohorts, 3, seed=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        batches = list(sampler)
        list(sampler)
    messages = [str(w.message) for w in record]
    assert sum("no other sample" in m for m in messages) == 1
    assert sum("fewer than" in m for m in messages) == 1
    assert len(batches) == n


def test_works_as_dataloader_batch_sampler() -> None:
    S, cohorts = _cohort_problem()
    sampler = CrossCohortSampler(S, cohorts, 8, seed=0)
    data = torch.utils.data.TensorDataset(torch.arange(len(cohorts)))
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler)
    got = [batch[0].tolist() for batch in loader]
    assert got == list(sampler)


@pytest.mark.parametrize("B", [1, 0, 41, 2.5, True])
def test_bad_batch_size(B: object) -> None:
    S, cohorts = _cohort_problem()
    with pytest.raises(InputError) as err:
        CrossCohortSampler(S, cohorts, B)  # type: ignore[arg-type]
    assert err.value.field == "B"


def test_bad_inputs() -> None:
    S, cohorts = _cohort_problem()
    with pytest.raises(InputError, match="square"):
        CrossCohortSampler(S[:5], cohorts, 4)
    with pytest.raises(InputError, match="non-negative"):
        CrossCohortSampler(-S, cohorts, 4)
    with pytest.raises(InputError, match="cohorts"):
        CrossCohortSampler(S, cohorts[:-1], 4)
    with pytest.raises(InputError, match="S_row"):
        sample_batch(
            0, np.array([1.0, np.nan, 0.0]), np.array([0, 1, 1]), 2, np.random.default_rng()
        )
    with pytest.raises(InputError, match="anchor"):
        sample_batch(3, np.ones(3), np.array([0, 1, 1]), 2, np.random.default_rng())
