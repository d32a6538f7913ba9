"""Input checks shared by the metric functions; each raises an InputError."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cellbridge.errors import InputError

__all__ = ["as_embedding", "as_ks", "as_labels"]


def as_embedding(X: object, field: str) -> np.ndarray:
    """A finite ``(N, d)`` float array with ``N >= 2`` and ``d >= 1``."""
    array = np.asarray(X)
    if array.ndim != 2:
        raise InputError(
            field, f"must be a 2-D (samples x dimensions) array, got shape {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError(field, f"must be numeric, got dtype {array.dtype}")
    if array.shape[0] < 2:
        raise InputError(
            field, f"needs at least 2 samples, got {array.shape[0]}", fix="pass more samples"
        )
    if array.shape[1] < 1:
        raise InputError(field, "has no dimensions (0 columns)")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise InputError(
            field,
            f"{int(bad.sum())} NaN or infinite values, in rows",
            values=rows.tolist(),
            fix="remove or fix those samples upstream; metrics do not impute",
        )
    return array


def as_labels(labels: object, field: str, n: int) -> np.ndarray:
    """A 1-D label array of length ``n`` with no missing values."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InputError(field, f"must be 1-D, got shape {array.shape}")
    if array.shape[0] != n:
        raise InputError(
            field,
            f"has {array.shape[0]} entries but the embedding has {n} samples",
            fix="pass one label per sample, in the embedding's row order",
        )
    missing = pd.isna(array)
    if missing.any():
        raise InputError(
            field,
            f"{int(missing.sum())} missing labels, at positions",
            values=np.flatnonzero(missing).tolist(),
            fix="label or remove those samples",
        )
    return array


def as_ks(k: int | Sequence[int], n: int, field: str = "k") -> list[int]:
    """The neighbour counts, each an integer in ``1 .. n``, without repeats."""
    ks: list[object] = np.asarray(k, dtype=object).ravel().tolist()
    if not ks:
        raise InputError(field, "is empty", fix="pass at least one k, e.g. (1, 5, 10)")
    bad_type = [v for v in ks if isinstance(v, bool) or not isinstance(v, int | np.integer)]
    if bad_type:
        raise InputError(field, "must be integers", values=bad_type)
    out = [int(v) for v in ks if isinstance(v, int | np.integer)]
    bad = [v for v in out if v < 1 or v > n]
    if bad:
        raise InputError(
            field,
            f"must lie in 1 .. N = {n}",
            values=bad,
            fix="pass k between 1 and the number of reference samples",
        )
    if len(set(out)) != len(out):
        raise InputError(field, "has repeated values", values=out, fix="pass each k once")
    return out
