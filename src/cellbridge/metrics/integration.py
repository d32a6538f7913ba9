"""Integration scores in the scIB convention: batch and label silhouettes (POPPY §3.3)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from cellbridge.errors import InputError
from cellbridge.metrics._validate import as_embedding, as_labels

__all__ = [
    "batch_silhouette",
    "batch_silhouette_per_label",
    "silhouette_label",
    "silhouette_samples",
]

logger = logging.getLogger(__name__)

# Rows handled at once: bounds the distance block to _CHUNK x N floats.
_CHUNK = 1024


def silhouette_samples(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    r"""Euclidean silhouette of every sample (Rousseeuw 1987), in blocks of rows.

    .. math::

        a_i = \frac{1}{|C_i| - 1} \sum_{j \in C_i, j \ne i} d_{ij}, \qquad
        b_i = \min_{C \ne C_i} \frac{1}{|C|} \sum_{j \in C} d_{ij}, \qquad
        s_i = \frac{b_i - a_i}{\max(a_i, b_i)},

    with :math:`s_i = 0` when :math:`|C_i| = 1` or :math:`a_i = b_i = 0` (the
    ``sklearn.metrics.silhouette_samples`` conventions).

    Parameters
    ----------
    X
        ``(N, d)`` embedding.
    labels
        ``(N,)`` cluster labels, between 2 and ``N - 1`` distinct values.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` silhouettes in ``[-1, 1]``.

    Raises
    ------
    InputError
        Bad arrays, or fewer than 2 or more than ``N - 1`` distinct labels.
    """
    X = as_embedding(X, "X")
    codes = _codes(as_labels(labels, "labels", X.shape[0]), "labels")
    return _silhouette(X, codes)


def silhouette_label(X: np.ndarray, labels: np.ndarray) -> float:
    r"""Label silhouette rescaled to ``[0, 1]``, as scIB's ``silhouette_label``.

    .. math::

        \mathrm{ASW}_{\mathrm{label}} = \frac{1}{2}\Big(\frac{1}{N}\sum_i s_i + 1\Big)

    with :math:`s_i` the Euclidean silhouette of sample :math:`i` for ``labels``
    (:func:`silhouette_samples`); 1 = compact, well-separated labels, 0.5 = no structure
    (Luecken et al. 2022; POPPY §3.3).

    Parameters
    ----------
    X
        ``(N, d)`` embedding.
    labels
        ``(N,)`` labels (e.g. cell type or phenotype), 2 to ``N - 1`` distinct values.

    Returns
    -------
    float
        The rescaled mean silhouette, in ``[0, 1]``.

    Raises
    ------
    InputError
        Bad arrays, or fewer than 2 or more than ``N - 1`` distinct labels.
    """
    return float((silhouette_samples(X, labels).mean() + 1.0) / 2.0)


def batch_silhouette_per_label(
    X: np.ndarray, batch: np.ndarray, *, labels: np.ndarray | None = None
) -> pd.DataFrame:
    r"""Batch-mixing silhouette within each label, one row per label.

    For the samples :math:`L` of one label, with :math:`s_i^{\mathrm{batch}}` the Euclidean
    silhouette of sample :math:`i` for the *batch* labels computed on :math:`L` alone,

    .. math::

        \mathrm{score}_L = \frac{1}{|L|} \sum_{i \in L} \big(1 - |s_i^{\mathrm{batch}}|\big).

    A label whose samples come from a single batch, or from as many batches as samples,
    has no batch silhouette; as in scIB it is skipped: its row keeps ``n_samples`` and
    ``n_batches``, ``score`` is NaN and ``skipped`` says why.

    Parameters
    ----------
    X
        ``(N, d)`` embedding.
    batch
        ``(N,)`` batch of each sample (cohort, assay), at least 2 distinct values.
    labels
        ``(N,)`` biological label of each sample (cell type); ``None`` = one label for all.

    Returns
    -------
    pandas.DataFrame
        Columns ``label``, ``n_samples``, ``n_batches``, ``score``, ``skipped`` (empty
        string for scored labels), one row per label in sorted order.

    Raises
    ------
    InputError
        Bad arrays, or a single batch value overall.
    """
    X = as_embedding(X, "X")
    n = X.shape[0]
    batch_codes = _codes(as_labels(batch, "batch", n), "batch", check_range=False)
    label_values = np.zeros(n, dtype=np.int64) if labels is None else as_labels(labels, "labels", n)
    uniques, label_codes = np.unique(label_values, return_inverse=True)
    rows = []
    for code, label in enumerate(uniques.tolist()):
        mask = label_codes == code
        sub_batch = np.unique(batch_codes[mask], return_inverse=True)[1]
        n_sub, n_batches = int(mask.sum()), int(sub_batch.max()) + 1
        score, skipped = np.nan, ""
        if n_batches == 1:
            skipped = "single batch"
        elif n_batches == n_sub:
            skipped = "one sample per batch"
        else:
            s = _silhouette(X[mask], sub_batch)
            score = float(np.mean(1.0 - np.abs(s)))
        rows.append((label, n_sub, n_batches, score, skipped))
    return pd.DataFrame(rows, columns=["label", "n_samples", "n_batches", "score", "skipped"])


def batch_silhouette(
    X: np.ndarray, batch: np.ndarray, *, labels: np.ndarray | None = None
) -> float:
    r"""Batch-mixing silhouette in the scIB convention (``silhouette_batch``).

    .. math::

        \mathrm{ASW}_{\mathrm{batch}} = \frac{1}{|\mathcal{L}|} \sum_{L \in \mathcal{L}}
        \frac{1}{|L|} \sum_{i \in L} \big(1 - |s_i^{\mathrm{batch}}|\big),

    where :math:`\mathcal{L}` are the labels that have a batch silhouette (see
    :func:`batch_silhouette_per_label`) and :math:`s_i^{\mathrm{batch}}` is computed within
    the label's samples only (Luecken et al. 2022). Each label weighs the same whatever its
    size. 1 = batches perfectly mixed, 0 = batches fully separated; POPPY §3.3 reports it
    across cohorts and assays. Skipped labels are logged.

    Parameters
    ----------
    X
        ``(N, d)`` embedding.
    batch
        ``(N,)`` batch of each sample, at least 2 distinct values.
    labels
        ``(N,)`` biological label of each sample; ``None`` = one label for all.

    Returns
    -------
    float
        The score, in ``[0, 1]``.

    Raises
    ------
    InputError
        Bad arrays, a single batch, or no label with a batch silhouette.
    """
    table = batch_silhouette_per_label(X, batch, labels=labels)
    skipped = table[table["skipped"] != ""]
    if len(skipped) == len(table):
        raise InputError(
            "batch",
            "no label has samples from 2 or more batches with a repeated batch",
            values=table["label"].tolist(),
            fix="pass labels shared across batches, or labels=None",
        )
    if len(skipped):
        logger.info(
            "batch_silhouette: %d of %d labels skipped (%s)",
            len(skipped),
            len(table),
            ", ".join(
                f"{lab!r}: {why}"
                for lab, why in zip(skipped["label"], skipped["skipped"], strict=True)
            ),
        )
    return float(table["score"].mean())


def _codes(labels: np.ndarray, field: str, *, check_range: bool = True) -> np.ndarray:
    """Integer codes ``0 .. C - 1``; refuses a single value (and, if asked, C = N)."""
    uniques, codes = np.unique(labels, return_inverse=True)
    if len(uniques) < 2:
        raise InputError(
            field, "has a single value", values=uniques.tolist(), fix="pass at least 2 groups"
        )
    if check_range and len(uniques) == len(labels):
        raise InputError(
            field,
            f"has as many distinct values as samples ({len(labels)}); silhouette needs a repeat",
            fix="pass labels shared by at least two samples",
        )
    return np.asarray(codes, dtype=np.int64)


def _silhouette(X: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Silhouettes for integer codes ``0 .. C - 1`` (C >= 2); inputs already checked."""
    n = X.shape[0]
    n_clusters = int(codes.max()) + 1
    onehot = np.zeros((n, n_clusters))
    onehot[np.arange(n), codes] = 1.0
    sizes = onehot.sum(axis=0)
    out = np.empty(n)
    for start in range(0, n, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, n))
        sums = cdist(X[rows], X, metric="euclidean") @ onehot
        own = codes[rows]
        own_size = sizes[own]
        a = sums[np.arange(len(rows)), own] / np.maximum(own_size - 1.0, 1.0)
        means = sums / sizes
        means[np.arange(len(rows)), own] = np.inf
        b = means.min(axis=1)
        denom = np.maximum(a, b)
        s = np.divide(b - a, denom, out=np.zeros_like(a), where=denom > 0)
        out[rows] = np.where(own_size > 1, s, 0.0)
    return out
