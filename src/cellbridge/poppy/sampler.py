"""Cross-cohort positive sampler — POPPY §2.2.4.

A batch is built around an anchor ``i``: a positive ``p`` from a *different cohort* with
non-zero similarity, then fillers that are all strictly less similar to ``i`` than ``p``
is, same-cohort ones first. The contrastive loss (POPPY Eq. 3–5) then sees a
cross-cohort pair as the best match of the anchor, so the embedding is pushed to align
patients across cohorts instead of clustering by cohort.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from torch.utils.data import Sampler

from cellbridge.errors import InputError

__all__ = ["CrossCohortSampler", "sample_batch"]

log = logging.getLogger(__name__)

Fallback = Literal[
    "single_cohort", "no_cross_cohort_positive", "no_similar_sample", "few_negatives"
]

_FALLBACK_MESSAGES: dict[str, str] = {
    "single_cohort": "only one cohort: positives are drawn from any other sample with S > 0",
    "no_cross_cohort_positive": (
        "an anchor has no other-cohort sample with S > 0: its positive is the most "
        "similar other sample"
    ),
    "no_similar_sample": (
        "an anchor has no other sample with S > 0: its positive is a uniformly random other sample"
    ),
    "few_negatives": (
        "fewer than B - 2 samples are strictly less similar to an anchor than its "
        "positive: the batch is filled with the remaining samples by increasing similarity"
    ),
}


def sample_batch(
    i: int,
    S_row: ArrayLike,
    cohorts: ArrayLike,
    B: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One batch of the cross-cohort positive sampler around anchor ``i`` (POPPY §2.2.4).

    Order of the returned indices: ``[i, p, fillers...]`` — the anchor first, its
    positive second, then ``B - 2`` fillers.

    1. **Positive** ``p``: uniform over the samples of a different cohort than ``i`` with
       ``S_row[p] > 0``.
    2. **Fillers**: drawn without replacement from ``{j != i, p : S_row[j] < S_row[p]}``
       (strictly less similar to the anchor than the positive). "Preferential sampling to
       same-cohort samples" is read as: the candidates of the anchor's cohort come first
       in random order, then the others in random order, and the first ``B - 2`` are
       kept. So fillers are all same-cohort whenever enough same-cohort candidates exist.

    Fallbacks (each emits a ``UserWarning``):

    - only one cohort among the other samples: the positive is uniform over the other
      samples with ``S_row > 0`` (``"single_cohort"``);
    - no other-cohort sample with ``S_row > 0``: the positive is the most similar other
      sample, ties broken uniformly (``"no_cross_cohort_positive"``);
    - no other sample with ``S_row > 0`` at all: a uniformly random other sample
      (``"no_similar_sample"``);
    - fewer than ``B - 2`` strictly-less-similar samples: all of them are taken (same
      cohort first as above), then the batch is filled from the remaining samples by
      increasing similarity, ties in random order (``"few_negatives"``).

    Parameters
    ----------
    i
        The anchor's index.
    S_row
        ``(N,)`` row ``i`` of the similarity matrix: finite, non-negative.
    cohorts
        ``(N,)`` cohort label of every sample (any comparable labels).
    B
        Batch size, ``2 <= B <= N``.
    rng
        Source of all randomness.

    Returns
    -------
    numpy.ndarray
        ``(B,)`` int64 distinct sample indices, ``[i, p, fillers...]``.

    Raises
    ------
    InputError
        Bad shapes, ``i`` out of range, ``B`` outside ``[2, N]``, or negative /
        non-finite similarities.
    """
    row = np.asarray(S_row, dtype=np.float64)
    labels = np.asarray(cohorts)
    if row.ndim != 1:
        raise InputError("S_row", "must be 1-d", values=[row.shape], fix="pass S[i] densified")
    n = row.shape[0]
    if labels.shape != (n,):
        raise InputError(
            "cohorts",
            f"must hold one label per sample ({n})",
            values=[labels.shape],
            fix="pass the cohort of every row of S, in the same order",
        )
    _check_batch_size(B, n)
    if not (0 <= i < n):
        raise InputError("i", f"anchor index out of range [0, {n})", values=[i])
    bad = np.flatnonzero(~(np.isfinite(row) & (row >= 0)))
    if bad.size:
        raise InputError(
            "S_row",
            "similarities must be finite and non-negative; bad columns",
            values=bad.tolist(),
            fix="use a similarity kernel such as cellbridge.ot.diffusion_kernel",
        )
    batch, fallbacks = _sample_batch(i, row, labels, B, rng)
    for reason in fallbacks:
        warnings.warn(_FALLBACK_MESSAGES[reason], UserWarning, stacklevel=2)
    return batch


def _sample_batch(
    i: int, row: np.ndarray, labels: np.ndarray, B: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[Fallback]]:
    """:func:`sample_batch` without validation or warnings; returns the fallbacks taken."""
    n = row.shape[0]
    fallbacks: list[Fallback] = []
    other = np.arange(n) != i
    same = labels == labels[i]

    candidates = np.flatnonzero(other & ~same & (row > 0))
    if candidates.size == 0:
        if not np.any(other & ~same):
            fallbacks.append("single_cohort")
            candidates = np.flatnonzero(other & (row > 0))
        if candidates.size == 0:
            similar = np.flatnonzero(other & (row > 0))
            if similar.size:
                fallbacks.append("no_cross_cohort_positive")
                candidates = similar[row[similar] == row[similar].max()]
            else:
                fallbacks.append("no_similar_sample")
                candidates = np.flatnonzero(other)
    p = int(rng.choice(candidates))

    rest = other & (np.arange(n) != p)
    less = rest & (row < row[p])
    # Shuffle within each group so the same-cohort-first order is random inside a group.
    same_first = np.concatenate(
        [
            rng.permutation(np.flatnonzero(less & same)),
            rng.permutation(np.flatnonzero(less & ~same)),
        ]
    )
    fillers = same_first[: B - 2]
    if fillers.size < B - 2:
        fallbacks.append("few_negatives")
        remaining = np.flatnonzero(rest & ~less)
        # lexsort: last key is primary (similarity), a random key breaks ties.
        order = np.lexsort((rng.random(remaining.size), row[remaining]))
        fillers = np.concatenate([fillers, remaining[order][: B - 2 - fillers.size]])
    batch = np.concatenate([[i, p], fillers]).astype(np.int64)
    return batch, fallbacks


