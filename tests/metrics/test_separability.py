"""scIB label separability (BiRD Table 1): against scib-metrics where it installs, and
against scikit-learn references everywhere."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import silhouette_samples as sk_silhouette_samples

from cellbridge.errors import InputError
from cellbridge.metrics.separability import isolated_labels, kmeans_nmi_ari, separability


def _blobs(seed: int, n_labels: int = 4, per: int = 25, spread: float = 0.3) -> tuple:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, size=(n_labels, 6))
    labels = np.repeat([f"d{k}" for k in range(n_labels)], per)
    X = np.repeat(centres, per, axis=0) + rng.normal(0, spread, size=(n_labels * per, 6))
    return X, labels


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 1000), n_batches=st.integers(1, 3))
def test_isolated_labels_equals_its_definition_with_sklearn_silhouettes(
    seed: int, n_batches: int
) -> None:
    X, labels = _blobs(seed, spread=2.0)
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, n_batches, size=labels.size)
    batch[labels == "d0"] = 0  # d0 in one batch only: isolated when there are several
    s = (sk_silhouette_samples(X, labels) + 1) / 2
    per_label = {lab: {b for b in batch[labels == lab]} for lab in np.unique(labels)}
    fewest = min(len(v) for v in per_label.values())
    isolated = [lab for lab, v in per_label.items() if len(v) == fewest]
    expected = np.mean([s[labels == lab].mean() for lab in isolated])
    assert isolated_labels(X, labels, batch=batch) == pytest.approx(expected, rel=1e-12)


def test_separated_blobs_score_near_one_and_mixed_labels_near_chance() -> None:
    X, labels = _blobs(0)
    good = separability(X, labels)
    assert good["kmeans_nmi"] == pytest.approx(1.0) and good["kmeans_ari"] == pytest.approx(1.0)
    assert good["silhouette_label"] > 0.9 and good["isolated_labels"] > 0.9
    assert good["aggregate"] == pytest.approx(good.iloc[:4].mean())
    shuffled = np.random.default_rng(1).permutation(labels)
    bad = separability(X, shuffled)
    assert bad["kmeans_ari"] < 0.1 and bad["silhouette_label"] < 0.55


def test_kmeans_scores_equal_sklearn_on_the_same_partition() -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    X, labels = _blobs(3, spread=6.0)  # overlapping: a partition that is not the labels
    predicted = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(X)
    nmi, ari = kmeans_nmi_ari(X, labels, seed=0)
    assert nmi == pytest.approx(normalized_mutual_info_score(labels, predicted))
    assert ari == pytest.approx(adjusted_rand_score(labels, predicted))
    assert 0 < ari < 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_scib_metrics(seed: int) -> None:
    """Where scib-metrics installs (JAX), every score equals it to 1e-6."""
    scib = pytest.importorskip("scib_metrics", reason="scib-metrics (JAX) is not installed")
    X, labels = _blobs(seed, n_labels=5, spread=0.8)
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 2, size=labels.size)
    ours = separability(X, labels, batch=batch)
    theirs = scib.nmi_ari_cluster_labels_kmeans(X, labels)
    assert ours["kmeans_nmi"] == pytest.approx(theirs["nmi"], abs=1e-6)
    assert ours["kmeans_ari"] == pytest.approx(theirs["ari"], abs=1e-6)
    assert ours["silhouette_label"] == pytest.approx(
        float(scib.silhouette_label(X, labels)), abs=1e-6
    )
    assert ours["isolated_labels"] == pytest.approx(
        float(scib.isolated_labels(X, labels, batch)), abs=1e-6
    )
    one_batch = np.zeros(labels.size, dtype=int)
    assert isolated_labels(X, labels) == pytest.approx(
        float(scib.isolated_labels(X, labels, one_batch)), abs=1e-6
    )


def test_bad_input_is_refused() -> None:
    X, labels = _blobs(0)
    with pytest.raises(InputError, match="labels"):
        separability(X, labels[:-1])
    with pytest.raises(InputError, match="labels"):
        kmeans_nmi_ari(X, np.zeros(labels.size))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        separability(bad, labels)
