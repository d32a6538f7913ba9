"""Many Wilcoxon rank-sum tests against one shared control group, sparse input.

For every gene ``j`` and treated group ``g`` the Mann–Whitney statistic is

.. math:: U_{gj} = \\sum_{i \\in g} \\#\\{c : x_{cj} < x_{ij}\\}
                  + \\tfrac12 \\#\\{c : x_{cj} = x_{ij}\\},

summed over the control cells ``c``: the statistic behind scanpy's
``rank_genes_groups(method="wilcoxon", reference=...)`` (BiRD §2). The controls (a
plate's DMSO wells) are few and shared by every drug, so rather than ranking the pooled
cells once per drug, or sorting each gene's values, each treated value is *looked up*
among its gene's control values:

1. the positive entries of a block of genes are gathered gene by gene straight from the
   CSR rows, read in group order (controls first), so each gene's entries come out as one
   run per group (a transpose that keeps only the value bits: the run is the group);
2. per gene, the distinct positive control values are sorted (a few hundred), with the
   number of controls below and equal to each, and indexed by buckets on the values' bit
   patterns (non-negative floats order as unsigned integers), about
   :data:`BUCKETS_PER_VALUE` buckets per distinct value so nearly every bucket holds at
   most one: the lookup is then one bucket read and one comparison, without branches
   that the processor would mispredict;
3. zeros are one tied block below every positive value: a treated zero adds ``z / 2``
   (``z`` = control zeros of the gene) and a positive treated value
   ``z + below + equal / 2``.

The tables of one gene fit in the first-level cache while its entries stream past.
Written by hand (numba) because no library computes many rank-sum tests against one
shared reference this way (scanpy ranks each pair; illico sorts each gene's values).
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

__all__ = ["BUCKETS_PER_VALUE", "GENE_BLOCK", "grouped_u", "value_summary"]

#: most genes gathered at a time
GENE_BLOCK = 1024
#: most stored entries gathered at a time (4 or 8 bytes each): bounds the memory on
#: large plates, where fewer genes are gathered at a time
BLOCK_ENTRIES = 1 << 25
#: most (thread, group, gene) counters of a gathered block: many groups mean fewer genes
COUNT_CELLS = 1 << 21
#: lookup buckets per distinct control value of a gene (rounded up to a power of two)
BUCKETS_PER_VALUE = 16


def grouped_u(
    X: sp.csr_matrix, code: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """U statistics and per-group column sums of groups ``1..n_groups`` against group ``0``.

    Parameters
    ----------
    X
        ``(cells, genes)`` CSR matrix of non-negative ``float32`` or ``float64`` values
        with sorted column indices.
    code
        ``(cells,)`` ``int16`` group of each row: ``0`` the controls, ``1..n_groups`` the
        treated groups, ``-1`` a row in no comparison.
    n_groups
        Number of treated groups.

    Returns
    -------
    u : numpy.ndarray
        ``(n_groups, genes)`` Mann–Whitney U of each treated group against the controls,
        ties counted one half.
    sums : numpy.ndarray
        ``(n_groups + 1, genes)`` column sums per group, row ``0`` the controls.
    n_bad : int
        Stored NaN or infinite values (of any row), counted in the same pass: the caller
        refuses the input when there are any, and ``u`` is then meaningless.
    low : float
        The smallest finite stored value: when negative, the zero-based shortcut does
        not apply and ``u`` is meaningless too.
    """
    data = X.data
    keys = data.view(np.uint32 if data.dtype == np.float32 else np.uint64)
    sizes = np.bincount(code[code > 0], minlength=n_groups + 1)[1:].astype(np.float64)
    m = int((code == 0).sum())
    # the compared rows in group order (row order within a group): gathered in this order,
    # each gene's entries come out group by group, so the groups need no labels
    compared = np.flatnonzero(code >= 0)
    rows = compared[np.argsort(code[compared], kind="stable")].astype(np.int64)
    others = np.flatnonzero(code < 0).astype(np.int64)
    cursor = X.indptr[:-1].astype(np.int64)
    n_genes = X.shape[1]
    u = np.zeros((n_groups, n_genes))
    sums = np.zeros((n_groups + 1, n_genes))
    buffer = np.empty(0, keys.dtype)
    chunks = numba.get_num_threads()
    per_gene = max(1, X.nnz // max(n_genes, 1))
    # the per-(thread, group, gene) counts stay small too
    by_groups = max(1, COUNT_CELLS // (chunks * (n_groups + 1)))
    block = max(1, min(GENE_BLOCK, BLOCK_ENTRIES // per_gene, by_groups))
    n_bad, low = 0, np.inf
    for lo in range(0, n_genes, block):
        hi = min(lo + block, n_genes)
        bounds, buffer, bad_block, low_block = _gather_block(
            X.indptr, X.indices, keys, data, rows, others, code, cursor, hi, lo, n_groups,
            chunks, buffer,
        )  # fmt: skip
        n_bad, low = n_bad + int(bad_block), min(low, float(low_block))
        u[:, lo:hi], sums[:, lo:hi] = _lookup_u(
            bounds, buffer, buffer.view(data.dtype), sizes, m, BUCKETS_PER_VALUE
        )
    return u, sums, n_bad, low


def value_summary(values: np.ndarray) -> tuple[int, float]:
    """Number of NaN or infinite entries, and the smallest finite one (``inf`` if none),
    in one parallel pass without a temporary the size of ``values``."""
    flat = np.ravel(values)
    if flat.size == 0:
        return 0, float("inf")
    if flat.dtype.kind != "f":  # integers (and bools) are finite
        return 0, float(flat.min())
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    n_bad, low = _summary(np.ascontiguousarray(flat), numba.get_num_threads())
    return int(n_bad), float(low)


@njit(cache=True, parallel=True)
def _summary(values: np.ndarray, n_chunks: int) -> tuple[int, float]:  # pragma: no cover
    edges = np.linspace(0, values.shape[0], n_chunks + 1).astype(np.int64)
    bad = np.zeros(n_chunks, np.int64)
    low = np.full(n_chunks, np.inf)
    for t in prange(n_chunks):
        for i in range(edges[t], edges[t + 1]):
            x = values[i]
            if np.isfinite(x):
                if x < low[t]:
                    low[t] = x
            else:
                bad[t] += 1
    return bad.sum(), low.min()


@njit(cache=True, parallel=True)
def _gather_block(
    indptr: np.ndarray,
    indices: np.ndarray,
    keys: np.ndarray,
    data: np.ndarray,
    rows: np.ndarray,
    others: np.ndarray,
    code: np.ndarray,
    cursor: np.ndarray,
    hi: int,
    lo: int,
    n_groups: int,
    n_chunks: int,
    out: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int, float]:  # pragma: no cover - compiled
    """Positive entries of genes ``lo..hi-1`` of the compared ``rows`` (given in group
    order), grouped by gene and, within a gene, by group in row order: a CSR -> CSC
    transpose of one block of genes that keeps only the value bits. ``bounds[j, g]`` is
    where group ``g`` of gene ``j`` starts (``bounds[j, n_groups + 1]``: the gene's end).
    Also, over every row (``others`` are the rows in no comparison), the number of NaN
    or infinite entries and the smallest finite one (input checks in the same read).

    Row ``r``'s entries of the block start at ``cursor[r]`` (CSR indices sorted), which
    is advanced past them, so the blocks read every entry once in all. Rows are read in
    ``n_chunks`` parallel parts; the layout does not depend on ``n_chunks``. ``out`` is
    reused when large enough.
    """
    n_rows = rows.shape[0]
    genes = hi - lo
    n_codes = n_groups + 1
    edges = np.linspace(0, n_rows, n_chunks + 1).astype(np.int64)
    counts = np.zeros((n_chunks, n_codes, genes), np.int64)
    bad = np.zeros(n_chunks, np.int64)
    low = np.full(n_chunks, np.inf)
    # Count pass, from the indices alone (half the bytes of reading the values too).
    # Stored zeros are counted here and skipped by the fill, which then closes the gaps
    # they leave (only when there are any).
    for t in prange(n_chunks):
        for q in range(edges[t], edges[t + 1]):
            r = rows[q]
            row_counts = counts[t, code[r]]
            p = cursor[r]
            end = indptr[r + 1]
            while p < end and indices[p] < hi:
                row_counts[indices[p] - lo] += 1
                p += 1
    start = np.empty((n_chunks, n_codes, genes), np.int64)
    running = 0
    for j in range(genes):
        for g in range(n_codes):
            for t in range(n_chunks):
                start[t, g, j] = running
                running += counts[t, g, j]
    if out.shape[0] < running:
        out = np.empty(running, keys.dtype)
    fill = start.copy()
    for t in prange(n_chunks):
        for q in range(edges[t], edges[t + 1]):
            r = rows[q]
            at = fill[t, code[r]]
            p = cursor[r]
            end = indptr[r + 1]
            while p < end and indices[p] < hi:
                x = data[p]
                if not np.isfinite(x):
                    bad[t] += 1
                elif x < low[t]:
                    low[t] = x
                if x != 0:  # stored zeros (and -0.0) are zeros
                    j = indices[p] - lo
                    out[at[j]] = keys[p]
                    at[j] += 1
                p += 1
            cursor[r] = p
    # rows in no comparison: only the input checks, and their cursors moved on
    other_edges = np.linspace(0, others.shape[0], n_chunks + 1).astype(np.int64)
    for t in prange(n_chunks):
        for q in range(other_edges[t], other_edges[t + 1]):
            r = others[q]
            p = cursor[r]
            end = indptr[r + 1]
            while p < end and indices[p] < hi:
                x = data[p]
                if not np.isfinite(x):
                    bad[t] += 1
                elif x < low[t]:
                    low[t] = x
                p += 1
            cursor[r] = p
    bounds = np.empty((genes, n_codes + 1), np.int64)
    gaps = False
    for j in range(genes):
        for g in range(n_codes):
            for t in range(n_chunks):
                if fill[t, g, j] != start[t, g, j] + counts[t, g, j]:
                    gaps = True
    if not gaps:
        for j in range(genes):
            for g in range(n_codes):
                bounds[j, g] = start[0, g, j]
            bounds[j, n_codes] = start[0, 0, j + 1] if j + 1 < genes else running
    else:  # close the gaps of skipped stored zeros, keeping the order
        written = 0
        for j in range(genes):
            for g in range(n_codes):
                bounds[j, g] = written
                for t in range(n_chunks):
                    for i in range(start[t, g, j], fill[t, g, j]):
                        out[written] = out[i]
                        written += 1
            bounds[j, n_codes] = written
    return bounds, out, bad.sum(), low.min()


@njit(cache=True, parallel=True)
def _lookup_u(
    bounds: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    sizes: np.ndarray,
    m: int,
    buckets_per_value: int,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """U per (group, gene) of one gathered block: per gene, a bucket-indexed table of
    the positive control values (group 0, the first run of the gene's entries), and one
    lookup per positive treated value; and the per-group column sums (``values`` are
    ``keys`` read as floats).

    The sums add each group's entries in row order (the gather stores them so): the same
    bits however many threads gathered them and whatever other rows the matrix holds, so
    a comparison gives the same means on one core or many, on a Dask worker, or from one
    plate's rows instead of the whole screen's.
    """
    genes = bounds.shape[0]
    n_groups = bounds.shape[1] - 2
    u = np.zeros((n_groups, genes))
    sums = np.zeros((n_groups + 1, genes))
    for j in prange(genes):
        for g in range(n_groups + 1):
            total = 0.0
            for i in range(bounds[j, g], bounds[j, g + 1]):
                total += values[i]
            sums[g, j] = total
        a, b = bounds[j, 0], bounds[j, 1]
        n_ctrl = b - a
        ctrl = keys[a:b].copy()
        ctrl.sort()
        half_zeros = 0.5 * (m - n_ctrl)
        if n_ctrl == 0:
            for g in range(n_groups):
                n_pos = bounds[j, g + 2] - bounds[j, g + 1]
                u[g, j] = sizes[g] * half_zeros + n_pos * half_zeros
            continue
        # distinct values, and the positive controls below each (below[q] = all of them)
        q = 1
        for i in range(1, n_ctrl):
            if ctrl[i] != ctrl[i - 1]:
                q += 1
        value = np.empty(q, keys.dtype)
        below = np.empty(q + 1, np.int64)
        q = 0
        for i in range(n_ctrl):
            if i == 0 or ctrl[i] != ctrl[i - 1]:
                value[q] = ctrl[i]
                below[q] = i
                q += 1
        below[q] = n_ctrl
        # bucket k holds the values with (value - low) >> shift == k; start[k] = the first
        # distinct value in bucket k or after
        n_buckets = 1
        while n_buckets < buckets_per_value * q:
            n_buckets *= 2
        low = np.uint64(value[0])
        high = value[q - 1]
        shift = np.uint64(0)
        while ((np.uint64(high) - low) >> shift) >= np.uint64(n_buckets):
            shift += np.uint64(1)
        # per bucket: its first value (or the next bucket's first) with the controls
        # below and equal to it; a bucket holding several values has count -1 and, in
        # place of the controls below, the index of its first value
        bucket_value = np.empty(n_buckets, keys.dtype)
        bucket_below = np.empty(n_buckets, np.int32)
        bucket_count = np.empty(n_buckets, np.int32)
        i = 0
        for k in range(n_buckets):
            while i < q and np.int64((np.uint64(value[i]) - low) >> shift) < k:
                i += 1
            s = min(i, q - 1)
            bucket_value[k] = value[s]
            bucket_below[k] = below[s]
            bucket_count[k] = below[s + 1] - below[s]
            if i + 1 < q and np.int64((np.uint64(value[i + 1]) - low) >> shift) == k:
                bucket_count[k] = -1
                bucket_below[k] = i
        for g in range(n_groups):
            acc = sizes[g] * half_zeros  # every treated cell counted as a zero first
            for i in range(bounds[j, g + 1], bounds[j, g + 2]):
                x = keys[i]
                if x < value[0]:
                    rank = 0.0
                elif x > high:
                    rank = float(n_ctrl)
                else:
                    slot = np.int64((np.uint64(x) - low) >> shift)
                    n_equal = bucket_count[slot]
                    if n_equal >= 0:
                        # the bucket's one value (or the next bucket's first, > x): x above
                        # it takes all of its controls, x equal to it half of them
                        v = bucket_value[slot]
                        weight = np.float64(x > v) + 0.5 * np.float64(x == v)
                        rank = bucket_below[slot] + weight * n_equal
                    else:  # rare: a bucket with several values, scanned (x <= high: ends)
                        s = bucket_below[slot]
                        while value[s] < x:
                            s += 1
                        rank = below[s] + 0.5 * np.float64(x == value[s]) * (
                            below[s + 1] - below[s]
                        )
                acc += half_zeros + rank
            u[g, j] = acc
    return u, sums
