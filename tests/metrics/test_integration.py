"""Batch and label silhouettes (scIB convention) against sklearn's silhouette."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.metrics import silhouette_samples as sk_silhouette_samples
from sklearn.metrics import silhouette_score

from cellbridge.errors import InputError
from cellbridge.metrics import (
    batch_silhouette,
    batch_silhouette_per_label,
    silhouette_label,
    silhouette_samples,
)
from cellbridge.metrics import integration as integration_module

TOL = {"rtol": 1e-10, "atol": 1e-12}


def batch_oracle(X: np.ndarray, batch: np.ndarray, labels: np.ndarray) -> float:
    """scib-metrics ``silhouette_batch`` written out with sklearn."""
    per_label = []
    for label in np.unique(labels):
        mask = labels == label
        n_batches = len(np.unique(batch[mask]))
        if n_batches in (1, mask.sum()):
            continue
        s = sk_silhouette_samples(X[mask], batch[mask])
        per_label.append(np.mean(1 - np.abs(s)))
    return float(np.mean(per_label))


def data(seed: int, n: int = 90, d: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array(["T", "B", "NK"]), size=n)
    batch = rng.choice(np.array(["c1", "c2", "c3"]), size=n)
    X = rng.normal(size=(n, d)) + 3.0 * (labels == "T")[:, None] + 1.0 * (batch == "c1")[:, None]
    return X, batch, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silhouette_samples_matches_sklearn(seed: int) -> None:
    X, _, labels = data(seed)
    labels = labels.astype(object)
    labels[0] = "singleton"  # a one-sample cluster scores 0 in both
    np.testing.assert_allclose(
        silhouette_samples(X, labels), sk_silhouette_samples(X, labels), **TOL
    )


def test_silhouette_blocks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    X, _, labels = data(3)
    whole = silhouette_samples(X, labels)
    monkeypatch.setattr(integration_module, "_CHUNK", 7)
    np.testing.assert_allclose(silhouette_samples(X, labels), whole, rtol=0, atol=1e-13)


def test_silhouette_of_coincident_points_is_zero() -> None:
    X = np.zeros((4, 2))
    np.testing.assert_array_equal(silhouette_samples(X, np.array([0, 0, 1, 1])), np.zeros(4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silhouette_label_matches_sklearn(seed: int) -> None:
    X, _, labels = data(seed)
    want = (silhouette_score(X, labels) + 1) / 2
    assert silhouette_label(X, labels) == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_silhouette_matches_scib_convention(seed: int) -> None:
    X, batch, labels = data(seed)
    assert batch_silhouette(X, batch, labels=labels) == pytest.approx(
        batch_oracle(X, batch, labels), rel=1e-10, abs=1e-12
    )
    assert batch_silhouette(X, batch) == pytest.approx(
        batch_oracle(X, batch, np.zeros(len(X))), rel=1e-10, abs=1e-12
    )


def test_batch_silhouette_separated_vs_mixed() -> None:
    rng = np.random.default_rng(4)
    n = 200
    batch = np.repeat([0, 1], n // 2)
    mixed = rng.normal(size=(n, 4))
    separated = mixed + 50.0 * batch[:, None]
    assert batch_silhouette(separated, batch) < 0.05
    assert batch_silhouette(mixed, batch) > 0.9


def test_label_silhouette_separated_vs_random() -> None:
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], 50)
    noise = rng.normal(size=(100, 3))
    assert silhouette_label(noise + 50.0 * labels[:, None], labels) > 0.95
    assert abs(silhouette_label(noise, labels) - 0.5) < 0.05


def test_per_label_table_and_skips(caplog: pytest.LogCaptureFixture) -> None:
    X, batch, labels = data(6)
    labels, batch = labels.astype(object), batch.astype(object)
    # "solo": a label seen in one batch only; "pair": two samples from two batches.
    labels[:3], batch[:3] = "solo", "c1"
    labels[3:5], batch[3:5] = "pair", ["c1", "c2"]
    table = batch_silhouette_per_label(X, batch, labels=labels)
    assert table["label"].tolist() == ["B", "NK", "T", "pair", "solo"]
    assert table.set_index("label")["skipped"].to_dict() == {
        "B": "",
        "NK": "",
        "T": "",
        "pair": "one sample per batch",
        "solo": "single batch",
    }
    assert table["score"].isna().tolist() == [False, False, False, True, True]
    assert table.set_index("label").loc["solo", "n_samples"] == 3
    with caplog.at_level(logging.INFO, logger="cellbridge.metrics.integration"):
        score = batch_silhouette(X, batch, labels=labels)
    assert "2 of 5 labels skipped" in caplog.text
    assert score == pytest.approx(batch_oracle(X, batch, labels), rel=1e-10)
    assert score == pytest.approx(table["score"].mean(), rel=1e-12)


def test_rotation_and_translation_invariance() -> None:
    X, batch, labels = data(7)
    R = ortho_group.rvs(X.shape[1], random_state=7)
    Y = X @ R + 10.0
    assert batch_silhouette(Y, batch, labels=labels) == pytest.approx(
        batch_silhouette(X, batch, labels=labels), rel=1e-10
    )
    assert silhouette_label(Y, labels) == pytest.approx(silhouette_label(X, labels), rel=1e-10)


def test_uniform_scaling_invariance() -> None:
    X, batch, labels = data(8)
    assert batch_silhouette(7.0 * X, batch) == pytest.approx(batch_silhouette(X, batch), rel=1e-10)
    assert silhouette_label(7.0 * X, labels) == pytest.approx(
        silhouette_label(X, labels), rel=1e-10
    )


X0 = np.random.default_rng(9).normal(size=(6, 2))
L0 = np.array([0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize(
    ("X", "labels", "field"),
    [
        (np.where(np.eye(6, 2) == 1, np.nan, X0), L0, "X"),
        (np.where(np.eye(6, 2) == 1, -np.inf, X0), L0, "X"),
        (X0, L0[:5], "labels"),
        (X0, np.zeros(6), "labels"),
        (X0, np.arange(6), "labels"),
        (X0, np.array([0, 0, 0, 1, 1, None], dtype=object), "labels"),
        (X0[:1], L0[:1], "X"),
        (X0[:, 0], L0, "X"),
    ],
)
def test_label_silhouette_bad_input(X: np.ndarray, labels: np.ndarray, field: str) -> None:
    with pytest.raises(InputError) as err:
        silhouette_label(X, labels)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("X", "batch", "labels", "field"),
    [
        (np.where(np.eye(6, 2) == 1, np.nan, X0), L0, None, "X"),
        (X0, L0[:4], None, "batch"),
        (X0, L0, L0[:4], "labels"),
        (X0, np.zeros(6), None, "batch"),
        (X0, np.array([0, 0, 0, 1, 1, np.nan]), None, "batch"),
        (X0[:1], L0[:1], None, "X"),
        # every label has one sample per batch: nothing to score
        (X0, L0, np.array([0, 0, 1, 1, 2, 2]), "batch"),
    ],
)
def test_batch_silhouette_bad_input(
    X: np.ndarray, batch: np.ndarray, labels: np.ndarray | None, field: str
) -> None:
    with pytest.raises(InputError) as err:
        batch_silhouette(X, batch, labels=labels)
    assert err.value.field == field