def _check_batch_size(B: int, n: int) -> None:
    if isinstance(B, bool) or not isinstance(B, int | np.integer) or not (2 <= B <= n):
        raise InputError(
            "B",
            f"batch size must be an integer in [2, {n}] (anchor + positive, at most all samples)",
            values=[B],
            fix="choose a batch size between 2 and the number of samples",
        )


class CrossCohortSampler(Sampler[list[int]]):
    """Batches of the cross-cohort positive sampler for one epoch (POPPY §2.2.4).

    Every sample is the anchor of exactly one batch per epoch, in a seeded random order;
    each batch is built by :func:`sample_batch` (``[anchor, positive, fillers...]``). So
    an epoch has ``N`` batches of ``B`` indices and every sample also appears in other
    samples' batches as positive or filler. Use as ``DataLoader(ds, batch_sampler=...)``.

    Randomness: the generator of an epoch is ``numpy.random.default_rng(seed + epoch)``;
    :meth:`set_epoch` selects the epoch (like ``DistributedSampler``), and iterating
    twice without it yields the same batches.

    Fallbacks of :func:`sample_batch` are warned about (``UserWarning``) at most once per
    kind per sampler; a single-cohort input is warned about at construction. Counts of
    fallbacks per epoch are logged at DEBUG level.

    Parameters
    ----------
    S
        ``(N, N)`` similarity (dense array or SciPy sparse), e.g. the diffusion kernel of
        POPPY A.2: finite, non-negative. Only row ``i`` is read for anchor ``i``, so
        symmetry is not required.
    cohorts
        ``(N,)`` cohort label per sample.
    B
        Batch size, ``2 <= B <= N``.
    seed
        Base seed.
    warn
        ``False`` logs the fallbacks at INFO level instead of warning (e.g. for a small
        fixed validation set, where they are expected).
    """

    def __init__(
        self,
        S: ArrayLike | sp.spmatrix | sp.sparray,
        cohorts: ArrayLike,
        B: int,
        *,
        seed: int = 0,
        warn: bool = True,
    ) -> None:
        super().__init__()
        self._S = _as_csr(S)
        self._emit_warnings = warn
        n = self._S.shape[0]
        labels = np.asarray(cohorts)
        if labels.shape != (n,):
            raise InputError(
                "cohorts",
                f"must hold one label per sample ({n})",
                values=[labels.shape],
                fix="pass the cohort of every row of S, in the same order",
            )
        _check_batch_size(B, n)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise InputError("seed", "must be an integer", values=[seed])
        self.cohorts = labels
        self.B = int(B)
        self.seed = int(seed)
        self.epoch = 0
        self._warned: set[str] = set()
        if np.unique(labels).size < 2:
            self._warn("single_cohort")

    @property
    def n_samples(self) -> int:
        """``N``, the number of samples (rows of ``S``)."""
        return int(self._S.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; its batches are seeded by ``seed + epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per epoch: one per anchor, i.e. ``N``."""
        return self.n_samples

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the epoch's batches as lists of sample indices, anchor first."""
        rng = np.random.default_rng(self.seed + self.epoch)
        counts: dict[str, int] = {}
        for i in rng.permutation(self.n_samples):
            row = self._S.getrow(int(i)).toarray().ravel()
            batch, fallbacks = _sample_batch(int(i), row, self.cohorts, self.B, rng)
            for reason in fallbacks:
                counts[reason] = counts.get(reason, 0) + 1
                # The single-cohort case was already reported once in __init__.
                if reason != "single_cohort":
                    self._warn(reason)
            yield batch.tolist()
        if counts:
            log.debug("epoch %d sampler fallbacks: %s", self.epoch, counts)

    def _warn(self, reason: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            if self._emit_warnings:
                warnings.warn(_FALLBACK_MESSAGES[reason], UserWarning, stacklevel=3)
            else:
                log.info("sampler fallback: %s", _FALLBACK_MESSAGES[reason])


def _as_csr(S: ArrayLike | sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Validate ``S`` as a square, finite, non-negative matrix; return it as CSR."""
    shape: tuple[int, ...] = (
        tuple(S.shape) if isinstance(S, sp.spmatrix | sp.sparray) else np.shape(S)
    )
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise InputError(
            "S",
            "must be a non-empty square (N, N) similarity matrix",
            values=[shape],
            fix="pass the sample x sample similarity, e.g. from cellbridge.ot.diffusion_kernel",
        )
    mat = sp.csr_matrix(S if sp.issparse(S) else np.asarray(S, dtype=np.float64))
    mat = mat.astype(np.float64)
    data = mat.data
    if not np.all(np.isfinite(data) & (data >= 0)):
        bad = data[~(np.isfinite(data) & (data >= 0))]
        raise InputError(
            "S",
            "entries must be finite and non-negative",
            values=bad.tolist(),
            fix="use a similarity kernel such as cellbridge.ot.diffusion_kernel",
        )
    return mat
