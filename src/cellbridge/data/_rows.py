"""Read a sorted set of rows from an on-disk 2-D array in a few contiguous slices."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["read_sorted_rows", "spans"]

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
    # row r occupies [r, r + 1) in units of rows
    max_gap, max_span = GAP_BYTES // row_bytes, max(1, SPAN_BYTES // row_bytes)
    for start, stop in spans(rows, rows + 1, max_gap=max_gap, max_span=max_span):
        lo, hi = int(rows[start]), int(rows[stop - 1]) + 1
        if hi - lo == stop - start:
            out[start:stop] = array[lo:hi]
        else:
            out[start:stop] = np.asarray(array[lo:hi])[rows[start:stop] - lo]
    return out


def spans(
    starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64], *, max_gap: int, max_span: int
) -> Iterator[tuple[int, int]]:
    """Group sorted, disjoint ranges ``[starts[i], stops[i])`` into slices read at once.

    Yields ``(first, last)``: ranges ``first .. last - 1`` are read as the one slice
    ``[starts[first], stops[last - 1])``. Neighbours whose gap is at most ``max_gap`` share
    a slice, and a slice spans at most ``max_span`` (or one range, when a range alone is
    longer). Used for rows of a dense array (units of rows) and for rows of a CSR matrix
    (units of stored entries).
    """
    if not len(starts):
        return
    breaks = np.flatnonzero(starts[1:] - stops[:-1] > max_gap) + 1
    bounds = [0, *breaks.tolist(), len(starts)]
    for first, last in itertools.pairwise(bounds):
        while first < last:
            # ranges first..cut-1 end within max_span of the first one's start
            cut = int(np.searchsorted(stops[first:last], starts[first] + max_span, "right"))
            cut = first + max(cut, 1)
            yield first, cut
            first = cut
