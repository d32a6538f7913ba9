"""Exact k-nearest neighbours under graph W1 without all N^2 problems, compiled with numba.

Why by hand: no library searches neighbours under a metric that is itself the optimum of a
min-cost flow. Tree and ball-tree indexes need a cheap metric; here every distance is a
network-simplex solve (``_network_simplex``), so the search is organised around
*certified lower bounds* that make most solves unnecessary.

The bound (Kantorovich-Rubinstein duality): for any potential ``u`` on the nodes with
``|u_a - u_b| <= w_ab`` on every edge,

    W1(p, q) = max_u' <p - q, u'>  >=  |<p - q, u>|.

Every solve returns such a potential for free (its optimal dual, ``psi``). So row ``i``
works best-first: candidates ordered by their bound, the smallest solved exactly in small
batches, the k-th smallest exact distance so far (``tau``, an upper bound on the true
k-th distance ``sigma_i``) shrinking, and the batch's potentials raising the bounds of the
rest. A candidate is dropped only when its bound exceeds ``tau``; since ``bound <= W1``,
every sample with ``W1 <= sigma_i <= tau`` is solved, so the neighbour set and distances
are exactly those of the full matrix. Each pair is solved in the orientation of the full
path (``X[min(i, j)] - X[max(i, j)]``), so the values carry the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cellbridge.ot._network_simplex import solve_from_start, work_arrays

#: Rows whose bounds are computed together (each pass over the samples serves them all).
_BLOCK = 16

# ``status`` codes per row.
ROW_OK = 0
ROW_NOT_CONVERGED = 1  # a W1 problem hit the pivot limit
ROW_OVERFLOW = 2  # more tied neighbours than the output has room for; rerun with more


@njit(cache=True, nogil=True)
def _kth_smallest(values, count, k):  # type: ignore[no-untyped-def]
    if count < k:
        return np.inf
    return np.partition(values[:count], k - 1)[k - 1]


@njit(cache=True, nogil=True)
def _sift_down(keys, vals, size, pos):  # type: ignore[no-untyped-def]
    key, val = keys[pos], vals[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] >= key:
            break
        keys[pos], vals[pos] = keys[child], vals[child]
        pos = child
    keys[pos], vals[pos] = key, val


@njit(cache=True, nogil=True)
def _sift_up(keys, vals, pos):  # type: ignore[no-untyped-def]
    key, val = keys[pos], vals[pos]
    while pos > 0:
        up = (pos - 1) // 2
        if keys[up] <= key:
            break
        keys[pos], vals[pos] = keys[up], vals[up]
        pos = up
    keys[pos], vals[pos] = key, val


# Reassociation lets LLVM vectorise these reductions; it moves a sum by a few ulps, far
# inside the tolerance a bound is compared with (and the max is exact in any order).
_FAST = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_FAST)
def _dot(a, B, t):  # type: ignore[no-untyped-def]
    """``<a, B[t]>``."""
    s = 0.0
    for v in range(a.shape[0]):
        s += a[v] * B[t, v]
    return s


@njit(cache=True, nogil=True, fastmath=_FAST)
def _block_bounds(block, A, E, lb, ub):  # type: ignore[no-untyped-def]
    """For each row ``i = block[b]`` and every ``j``: the fixed-potential lower bound
    ``lb[b, j] = max_p |A[i, p] - A[j, p]|`` and the spanning-tree upper bound
    ``ub[b, j] = sum_v |E[i, v] - E[j, v]|``.

    ``j`` is the outer loop so that each ``A[j]``/``E[j]`` is read from memory once per
    block rather than once per row (the arrays are far larger than the caches).
    """
    for j in range(A.shape[0]):
        for b in range(block.shape[0]):
            i = block[b]
            best = 0.0
            for p in range(A.shape[1]):
                d = abs(A[i, p] - A[j, p])
                if d > best:
                    best = d
            lb[b, j] = best
            total = 0.0
            for v in range(E.shape[1]):
                total += abs(E[i, v] - E[j, v])
            ub[b, j] = total


@njit(cache=True, nogil=True)
def knn_rows(  # type: ignore[no-untyped-def]
    rows, X, A, E, k, tol_rel, tol_abs, w, adj_ptr, adj_nbr, adj_edge, tree0, order0,
    parent0, pedge0, depth0, eu, ev, tol_flow, tol_price, max_pivots,
    out_idx, out_dist, out_count, out_sigma, status, n_solved,
):  # fmt: skip
    """Exact kNN under W1 for each row ``i`` in ``rows`` (see the module docstring).

    ``A = X @ U.T`` holds ``<x, u>`` for a fixed set of potentials ``U``; their bound
    ``max_p |A[i, p] - A[j, p]|`` is every candidate's starting key. ``E`` is the
    spanning-tree embedding (tree W1 = L1 distance, an upper bound): its ``k`` nearest are
    solved first, which makes ``tau`` small from the start.

    The queue is lazy: a candidate's key is raised by the potentials found since it was
    last looked at only when it reaches the front, and only until it is no longer the
    smallest; it is solved when it stays in front with every potential applied. The row
    is finished when the smallest key exceeds ``tau`` (keys never exceed the W1 they bound).

    Writes, at the position ``b`` of ``i`` in ``rows``, the neighbours (``d_ij <= sigma_i``,
    ``j != i``) into ``out_idx[b]`` / ``out_dist[b]`` (``out_count[b]`` of them),
    ``sigma_i`` into ``out_sigma[b]`` and the number of problems solved into
    ``n_solved[b]``; ``status[b]`` is one of the ``ROW_*`` codes. Returns the number of
    bound evaluations (``<x_i - x_j, u>`` products), for the benchmark.
    """
    N, n = X.shape
    cap = out_idx.shape[1]
    chords0, in_tree, chords, chord_pos, ch_a, ch_b, parent, pedge, depth, up, uflow, psi, stack = (
        work_arrays(tree0, n)
    )
    r = np.empty(n)
    diff = np.empty(n)
    block_lb = np.empty((_BLOCK, N))
    block_ub = np.empty((_BLOCK, N))
    applied = np.zeros(N, dtype=np.int64)
    heap_key = np.empty(N)
    heap_val = np.empty(N, dtype=np.int64)
    ex_j = np.empty(N, dtype=np.int64)
    ex_d = np.empty(N)
    U = np.empty((4 * k + 64, n))
    products = 0
    for row in range(rows.shape[0]):
        i = rows[row]
        b = row % _BLOCK
        if b == 0:
            _block_bounds(rows[row : row + _BLOCK], A, E, block_lb, block_ub)
        lb = block_lb[b]
        ub = block_ub[b]
        ub[i] = np.inf
        lb[i] = np.inf
        n_ex = 0
        st = ROW_OK
        seeds = np.argsort(ub)[: min(k, N - 1)]
        for j in seeds:
            lb[j] = np.inf  # solved: never a candidate again
        queue = seeds.copy()
        n_queue = queue.shape[0]
        size = -1  # the heap is built after the seeds
        while True:
            # Solve what is queued; every solve adds its optimal potential to U.
            for q in range(n_queue):
                j = queue[q]
                a, b = (i, j) if i < j else (j, i)
                for v in range(n):
                    r[v] = X[a, v] - X[b, v]
                cost, s, _ = solve_from_start(
                    r, w, adj_ptr, adj_nbr, adj_edge, tree0, order0, parent0, pedge0,
                    depth0, eu, ev, chords0, in_tree, chords, chord_pos, ch_a, ch_b, parent,
                    pedge, depth, up, uflow, psi, stack, tol_flow, tol_price, max_pivots,
                )  # fmt: skip
                if s != 0:
                    st = ROW_NOT_CONVERGED
                if n_ex == U.shape[0]:
                    grown = np.empty((2 * U.shape[0], n))
                    grown[:n_ex] = U
                    U = grown
                U[n_ex] = psi
                ex_j[n_ex] = j
                ex_d[n_ex] = cost
                n_ex += 1
            tau = _kth_smallest(ex_d, n_ex, k)
            threshold = tau + tol_rel * tau + tol_abs
            if size < 0:
                size = 0
                for j in range(N):
                    if lb[j] <= threshold:
                        heap_key[size] = lb[j]
                        heap_val[size] = j
                        applied[j] = 0
                        size += 1
                for pos in range(size // 2 - 1, -1, -1):
                    _sift_down(heap_key, heap_val, size, pos)
            # Pop until the front candidate must be solved (or none is left).
            n_queue = 0
            while size > 0 and heap_key[0] <= threshold:
                j = heap_val[0]
                size -= 1
                heap_key[0], heap_val[0] = heap_key[size], heap_val[size]
                _sift_down(heap_key, heap_val, size, 0)
                nxt = heap_key[0] if size > 0 else np.inf
                best = lb[j]
                t = applied[j]
                if t < n_ex:
                    for v in range(n):
                        diff[v] = X[i, v] - X[j, v]
                    limit = min(nxt, threshold)
                    while t < n_ex:
                        dot = abs(_dot(diff, U, t))
                        t += 1
                        products += 1
                        if dot > best:
                            best = dot
                            if best > limit:
                                break
                    applied[j] = t
                    lb[j] = best
                if best > threshold:
                    continue  # dropped for good: its W1 exceeds tau
                if t < n_ex or best > nxt:
                    heap_key[size], heap_val[size] = best, j  # not the smallest any more
                    size += 1
                    _sift_up(heap_key, heap_val, size - 1)
                    continue
                queue[0] = j
                n_queue = 1
                break
            if n_queue == 0:
                break
        sigma = _kth_smallest(ex_d, n_ex, k)
        count = 0
        for e in range(n_ex):
            if ex_d[e] <= sigma:
                if count < cap:
                    out_idx[row, count] = ex_j[e]
                    out_dist[row, count] = ex_d[e]
                count += 1
        if count > cap and st == ROW_OK:
            st = ROW_OVERFLOW
        out_count[row] = count
        out_sigma[row] = sigma
        status[row] = st
        n_solved[row] = n_ex
    return products


@njit(cache=True, nogil=True)
def potentials(  # type: ignore[no-untyped-def]
    X, pairs, w, adj_ptr, adj_nbr, adj_edge, tree0, order0, parent0, pedge0, depth0, eu, ev,
    tol_flow, tol_price, max_pivots,
):  # fmt: skip
    """Optimal potentials of the problems ``X[a] - X[b]`` for ``(a, b)`` in ``pairs``.

    Returns ``(U, status)``: one 1-Lipschitz potential per row of ``U``, and each solve's
    status (non-zero: pivot limit).
    """
    n = X.shape[1]
    chords0, in_tree, chords, chord_pos, ch_a, ch_b, parent, pedge, depth, up, uflow, psi, stack = (
        work_arrays(tree0, n)
    )
    U = np.empty((pairs.shape[0], n))
    status = np.zeros(pairs.shape[0], dtype=np.int8)
    r = np.empty(n)
    for t in range(pairs.shape[0]):
        for v in range(n):
            r[v] = X[pairs[t, 0], v] - X[pairs[t, 1], v]
        _, s, _ = solve_from_start(
            r, w, adj_ptr, adj_nbr, adj_edge, tree0, order0, parent0, pedge0, depth0, eu, ev,
            chords0, in_tree, chords, chord_pos, ch_a, ch_b, parent, pedge, depth, up, uflow,
            psi, stack, tol_flow, tol_price, max_pivots,
        )  # fmt: skip
        U[t] = psi
        status[t] = s
    return U, status
