"""Cross-modal retrieval: recall@k for matched pairs (POPPY §3.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from cellbridge.errors import InputError
from cellbridge.metrics._validate import as_embedding, as_ks

__all__ = ["recall_at_k"]

# Rows of the query handled at once: bounds the distance block to _CHUNK x N floats.
_CHUNK = 1024


def recall_at_k(
    query: np.ndarray,
    reference: np.ndarray,
    *,
    k: int | Sequence[int] = (1, 5, 10),
    metric: Literal["cosine", "euclidean"] = "cosine",
) -> pd.Series:
    r"""Fraction of queries whose matched reference is among their ``k`` nearest references.

    Row ``i`` of ``query`` and row ``i`` of ``reference`` are the two views of the same
    sample (e.g. the single-cell and the pseudobulk embedding of one patient, POPPY §3.3).
    With :math:`d_{ij}` the distance from query :math:`i` to reference :math:`j`,

    .. math::

        \mathrm{rank}_i = 1 + \#\{j : d_{ij} < d_{ii}\}, \qquad
        \mathrm{recall@}k = \frac{1}{N} \sum_{i=1}^{N} [\mathrm{rank}_i \le k].

    Ties: a reference *exactly* as far as the true match does not push the match down,
    so a tie at the ``k``-th distance counts as retrieved (the rank is one plus the number
    of references strictly closer). For distinct distances this is the rank that
    ``sklearn.neighbors.NearestNeighbors`` gives; with ties it resolves them in favour of
    the true match, which matters only for duplicated reference rows.

    Parameters
    ----------
    query
        ``(N, d)`` embeddings of the queries.
    reference
        ``(N, d)`` embeddings of the references; row ``i`` is the match of query row ``i``.
    k
        One neighbour count or several, each in ``1 .. N``.
    metric
        ``"cosine"`` (:math:`1 - \cos`, the contrastive-loss geometry; needs non-zero
        rows) or ``"euclidean"``.

    Returns
    -------
    pandas.Series
        recall@k in ``[0, 1]``, indexed by ``k`` (index name ``"k"``), named ``"recall"``.
        A random embedding scores :math:`k / N` in expectation.

    Raises
    ------
    InputError
        Non-2-D, non-finite or mismatched arrays, fewer than 2 samples, ``k`` outside
        ``1 .. N``, an unknown metric, or an all-zero row with ``metric="cosine"``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.eye(3)
    >>> recall_at_k(x, x, k=1).tolist()
    [1.0]
    """
    Q = as_embedding(query, "query")
    R = as_embedding(reference, "reference")
    if Q.shape != R.shape:
        raise InputError(
            "reference",
            f"shape {R.shape} differs from query shape {Q.shape}",
            fix="pass matched pairs: row i of query and row i of reference are one sample",
        )
    n = Q.shape[0]
    ks = as_ks(k, n)
    if metric == "cosine":
        Q = _unit_rows(Q, "query")
        R = _unit_rows(R, "reference")
    elif metric != "euclidean":
        raise InputError(
            "metric", "unknown metric", values=[metric], fix="use 'cosine' or 'euclidean'"
        )

    ranks = np.empty(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, n))
        D = 1.0 - Q[rows] @ R.T if metric == "cosine" else cdist(Q[rows], R)
        # The true distance is read from the same block, so ties are compared bit for bit.
        d_match = D[np.arange(len(rows)), rows][:, None]
        ranks[rows] = 1 + np.count_nonzero(d_match > D, axis=1)

    recall = [float(np.mean(ranks <= kk)) for kk in ks]
    return pd.Series(recall, index=pd.Index(ks, name="k"), name="recall", dtype=np.float64)


def _unit_rows(X: np.ndarray, field: str) -> np.ndarray:
    """Rows scaled to unit length; refuses all-zero rows (cosine is undefined there)."""
    norms = np.linalg.norm(X, axis=1)
    zero = norms == 0
    if zero.any():
        raise InputError(
            field,
            "all-zero rows have no cosine distance, rows",
            values=np.flatnonzero(zero).tolist(),
            fix="remove those samples or use metric='euclidean'",
        )
    return X / norms[:, None]
