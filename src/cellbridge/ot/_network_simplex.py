"""Network simplex for W1 on an undirected graph, compiled with numba.

Why by hand: W1 with a shortest-path ground metric equals an uncapacitated min-cost flow on
the graph's own edges (the Beckmann form), which has |E| variables instead of the K^2 of
the dense transport problem that POT's ``ot.emd2`` solves. No maintained library solves
that sparse problem fast in batch: networkx's network simplex is pure Python and needs
integer supplies, scipy's HiGHS pays milliseconds of set-up per call, POT is dense. The
pairwise matrix solves millions of problems on the *same* graph, so everything that depends
on the graph alone (adjacency, the starting tree and its traversal) is built once.

The problem solved, for supplies ``r`` (``sum(r) == 0``) on an undirected graph with
positive edge lengths ``w``::

    min_f  sum_e w_e |f_e|   s.t.  (B f)_v = r_v  for every node v

A basis is a spanning tree T. Its flows are fixed by the supplies (each tree edge carries
the net supply of the subtree below it) and its node potentials ``psi`` drop by ``w_e``
along the direction of each tree arc. The basis is optimal when every non-tree edge
satisfies ``|psi_a - psi_b| <= w_ab`` (dual feasibility of the Kantorovich-Rubinstein
dual, ``W1 = max {<psi, r> : |psi_a - psi_b| <= w_ab}``). Degenerate pivots are made safe
with strongly feasible trees (Cunningham 1976; Ahuja, Magnanti & Orlin 1993, §11.5): zero
flow tree arcs point away from the root and the leaving arc is the last blocking arc met
when walking the pivot cycle from its apex.

Every pair starts from the same tree (a shortest-path tree from the root) rather than from
the previous pair's optimum: on CL graphs the warm start saved under 10% of the time, and
a cold start makes each value a function of its two signals alone, so the pairwise, cross
and single-pair forms and any number of threads give the same bits.

State is kept per node ``v`` of the rooted tree: ``parent[v]``, ``pedge[v]``, ``up[v]``
(the basic arc of the parent edge runs v -> parent) and ``uflow[v]`` (flow v -> parent,
negative when it runs down). A pivot walks the cycle, pushes flow, re-hangs the subtree
cut off by the leaving edge from the entering edge (reversing the parent path inside it)
and shifts that subtree's potentials by a constant.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Codes written into ``status``.
OPTIMAL = 0
ITERATION_LIMIT = 1


@njit(cache=True, nogil=True)
def _solve(  # type: ignore[no-untyped-def]
    r, w, adj_ptr, adj_nbr, adj_edge, in_tree, chords, chord_pos, ch_a, ch_b,
    order, parent, pedge, depth, up, uflow, psi, stack, tol_flow, tol_price, max_pivots,
):  # fmt: skip
    """Solve one problem from the tree in the state arrays; returns (cost, status, pivots).

    ``chords`` lists the non-tree edges (``ch_a``/``ch_b`` their end nodes, ``chord_pos``
    the position of each edge in that list, -1 for tree edges) so pricing scans only them.
    """
    n = order.shape[0]
    # Tree flows: the net supply of each subtree, accumulated in reverse BFS order. Zero-flow
    # arcs point away from the root, which makes the starting tree strongly feasible.
    for v in range(n):
        uflow[v] = r[v]
    for i in range(n - 1, 0, -1):
        v = order[i]
        uflow[parent[v]] += uflow[v]
    root = order[0]
    psi[root] = 0.0
    for i in range(1, n):
        v = order[i]
        up[v] = uflow[v] > tol_flow
        psi[v] = psi[parent[v]] + (w[pedge[v]] if up[v] else -w[pedge[v]])
    pivots = 0
    status = OPTIMAL
    nch = chords.shape[0]
    while True:
        # Pricing: the most violated dual constraint |psi_a - psi_b| <= w_ab (Dantzig).
        best = tol_price
        k_in = -1
        fwd = True
        for k in range(nch):
            d = psi[ch_a[k]] - psi[ch_b[k]]
            ww = w[chords[k]]
            if d - ww > best:
                best = d - ww
                k_in = k
                fwd = True
            elif -d - ww > best:
                best = -d - ww
                k_in = k
                fwd = False
        if k_in < 0:
            break
        if pivots >= max_pivots:
            status = ITERATION_LIMIT
            break
        pivots += 1
        e_in = chords[k_in]
        if fwd:
            a = ch_a[k_in]
            b = ch_b[k_in]
        else:
            a = ch_b[k_in]
            b = ch_a[k_in]
        # Apex of the cycle a -> b -> (tree path) -> a.
        x = a
        y = b
        while x != y:
            if depth[x] > depth[y]:
                x = parent[x]
            elif depth[y] > depth[x]:
                y = parent[y]
            else:
                x = parent[x]
                y = parent[y]
        join = x
        # Flow is pushed up the tree from b to the apex and down from the apex to a; arcs
        # pointing against the push block it. The leaving arc follows the strongly
        # feasible rule: the last blocking arc met walking the cycle from the apex in the
        # push direction (apex -> a, a -> b, b -> apex), i.e. on b's side the one nearest
        # the apex, else on a's side the one nearest a.
        delta_b = np.inf
        cut_b = -1
        x = b
        while x != join:
            if not up[x]:
                amount = -uflow[x]
                if amount < 0.0:
                    amount = 0.0
                if amount <= delta_b + tol_flow:
                    cut_b = x
                    if amount < delta_b:
                        delta_b = amount
            x = parent[x]
        delta_a = np.inf
        cut_a = -1
        x = a
        while x != join:
            if up[x]:
                amount = uflow[x]
                if amount < 0.0:
                    amount = 0.0
                if amount < delta_a - tol_flow or cut_a < 0:
                    cut_a = x
                    delta_a = amount
            x = parent[x]
        if cut_b >= 0 and delta_b <= delta_a + tol_flow:
            cut = cut_b
            side_b = True
            delta = min(delta_a, delta_b)
        elif cut_a >= 0:
            cut = cut_a
            side_b = False
            delta = delta_a
        else:  # pragma: no cover - impossible with positive edge lengths
            status = ITERATION_LIMIT
            break
        if delta > 0.0:
            x = b
            while x != join:
                uflow[x] += delta
                x = parent[x]
            x = a
            while x != join:
                uflow[x] -= delta
                x = parent[x]
        e_out = pedge[cut]
        in_tree[e_out] = False
        in_tree[e_in] = True
        chords[k_in] = e_out
        chord_pos[e_out] = k_in
        chord_pos[e_in] = -1
        # The leaving edge becomes a chord; its end nodes are cut and cut's old parent.
        ch_a[k_in] = cut
        ch_b[k_in] = parent[cut]
        if side_b:
            s = b
            t = a
            psi_s = psi[a] - w[e_in]
            s_up = False
            s_flow = -delta
        else:
            s = a
            t = b
            psi_s = psi[b] + w[e_in]
            s_up = True
            s_flow = delta
        shift = psi_s - psi[s]
        # The subtree below `cut` is re-hung from the entering edge: s is its end inside
        # that subtree, t the one outside. Along the path s -> cut each node takes the
        # edge (and the arc, reversed) of the node below it.
        x = s
        new_parent = t
        new_edge = e_in
        new_up = s_up
        new_flow = s_flow
        while True:
            old_parent = parent[x]
            old_edge = pedge[x]
            old_up = up[x]
            old_flow = uflow[x]
            parent[x] = new_parent
            pedge[x] = new_edge
            up[x] = new_up
            uflow[x] = new_flow
            if x == cut:
                break
            new_parent = x
            new_edge = old_edge
            new_up = not old_up
            new_flow = -old_flow
            x = old_parent
        # Depths and potentials of the moved subtree (potentials shift by a constant).
        depth[s] = depth[t] + 1
        psi[s] += shift
        stack[0] = s
        top = 1
        while top > 0:
            top -= 1
            x = stack[top]
            for k in range(adj_ptr[x], adj_ptr[x + 1]):
                e = adj_edge[k]
                if in_tree[e]:
                    u = adj_nbr[k]
                    if u != parent[x]:
                        depth[u] = depth[x] + 1
                        psi[u] += shift
                        stack[top] = u
                        top += 1
    cost = 0.0
    for i in range(1, n):
        v = order[i]  # order is stale after pivots but still lists every non-root node once
        cost += w[pedge[v]] * abs(uflow[v])
    return cost, status, pivots


@njit(cache=True, nogil=True)
def work_arrays(tree0, n):  # type: ignore[no-untyped-def]
    """The per-thread state of :func:`solve_from_start` for a graph of ``n`` nodes."""
    m = tree0.shape[0]
    chords0 = np.flatnonzero(~tree0)
    return (
        chords0,
        tree0.copy(),
        chords0.copy(),
        np.full(m, -1, dtype=np.int64),
        np.empty(chords0.shape[0], dtype=np.int64),
        np.empty(chords0.shape[0], dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.bool_),
        np.empty(n, dtype=np.float64),
        np.empty(n, dtype=np.float64),
        np.empty(n, dtype=np.int64),
    )


@njit(cache=True, nogil=True)
def solve_from_start(  # type: ignore[no-untyped-def]
    r, w, adj_ptr, adj_nbr, adj_edge, tree0, order0, parent0, pedge0, depth0, eu, ev,
    chords0, in_tree, chords, chord_pos, ch_a, ch_b, parent, pedge, depth, up, uflow, psi,
    stack, tol_flow, tol_price, max_pivots,
):  # fmt: skip
    """Solve supplies ``r`` from the starting tree ``tree0``; returns (cost, status, pivots).

    The work arrays (``in_tree`` ... ``stack``) are reset here, so one set serves many
    problems. On return ``psi`` holds an optimal dual potential: 1-Lipschitz on the graph
    (up to ``tol_price``) with ``|<psi, r>|`` equal to the cost.
    """
    n = r.shape[0]
    m = w.shape[0]
    # Cold start from the same tree for every pair (see the module docstring).
    for e in range(m):
        in_tree[e] = tree0[e]
        chord_pos[e] = -1
    for k in range(chords0.shape[0]):
        chords[k] = chords0[k]
        chord_pos[chords0[k]] = k
        ch_a[k] = eu[chords0[k]]
        ch_b[k] = ev[chords0[k]]
    for v in range(n):
        parent[v] = parent0[v]
        pedge[v] = pedge0[v]
        depth[v] = depth0[v]
    return _solve(
        r, w, adj_ptr, adj_nbr, adj_edge, in_tree, chords, chord_pos, ch_a, ch_b,
        order0, parent, pedge, depth, up, uflow, psi, stack, tol_flow, tol_price, max_pivots,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def solve_rows(  # type: ignore[no-untyped-def]
    X, Y, rows, symmetric, w, adj_ptr, adj_nbr, adj_edge, tree0, order0, parent0,
    pedge0, depth0, eu, ev, tol_flow, tol_price, max_pivots, out, status,
):  # fmt: skip
    """W1 between ``X[i]`` and every ``Y[j]`` for ``i`` in ``rows`` (``j > i`` if symmetric).

    ``tree0`` (edge mask) with ``order0``/``parent0``/``pedge0``/``depth0`` (its BFS from
    node 0) is the starting basis of every pair. Results go to ``out[i, j]``;
    ``status[i, j]`` is non-zero where the pivot limit was hit. Returns the pivot count.
    """
    n = X.shape[1]
    chords0, in_tree, chords, chord_pos, ch_a, ch_b, parent, pedge, depth, up, uflow, psi, stack = (
        work_arrays(tree0, n)
    )
    r = np.empty(n, dtype=np.float64)
    total = 0
    for i in rows:
        start = i + 1 if symmetric else 0
        for j in range(start, Y.shape[0]):
            for v in range(n):
                r[v] = X[i, v] - Y[j, v]
            cost, st, piv = solve_from_start(
                r, w, adj_ptr, adj_nbr, adj_edge, tree0, order0, parent0, pedge0, depth0,
                eu, ev, chords0, in_tree, chords, chord_pos, ch_a, ch_b, parent, pedge, depth,
                up, uflow, psi, stack, tol_flow, tol_price, max_pivots,
            )  # fmt: skip
            out[i, j] = cost
            status[i, j] = st
            total += piv
    return total


@njit(cache=True, nogil=True)
def bfs_tree(root, adj_ptr, adj_nbr, adj_edge, in_tree, order, parent, pedge, depth):  # type: ignore[no-untyped-def]
    """Root the spanning tree ``in_tree`` at ``root``: BFS order, parents, parent edges, depths."""
    n = parent.shape[0]
    for v in range(n):
        parent[v] = -1
    order[0] = root
    parent[root] = root
    pedge[root] = -1
    depth[root] = 0
    head = 0
    tail = 1
    while head < tail:
        v = order[head]
        head += 1
        for k in range(adj_ptr[v], adj_ptr[v + 1]):
            e = adj_edge[k]
            if in_tree[e]:
                u = adj_nbr[k]
                if parent[u] == -1:
                    parent[u] = v
                    pedge[u] = e
                    depth[u] = depth[v] + 1
                    order[tail] = u
                    tail += 1
    return tail
