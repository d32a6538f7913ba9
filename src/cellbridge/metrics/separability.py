"""Label separability of an embedding in the scIB convention (BiRD Table 1, Appendix B).

The four scores of BiRD's Table 1 — isolated labels, KMeans NMI, KMeans ARI and the label
silhouette — as ``scib-metrics`` (Luecken et al. 2022; the ``scib_metrics`` package)
computes them, written with NumPy and scikit-learn so that cellbridge does not depend on
JAX. They equal ``scib-metrics`` on the same inputs (tested where it installs), with one
caveat: KMeans is a local search, and ``scib-metrics`` runs its own JAX k-means++; where
the clusters are well separated both find the same partition (NMI and ARI equal), where
they are not the partitions (and so NMI/ARI) can differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from cellbridge.errors import InputError
from cellbridge.metrics._validate import as_embedding, as_labels
from cellbridge.metrics.integration import silhouette_samples

__all__ = ["isolated_labels", "kmeans_nmi_ari", "separability"]

#: The columns of :func:`separability`, in Table 1's order.
SCORES = ("isolated_labels", "kmeans_nmi", "kmeans_ari", "silhouette_label", "aggregate")


def isolated_labels(X: np.ndarray, labels: np.ndarray, *, batch: np.ndarray | None = None) -> float:
    r"""scIB's isolated-label score (ASW variant, as ``scib_metrics.isolated_labels``).

    The isolated labels are those present in the fewest batches; the score is the mean,
    over them, of the mean rescaled silhouette :math:`(s_i + 1) / 2` of their cells
    (silhouettes computed with all labels, :func:`silhouette_samples`). With one batch
    (default: ``batch=None``, e.g. one model per cell line) every label is isolated.

    Parameters
    ----------
    X
        ``(N, d)`` embedding.
    labels
        ``(N,)`` labels (e.g. drugs), 2 to ``N - 1`` distinct values.
    batch
        ``(N,)`` batches (e.g. cell lines); ``None`` = one batch.

    Returns
    -------
    float
        In ``[0, 1]``; 1 = every isolated label compact and far from the others.
    """
    X = as_embedding(X, "X")
    labels = as_labels(labels, "labels", X.shape[0])
    batch = (
        np.zeros(X.shape[0], dtype=np.int64)
        if batch is None
        else as_labels(batch, "batch", X.shape[0])
    )
    pairs = pd.DataFrame({"label": labels, "batch": batch}).drop_duplicates()
    batches_per_label = pairs.groupby("label")["batch"].count()
    isolated = batches_per_label.index[batches_per_label <= batches_per_label.min()]
    rescaled = (silhouette_samples(X, labels) + 1.0) / 2.0
    return float(np.mean([rescaled[labels == label].mean() for label in isolated]))


def kmeans_nmi_ari(X: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """NMI and ARI between the labels and KMeans with one cluster per label.

    As ``scib_metrics.nmi_ari_cluster_labels_kmeans``: ``k`` = number of distinct labels,
    NMI with the arithmetic mean normalisation, ARI; KMeans is scikit-learn's
    (k-means++, 10 restarts, seeded) instead of scib-metrics' JAX implementation (see the
    module note).

    Parameters
    ----------
    X
        ``(N, d)`` embedding.
    labels
        ``(N,)`` labels, between 2 and ``N - 1`` distinct.
    seed
        KMeans seed.

    Returns
    -------
    tuple of float
        ``(nmi, ari)``.
    """
    X = as_embedding(X, "X")
    labels = as_labels(labels, "labels", X.shape[0])
    k = np.unique(labels).size
    if k < 2 or k > X.shape[0] - 1:
        raise InputError(
            "labels", "need between 2 and N - 1 distinct labels", values=[k, X.shape[0]]
        )
    predicted = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)
    nmi = normalized_mutual_info_score(labels, predicted, average_method="arithmetic")
    return float(nmi), float(adjusted_rand_score(labels, predicted))


def separability(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    batch: np.ndarray | None = None,
    seed: int = 0,
) -> pd.Series:
    """The four scIB label-separability scores of BiRD Table 1 and their mean.

    Parameters
    ----------
    X
        ``(N, d)`` embedding (e.g. aligned test cells, :math:`f_\\theta(x)`).
    labels
        ``(N,)`` labels (e.g. each cell's drug).
    batch
        For :func:`isolated_labels`; ``None`` = one batch.
    seed
        KMeans seed.

    Returns
    -------
    pandas.Series
        ``isolated_labels``, ``kmeans_nmi``, ``kmeans_ari``, ``silhouette_label`` (rescaled
        to ``[0, 1]``) and ``aggregate``, their unweighted mean. The paper does not define
        its "Agg." column (its values are not the mean of the four); cellbridge uses the
        mean and says so.
    """
    X = as_embedding(X, "X")
    labels = as_labels(labels, "labels", X.shape[0])
    nmi, ari = kmeans_nmi_ari(X, labels, seed=seed)
    values = {
        "isolated_labels": isolated_labels(X, labels, batch=batch),
        "kmeans_nmi": nmi,
        "kmeans_ari": ari,
        "silhouette_label": float((silhouette_samples(X, labels).mean() + 1.0) / 2.0),
    }
    values["aggregate"] = float(np.mean(list(values.values())))
    return pd.Series(values, name="score")
