"""Network simplex for W1 on an undirected graph, compiled with numba.

Why by hand: W1 with a shortest-path ground metric equals an uncapacitated min-cost flow on
the graph's own edges (the Beckmann form), which has |E| variables instead of the K^2 of
the dense transport problem that POT's ``ot.emd2`` solves. No maintained library solves
that sparse problem fast in batch: networkx's network simplex is pure Python and needs
integer supplies, scipy's HiGHS pays milliseconds of set-up per call, POT is dense. The
pairwise matrix solves millions of problems on the *same* graph, so each solve starts from
the previous optimal spanning tree (a warm start) and usually needs few pivots.

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
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Codes written into ``status``.
OPTIMAL = 0
ITERATION_LIMIT = 1


@njit(cache=True, nogil=True)
def _bfs(root, adj_ptr, adj_nbr, adj_edge, in_tree, order, parent, pedge, depth):  # type: ignore[no-untyped-def]
    """Root the spanning tree at ``root``: BFS order, parents, parent edges and depths."""
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


@njit(cache=True, nogil=True)
def _arc_points_up(v, e, eu, sgn):  # type: ignore[no-untyped-def]
    """Whether the basic arc of tree edge ``e`` (parent edge of ``v``) runs v -> parent."""
    return (sgn[e] > 0 and eu[e] == v) or (sgn[e] < 0 and eu[e] != v)


@njit(cache=True, nogil=True)
def _up_flow(v, e, eu, f):  # type: ignore[no-untyped-def]
    """Flow carried from ``v`` to its parent over tree edge ``e`` (``f`` is eu -> ev)."""
    return f[e] if eu[e] == v else -f[e]


@njit(cache=True, nogil=True)
def _start(r, eu, w, f, sgn, order, parent, pedge, mass, psi, tol):  # type: ignore[no-untyped-def]
    """Flows, orientations and potentials of the current tree for new supplies ``r``.

    Zero-flow arcs are turned away from the root, which makes the starting tree strongly
    feasible whatever the previous problem left.
    """
    n = order.shape[0]
    for v in range(n):
        mass[v] = r[v]
    for i in range(n - 1, 0, -1):
        v = order[i]
        mass[parent[v]] += mass[v]
    root = order[0]
    psi[root] = 0.0
    for i in range(1, n):
        v = order[i]
        e = pedge[v]
        m = mass[v]
        f[e] = m if eu[e] == v else -m
        if m > tol:
            sgn[e] = 1 if eu[e] == v else -1
        else:
            sgn[e] = -1 if eu[e] == v else 1
        if _arc_points_up(v, e, eu, sgn):
            psi[v] = psi[parent[v]] + w[e]
        else:
            psi[v] = psi[parent[v]] - w[e]


@njit(cache=True, nogil=True)
def _solve(  # type: ignore[no-untyped-def]
    r,
    eu,
    ev,
    w,
    adj_ptr,
    adj_nbr,
    adj_edge,
    in_tree,
    chords,
    chord_pos,
    sgn,
    f,
    order,
    parent,
    pedge,
    depth,
    mass,
    psi,
    stack,
    tol_flow,
    tol_price,
    max_pivots,
):
    """Solve one problem from the basis in ``in_tree``/``sgn``; returns (cost, status, pivots).

    The basis arrays are updated in place, so the next call starts from this optimum.
    Each pivot touches only the pivot cycle and the subtree that moves, plus pricing.
    """
    m = eu.shape[0]
    root = 0
    for e in range(m):
        f[e] = 0.0
    _bfs(root, adj_ptr, adj_nbr, adj_edge, in_tree, order, parent, pedge, depth)
    _start(r, eu, w, f, sgn, order, parent, pedge, mass, psi, tol_flow)
    pivots = 0
    status = OPTIMAL
    while True:
        # Pricing over the non-tree edges: the most violated dual constraint (Dantzig).
        best = tol_price
        e_in = -1
        a = -1
        b = -1
        for k in range(chords.shape[0]):
            e = chords[k]
            d = psi[eu[e]] - psi[ev[e]]
            if d - w[e] > best:
                best = d - w[e]
                e_in = e
                a = eu[e]
                b = ev[e]
            elif -d - w[e] > best:
                best = -d - w[e]
                e_in = e
                a = ev[e]
                b = eu[e]
        if e_in < 0:
            break
        if pivots >= max_pivots:
            status = ITERATION_LIMIT
            break
        pivots += 1
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
            e = pedge[x]
            if not _arc_points_up(x, e, eu, sgn):
                amount = max(-_up_flow(x, e, eu, f), 0.0)
                if amount <= delta_b + tol_flow:
                    cut_b = x
                    delta_b = min(delta_b, amount)
            x = parent[x]
        delta_a = np.inf
        cut_a = -1
        x = a
        while x != join:
            e = pedge[x]
            if _arc_points_up(x, e, eu, sgn):
                amount = max(_up_flow(x, e, eu, f), 0.0)
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
        # Push delta around the cycle.
        if delta > 0.0:
            x = b
            while x != join:
                e = pedge[x]
                f[e] += delta if eu[e] == x else -delta
                x = parent[x]
            x = a
            while x != join:
                e = pedge[x]
                f[e] -= delta if eu[e] == x else -delta
                x = parent[x]
        e_out = pedge[cut]
        f[e_out] = 0.0
        f[e_in] = delta if eu[e_in] == a else -delta
        in_tree[e_out] = False
        in_tree[e_in] = True
        chords[chord_pos[e_in]] = e_out
        chord_pos[e_out] = chord_pos[e_in]
        chord_pos[e_in] = -1
        sgn[e_in] = 1 if eu[e_in] == a else -1
        # The subtree below `cut` is re-hung from the entering edge: s is its endpoint
        # inside that subtree, t the one outside. Reverse the parent path s -> cut.
        if side_b:
            s = b
            t = a
            psi_s = psi[a] - w[e_in]  # potentials drop along the arc a -> b
        else:
            s = a
            t = b
            psi_s = psi[b] + w[e_in]
        shift = psi_s - psi[s]
        x = s
        new_parent = t
        new_edge = e_in
        while True:
            old_parent = parent[x]
            old_edge = pedge[x]
            parent[x] = new_parent
            pedge[x] = new_edge
            if x == cut:
                break
            new_parent = x
            new_edge = old_edge
            x = old_parent
        # Depths and potentials of the moved subtree (potentials shift by a constant).
        depth[s] = depth[t] + 1
        psi[s] += shift
        top = 0
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
    for e in range(m):
        if in_tree[e]:
            cost += w[e] * abs(f[e])
    return cost, status, pivots


@njit(cache=True, nogil=True)
def solve_rows(  # type: ignore[no-untyped-def]
    X,
    Y,
    rows,
    symmetric,
    eu,
    ev,
    w,
    adj_ptr,
    adj_nbr,
    adj_edge,
    tree0,
    tol_flow,
    tol_price,
    max_pivots,
    out,
    status,
):
    """W1 between ``X[i]`` and every ``Y[j]`` for ``i`` in ``rows`` (``j > i`` if symmetric).

    Results go to ``out[i, j]``; ``status[i, j]`` is non-zero where the pivot limit was hit.
    The optimal basis of one pair is the starting basis of the next.
    """
    n = X.shape[1]
    m = eu.shape[0]
    in_tree = tree0.copy()
    chords = np.flatnonzero(~in_tree)
    chord_pos = np.full(m, -1, dtype=np.int64)
    for k in range(chords.shape[0]):
        chord_pos[chords[k]] = k
    sgn = np.ones(m, dtype=np.int8)
    order = np.empty(n, dtype=np.int64)
    parent = np.empty(n, dtype=np.int64)
    pedge = np.empty(n, dtype=np.int64)
    depth = np.empty(n, dtype=np.int64)
    mass = np.empty(n, dtype=np.float64)
    psi = np.empty(n, dtype=np.float64)
    f = np.zeros(m, dtype=np.float64)
    stack = np.empty(n, dtype=np.int64)
    r = np.empty(n, dtype=np.float64)
    total_pivots = 0
    for i in rows:
        start = i + 1 if symmetric else 0
        for j in range(start, Y.shape[0]):
            for v in range(n):
                r[v] = X[i, v] - Y[j, v]
            cost, st, piv = _solve(
                r, eu, ev, w, adj_ptr, adj_nbr, adj_edge, in_tree, chords, chord_pos, sgn, f, order,
                parent,
                pedge, depth, mass, psi, stack, tol_flow, tol_price, max_pivots,
            )  # fmt: skip
            out[i, j] = cost
            status[i, j] = st
            total_pivots += piv
    return total_pivots
