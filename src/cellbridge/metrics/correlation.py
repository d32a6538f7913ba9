"""Distance preservation: embedding vs ground-truth pairwise distances (POPPY §3.4)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist
from scipy.stats import rankdata

from cellbridge.errors import InputError
from cellbridge.metrics._validate import as_embedding, as_labels

__all__ = ["distance_correlation"]

# Fewer pairs than this give no meaningful correlation; the row is kept with value NaN.
MIN_PAIRS = 3


def distance_correlation(
    embedding: np.ndarray,
    truth_distances: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    method: Literal["spearman", "pearson"] = "spearman",
) -> pd.DataFrame:
    r"""Correlation between embedding distances and ground-truth distances over sample pairs.

    For the pairs :math:`P = \{(i, j) : i < j\}` (the upper triangle),

    .. math::

        \rho = \mathrm{corr}\big(\{e_{ij}\}_{P}, \{t_{ij}\}_{P}\big),

    where :math:`e_{ij}` is the embedding distance (``scipy.spatial.distance.pdist``),
    :math:`t_{ij}` the ground-truth distance (e.g. the exact ontology W1 between cell-type
    compositions) and ``corr`` is Spearman's (Pearson on average ranks, ties averaged) or
    Pearson's. POPPY §3.4 reports the Spearman correlation within and across cohorts.

    With ``groups`` (cohort of each sample) the pairs are split: ``"within"`` = both samples
    in the same group (pooled over all groups, not averaged per group), ``"across"`` =
    different groups, ``"all"`` = every pair. Each subset is ranked on its own.

    A subset that has no correlation keeps its row: ``n_pairs`` says how many pairs it has,
    ``value`` is NaN and ``reason`` says why (fewer than 3 pairs, or constant distances on
    one side). Otherwise ``reason`` is the empty string. Nothing is dropped silently.

    Parameters
    ----------
    embedding
        ``(N, d)`` sample embeddings, ``N >= 2``.
    truth_distances
        ``(N, N)`` symmetric, finite ground-truth distances in the same sample order; the
        diagonal is not used.
    groups
        ``(N,)`` group labels (cohorts), at least 2 distinct values; ``None`` = only
        ``"all"``.
    metric
        Embedding distance: ``"euclidean"`` or ``"cosine"`` (needs non-zero rows).
    method
        ``"spearman"`` (default, as in the paper) or ``"pearson"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``subset``, ``n_pairs``, ``value``, ``reason``; rows ``"within"``,
        ``"across"``, ``"all"`` with ``groups``, else the single row ``"all"``.

    Raises
    ------
    InputError
        Bad or mismatched arrays, an asymmetric truth matrix, a single group, an unknown
        metric or method, or an all-zero row with ``metric="cosine"``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> truth = np.abs(x - x.T)
    >>> distance_correlation(x, truth)["value"].tolist()
    [1.0]
    """
    E = as_embedding(embedding, "embedding")
    n = E.shape[0]
    T = _truth_matrix(truth_distances, n)
    if metric not in ("euclidean", "cosine"):
        raise InputError(
            "metric", "unknown metric", values=[metric], fix="use 'euclidean' or 'cosine'"
        )
    if method not in ("spearman", "pearson"):
        raise InputError(
            "method", "unknown method", values=[method], fix="use 'spearman' or 'pearson'"
        )
    if metric == "cosine":
        zero = ~np.any(E != 0, axis=1)
        if zero.any():
            raise InputError(
                "embedding",
                "all-zero rows have no cosine distance, rows",
                values=np.flatnonzero(zero).tolist(),
                fix="remove those samples or use metric='euclidean'",
            )
    e = pdist(E, metric=metric)
    iu, ju = np.triu_indices(n, k=1)
    t = T[iu, ju]

    subsets: list[tuple[str, np.ndarray]]
    if groups is None:
        subsets = [("all", np.ones(len(e), dtype=bool))]
    else:
        g = as_labels(groups, "groups", n)
        g_codes = np.unique(g, return_inverse=True)[1]
        if g_codes.max() == 0:
            raise InputError(
                "groups",
                "has a single value; there are no pairs across groups",
                values=[g[0]],
                fix="pass groups=None for the overall correlation only",
            )
        same = g_codes[iu] == g_codes[ju]
        subsets = [("within", same), ("across", ~same), ("all", np.ones(len(e), dtype=bool))]

    rows = [
        (name, int(mask.sum()), *_correlate(e[mask], t[mask], method)) for name, mask in subsets
    ]
    frame = pd.DataFrame(rows, columns=["subset", "n_pairs", "value", "reason"])
    return frame


def _truth_matrix(truth: object, n: int) -> np.ndarray:
    """A finite, symmetric ``(n, n)`` float matrix."""
    T = np.asarray(truth)
    if T.shape != (n, n):
        raise InputError(
            "truth_distances",
            f"shape {T.shape} does not match the {n} embedded samples",
            fix=f"pass an ({n}, {n}) matrix in the embedding's sample order",
        )
    if not np.issubdtype(T.dtype, np.number):
        raise InputError("truth_distances", f"must be numeric, got dtype {T.dtype}")
    T = T.astype(np.float64, copy=False)
    iu, ju = np.triu_indices(n, k=1)
    bad = ~np.isfinite(T[iu, ju]) | ~np.isfinite(T[ju, iu])
    if bad.any():
        raise InputError(
            "truth_distances",
            f"{int(bad.sum())} NaN or infinite off-diagonal pairs, e.g.",
            values=list(zip(iu[bad].tolist(), ju[bad].tolist(), strict=True)),
            fix="compute the distances for every pair",
        )
    upper, lower = T[iu, ju], T[ju, iu]
    asym = ~np.isclose(upper, lower, rtol=1e-9, atol=1e-12)
    if asym.any():
        raise InputError(
            "truth_distances",
            "is not symmetric at pairs",
            values=list(zip(iu[asym].tolist(), ju[asym].tolist(), strict=True)),
            fix="pass a symmetric distance matrix",
        )
    return T


def _correlate(e: np.ndarray, t: np.ndarray, method: str) -> tuple[float, str]:
    """The correlation and an empty reason, or NaN and the reason there is none."""
    if len(e) < MIN_PAIRS:
        return np.nan, f"fewer than {MIN_PAIRS} pairs"
    if np.all(e == e[0]):
        return np.nan, "embedding distances are constant"
    if np.all(t == t[0]):
        return np.nan, "truth distances are constant"
    if method == "spearman":
        e, t = rankdata(e), rankdata(t)
    ec, tc = e - e.mean(), t - t.mean()
    ee, tt = float(ec @ ec), float(tc @ tc)
    value = float(ec @ tc) / np.sqrt(ee * tt)
    return float(np.clip(value, -1.0, 1.0)), ""
