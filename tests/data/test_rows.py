"""Grouping sorted ranges into read slices (``cellbridge.data._rows.spans``), shared by the
dense row reader of the cell store and the CSR row reader of plate files: invariants
checked on random ranges against the rule written out."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.data._rows import spans


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 20), max_size=40),
    gaps=st.lists(st.integers(0, 30), min_size=40, max_size=40),
    max_gap=st.integers(0, 25),
    max_span=st.integers(1, 80),
)
def test_slices_cover_every_range_once_and_keep_the_limits(
    lengths: list[int], gaps: list[int], max_gap: int, max_span: int
) -> None:
    starts, stops, at = [], [], 0
    for length, gap in zip(lengths, gaps, strict=False):
        at += gap
        starts.append(at)
        at += length
        stops.append(at)
    lo, hi = np.array(starts, dtype=np.int64), np.array(stops, dtype=np.int64)
    slices = list(spans(lo, hi, max_gap=max_gap, max_span=max_span))
    # every range once, in order
    assert [i for first, last in slices for i in range(first, last)] == list(range(len(lo)))
    for first, last in slices:
        assert last > first
        # within a slice no gap exceeds max_gap
        assert (lo[first + 1 : last] - hi[first : last - 1] <= max_gap).all()
        # the span stays within max_span, unless the slice is one range
        assert last - first == 1 or hi[last - 1] - lo[first] <= max_span
    for (prev, last), (first, _) in itertools.pairwise(slices):
        # a cut is made only where the gap or the span forced it
        gap_break = lo[first] - hi[last - 1] > max_gap
        span_break = hi[first] - lo[prev] > max_span
        assert gap_break or span_break


def test_rows_of_a_dense_array_are_unit_ranges() -> None:
    rows = np.array([0, 1, 2, 5, 6, 30], dtype=np.int64)
    assert list(spans(rows, rows + 1, max_gap=2, max_span=100)) == [(0, 5), (5, 6)]
    assert list(spans(rows, rows + 1, max_gap=2, max_span=3)) == [(0, 3), (3, 5), (5, 6)]
    assert list(spans(rows[:0], rows[:0] + 1, max_gap=2, max_span=3)) == []
