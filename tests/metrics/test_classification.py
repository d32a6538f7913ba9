"""AUROC with a bootstrap interval (POPPY §3.5) against sklearn and closed forms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom
from sklearn.metrics import roc_auc_score

from cellbridge.errors import InputError
from cellbridge.metrics import AurocCI, auroc_with_ci
from cellbridge.metrics import classification as classification_module

HYP = settings(max_examples=40, deadline=None, derandomize=True)


def scored(seed: int, n: int = 80, shift: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores with some signal and rounding ties."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=n) + shift * y, 1)
    return y, s


@pytest.mark.parametrize("seed", range(4))
def test_estimate_is_sklearns_roc_auc(seed: int) -> None:
    y, s = scored(seed)
    result = auroc_with_ci(y, s, n_boot=500)
    assert result.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-15)
    assert (result.n, result.n_positive, result.n_boot) == (80, int(y.sum()), 500)
    assert result.low < result.auroc < result.high


def test_interval_is_the_quantile_of_sklearn_on_each_resample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Oracle: the same resamples (one generator, same seed) scored one by one by sklearn;
    single-class resamples skipped. A small chunk size also checks that drawing the
    resamples chunk by chunk gives the same stream as one draw."""
    y, s = scored(5, n=12)
    n_boot = 400
    idx = np.random.default_rng(3).integers(0, len(y), size=(n_boot, len(y)))
    oracle = [roc_auc_score(y[row], s[row]) for row in idx if 0 < y[row].sum() < len(row)]
    assert len(oracle) < n_boot  # n = 12 does draw single-class resamples
    want = np.quantile(oracle, [0.05, 0.95])
    monkeypatch.setattr(classification_module, "_CHUNK_ELEMENTS", 5 * len(y))
    result = auroc_with_ci(y, s, n_boot=n_boot, level=0.9, seed=3)
    assert result.n_boot_used == len(oracle)
    np.testing.assert_allclose([result.low, result.high], want, rtol=0, atol=1e-12)


def test_perfect_separation_gives_one_with_a_degenerate_interval() -> None:
    y = np.array([0] * 10 + [1] * 10)
    s = np.arange(20.0)
    result = auroc_with_ci(y, s)
    assert (result.auroc, result.low, result.high) == (1.0, 1.0, 1.0)
    reversed_scores = auroc_with_ci(y, -s)
    assert (reversed_scores.auroc, reversed_scores.low, reversed_scores.high) == (0, 0, 0)


@HYP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 60), level=st.floats(0.5, 0.99))
def test_interval_holds_the_estimate_and_mirrors_under_negation(
    seed: int, n: int, level: float
) -> None:
    y, s = scored(seed, n=n)
    result = auroc_with_ci(y, s, n_boot=200, level=level, seed=seed % 1000)
    assert 0.0 <= result.low <= result.high <= 1.0
    # The percentile interval need not contain the estimate in general; with 200
    # resamples at these sizes it does unless the bootstrap distribution is very skewed.
    assert result.low - 0.05 <= result.auroc <= result.high + 0.05
    flipped = auroc_with_ci(y, -s, n_boot=200, level=level, seed=seed % 1000)
    assert flipped.auroc == pytest.approx(1 - result.auroc, abs=1e-12)
    assert flipped.low == pytest.approx(1 - result.high, abs=1e-12)
    assert flipped.high == pytest.approx(1 - result.low, abs=1e-12)


def test_intervals_of_uninformative_scores_cover_one_half() -> None:
    """Random scores have AUROC 1/2. Over 40 independent cohorts of n = 200 the 95%
    interval must miss 1/2 rarely: at true coverage 0.95, 9 or more misses of 40 happen
    with probability below 1e-3 (binomial tail)."""
    assert binom.sf(8, 40, 0.05) < 1e-3
    misses = 0
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        y = rng.permutation(np.repeat([0, 1], 100))
        result = auroc_with_ci(y, rng.normal(size=200), n_boot=1000, seed=seed)
        assert result.n_boot_used == 1000
        misses += not result.low <= 0.5 <= result.high
    assert misses <= 8


def test_the_same_seed_gives_the_same_interval() -> None:
    y, s = scored(6)
    first = auroc_with_ci(y, s, n_boot=300, seed=11)
    assert auroc_with_ci(y, s, n_boot=300, seed=11) == first
    other = auroc_with_ci(y, s, n_boot=300, seed=12)
    assert (other.low, other.high) != (first.low, first.high)
    assert other.auroc == first.auroc


def test_result_is_a_frozen_record_of_all_fields() -> None:
    result = auroc_with_ci([True, False, True, False], [0.9, 0.1, 0.4, 0.5], n_boot=20)
    assert isinstance(result, AurocCI)
    assert [f.name for f in dataclasses.fields(result)] == [
        "auroc",
        "low",
        "high",
        "level",
        "n",
        "n_positive",
        "n_boot",
        "n_boot_used",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.auroc = 0.0  # type: ignore[misc]


def test_no_resample_with_both_classes_is_refused() -> None:
    """n = 2, one of each class: a resample holds both with probability 1/2."""
    outcomes = []
    for seed in range(12):
        try:
            outcomes.append(auroc_with_ci([0, 1], [0.2, 0.7], n_boot=1, seed=seed).n_boot_used)
        except InputError as error:
            assert "none of the 1 resamples held both classes" in str(error)
            outcomes.append(0)
    assert set(outcomes) == {0, 1}


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], r"y_true: has one class only; .* \(1\)"),
        ([0, 1, 2], [0.1, 0.2, 0.3], r"y_true: 1 labels are not 0 or 1, at positions \(2\)"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], r"y_true: 1 labels are not 0 or 1"),
        (["R", "NR"], [0.1, 0.2], r"y_true: must be 0/1 or booleans"),
        ([0, 1, 1], [0.1, np.nan, 0.3], r"y_score: 1 NaN or infinite scores.*\(1\)"),
        ([0, 1, 1], [0.1, 0.2, np.inf], r"y_score: 1 NaN or infinite"),
        ([0, 1, 1], [0.1, 0.2], r"y_score: has 2 entries but y_true has 3"),
        ([[0, 1]], [0.1, 0.2], r"y_true: must be 1-D"),
    ],
)
def test_refuses_bad_inputs(y: object, s: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        auroc_with_ci(y, s)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("n_boot", 0),
        ("n_boot", 2.0),
        ("n_boot", True),
        ("level", 0.0),
        ("level", 1.0),
        ("level", np.nan),
        ("seed", -1),
        ("seed", 1.5),
    ],
)
def test_refuses_bad_options(option: str, value: object) -> None:
    with pytest.raises(InputError, match=f"^{option}: "):
        auroc_with_ci([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], **{option: value})  # type: ignore[arg-type]
