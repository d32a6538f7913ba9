"""Read a sorted set of rows from an on-disk 2-D array in a few contiguous slices."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["read_sorted_rows"]

# One h5py read call costs ~10-20 us; reading 64 KiB more costs about as much. Rows closer
# than this are read together with the gap between them, farther ones in separate calls.
GAP_BYTES = 64 * 1024
# A merged slice spans at most this much, so a dense selection over a large array is read
# in pieces instead of as one slice the size of the array.
SPAN_BYTES = 32 * 1024**2


def read_sorted_rows(array: Any, rows: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Rows ``rows`` (sorted, unique) of a 2-D array that supports ``array[lo:hi]``.

    h5py's own fancy indexing on a chunked dataset costs ~80 us per row (a point
    selection walked chunk by chunk); merging the rows into runs and reading each run as
    one slice costs ~10 us per isolated row and runs at disk speed on dense selections.
    Memory: the result plus one slice of at most ``SPAN_BYTES`` (or one row).
    """
    dim = array.shape[1]
    out = np.empty((len(rows), dim), dtype=array.dtype)
    row_bytes = max(1, dim * np.dtype(array.dtype).itemsize)
    for start, stop in _runs(rows, max(1, GAP_BYTES // row_bytes), max(1, SPAN_BYTES // row_bytes)):
        lo, hi = int(rows[start]), int(rows[stop - 1]) + 1
        if hi - lo == stop - start:
            out[start:stop] = array[lo:hi]
        else:
            out[start:stop] = np.asarray(array[lo:hi])[rows[start:stop] - lo]
    return out


def _runs(rows: npt.NDArray[np.int64], max_gap: int, max_span: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` positions in ``rows`` of runs with small gaps and bounded span."""
    breaks = np.flatnonzero(np.diff(rows) > max_gap) + 1
    bounds = np.concatenate([[0], breaks, [len(rows)]]).tolist()
    for start, stop in itertools.pairwise(bounds):
        while stop - start and rows[stop - 1] - rows[start] >= max_span:
            # the first row at or beyond max_span from this run's first row starts the next
            cut = start + int(np.searchsorted(rows[start:stop], rows[start] + max_span))
            yield start, cut
            start = cut
        if stop > start:
            yield start, stop
