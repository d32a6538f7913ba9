"""Patient-level classification: AUROC with a bootstrap interval (POPPY §3.5, Figure 4b)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from cellbridge.errors import InputError

__all__ = ["AurocCI", "auroc_with_ci"]

log = logging.getLogger(__name__)

# Resampled scores held at once: bounds the bootstrap's memory to about this many floats.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class AurocCI:
    """An AUROC with its percentile-bootstrap confidence interval.

    Attributes
    ----------
    auroc
        The AUROC on all samples.
    low, high
        The interval's bounds.
    level
        Its nominal coverage (e.g. 0.95).
    n, n_positive
        Samples, and samples with label 1.
    n_boot
        Resamples drawn.
    n_boot_used
        Resamples that held both classes and entered the interval; the other
        ``n_boot - n_boot_used`` had one class only and no AUROC.
    """

    auroc: float
    low: float
    high: float
    level: float
    n: int
    n_positive: int
    n_boot: int
    n_boot_used: int


def auroc_with_ci(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> AurocCI:
    r"""Area under the ROC curve and a percentile-bootstrap confidence interval.

    The estimate is ``sklearn.metrics.roc_auc_score``, i.e. the Mann–Whitney statistic

    .. math::

        \mathrm{AUROC} = \frac{1}{n_1 n_0} \sum_{i: y_i = 1} \sum_{j: y_j = 0}
            \left([s_i > s_j] + \tfrac12 [s_i = s_j]\right),

    the probability that a random positive (responder, POPPY §3.5) outscores a random
    negative, ties counted half. The interval resamples the ``n`` samples with replacement
    ``n_boot`` times and takes the :math:`(1 - \text{level})/2` and
    :math:`(1 + \text{level})/2` quantiles (linear interpolation) of the resampled AUROCs.

    A resample that holds one class only has no AUROC: it is *skipped*, not redrawn, and
    counted (``n_boot - n_boot_used``). The interval is thus conditional on both classes
    being present, which matters only when a class has very few samples (a class of
    ``m`` samples is missing from a resample with probability :math:`(1 - m/n)^n
    \approx e^{-m}`). The resampled AUROCs use the rank form of the formula above
    (average ranks, vectorised over resamples), which equals ``roc_auc_score``.

    Parameters
    ----------
    y_true
        ``(n,)`` labels, 0/1 or booleans, 1 = positive (responder); both classes present.
    y_score
        ``(n,)`` finite scores, higher = more likely positive (e.g. the logits
        :math:`\hat y` of the phenotype head).
    n_boot
        Bootstrap resamples, ``>= 1``.
    level
        Coverage of the interval, in ``(0, 1)``.
    seed
        Seed of the resampling; the same seed gives the same interval.

    Returns
    -------
    AurocCI
        ``auroc``, ``low``, ``high``, ``level``, ``n``, ``n_positive``, ``n_boot``,
        ``n_boot_used``.

    Raises
    ------
    InputError
        Arrays that are not 1-D or differ in length, labels other than 0/1, a single
        class, non-finite scores, bad ``n_boot``/``level``/``seed``, or no resample with
        both classes.

    Examples
    --------
    >>> result = auroc_with_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_boot=200)
    >>> result.auroc
    0.75
    >>> result.low <= result.auroc <= result.high
    True
    """
    y, s = _check_inputs(y_true, y_score)
    n_boot, level, seed = _check_options(n_boot, level, seed)
    n = y.size
    estimate = float(roc_auc_score(y, s))

    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    boot = []
    for start in range(0, n_boot, rows):
        # Drawn chunk by chunk from one generator: the same stream as one big draw.
        idx = rng.integers(0, n, size=(min(rows, n_boot - start), n))
        boot.append(_resampled_auroc(y, s, idx))
    values = np.concatenate(boot)
    used = values[np.isfinite(values)]
    if used.size == 0:
        raise InputError(
            "y_true",
            f"none of the {n_boot} resamples held both classes",
            values=[f"{int(y.sum())} positives of {n}"],
            fix="pass more samples of the smaller class, or a larger n_boot",
        )
    if used.size < n_boot:
        log.info("AUROC bootstrap: %d of %d resamples had one class", n_boot - used.size, n_boot)
    low, high = np.quantile(used, [(1 - level) / 2, (1 + level) / 2])
    return AurocCI(
        auroc=estimate,
        low=float(low),
        high=float(high),
        level=level,
        n=n,
        n_positive=int(y.sum()),
        n_boot=n_boot,
        n_boot_used=int(used.size),
    )


def _resampled_auroc(y: np.ndarray, s: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """AUROC of each row of resample indices ``idx``; NaN for a row with one class."""
    Y = y[idx]
    ranks = rankdata(s[idx], axis=1)  # average ranks: ties count half
    n1 = Y.sum(axis=1).astype(np.float64)
    n0 = idx.shape[1] - n1
    both = (n1 > 0) & (n0 > 0)
    out = np.full(idx.shape[0], np.nan)
    rank_sum = (ranks * Y).sum(axis=1)
    out[both] = (rank_sum[both] - n1[both] * (n1[both] + 1) / 2) / (n1[both] * n0[both])
    return out


def _check_inputs(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score)
    for field, array in (("y_true", y), ("y_score", s)):
        if array.ndim != 1:
            raise InputError(field, f"must be 1-D, got shape {array.shape}")
    if y.size != s.size:
        raise InputError(
            "y_score",
            f"has {s.size} entries but y_true has {y.size}",
            fix="pass one score per labelled sample, in the same order",
        )
    if y.dtype != np.bool_ and not np.issubdtype(y.dtype, np.number):
        raise InputError(
            "y_true",
            f"must be 0/1 or booleans, got dtype {y.dtype}",
            values=np.unique(y.astype(str))[:5].tolist(),
            fix="encode the classes as 0/1, 1 = responder",
        )
    bad = ~np.isin(y, [0, 1])
    if bad.any():
        raise InputError(
            "y_true",
            f"{int(bad.sum())} labels are not 0 or 1, at positions",
            values=np.flatnonzero(bad).tolist(),
            fix="encode the classes as 0/1, 1 = responder",
        )
    y = y.astype(np.int64)
    classes = np.unique(y)
    if classes.size < 2:
        raise InputError(
            "y_true",
            "has one class only; the AUROC is undefined",
            values=classes.tolist(),
            fix="evaluate on samples of both classes",
        )
    if s.dtype == np.bool_ or not np.issubdtype(s.dtype, np.number):
        raise InputError("y_score", f"must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    nonfinite = ~np.isfinite(s)
    if nonfinite.any():
        raise InputError(
            "y_score",
            f"{int(nonfinite.sum())} NaN or infinite scores, at positions",
            values=np.flatnonzero(nonfinite).tolist(),
            fix="score every sample; the AUROC does not drop samples",
        )
    return y, s


def _check_options(n_boot: object, level: object, seed: object) -> tuple[int, float, int]:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise InputError("n_boot", "must be an integer >= 1", values=[n_boot], fix="e.g. 1000")
    if (
        isinstance(level, bool)
        or not isinstance(level, int | float | np.integer | np.floating)
        or not math.isfinite(level)
        or not 0 < level < 1
    ):
        raise InputError("level", "must lie strictly between 0 and 1", values=[level], fix="0.95")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError("seed", "must be a non-negative integer", values=[seed])
    return int(n_boot), float(level), int(seed)
