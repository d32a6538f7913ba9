"""Exact ontology W1 at paper scale, against POT in the same run.

2,744 samples (POPPY: 1,458 single-cell + 1,286 in-silico bulk) with compositions on a
~250-node graph pruned from the real Cell Ontology. POT's ``ot.emd2`` with a
Floyd-Warshall ground metric is timed on a random subset of pairs (all pairs would take
hours) and the values are compared pair by pair.

The compositions are SIMULATED (seeded Dirichlet draws around cohort means over real CL
terms); only the ontology is real.

Run: ``python benchmarks/bench_graph_emd.py [--samples 2744] [--nodes 250] [--n-jobs 2]``
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import ot

from cellbridge.ontology import load_cell_ontology, prune
from cellbridge.ot import pairwise_graph_emd
from cellbridge.poppy import ontology_graph_metric


def cl_graph(n_nodes: int, seed: int) -> tuple[object, list[str]]:
    """Prune the real CL to random non-deprecated terms + ancestors, about n_nodes."""
    onto = load_cell_ontology()
    rng = np.random.default_rng(seed)
    root = "CL:0000000"
    live = [
        t
        for t, term in onto.terms.items()
        if not term.deprecated and t != root and root in onto.ancestors(t)
    ]
    kept: set[str] = {root}
    used: list[str] = []
    for t in rng.permutation(live):
        grown = kept | {t} | onto.ancestors(t)
        if len(grown) <= n_nodes:
            kept, used = grown, [*used, str(t)]
        if len(kept) >= n_nodes - 2:
            break
    return prune(onto, used), used


def signals(graph: object, used: list[str], n: int, seed: int) -> np.ndarray:
    """Cohort-structured compositions over the used terms, propagated and normalised."""
    rng = np.random.default_rng(seed)
    n_cohorts = 85  # 3CA cohorts
    means = rng.dirichlet(np.full(len(used), 0.3), size=n_cohorts)
    cohort = rng.integers(n_cohorts, size=n)
    comp = np.stack([rng.dirichlet(means[c] * 20 + 1e-3) for c in cohort])
    cols = [graph.index(t) for t in used]  # type: ignore[attr-defined]
    leaf = np.zeros((n, len(graph.nodes)))  # type: ignore[attr-defined]
    leaf[:, cols] = comp
    A = graph.ancestor_matrix()  # type: ignore[attr-defined]
    prop = np.asarray((A @ leaf.T).T)
    return np.ascontiguousarray(prop / prop.sum(axis=1, keepdims=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2744)
    parser.add_argument("--nodes", type=int, default=250)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--pot-pairs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    graph, used = cl_graph(args.nodes, args.seed)
    metric = ontology_graph_metric(graph)
    X = signals(graph, used, args.samples, args.seed)
    cycle_rank = metric.n_edges - metric.n_nodes + 1
    print(
        f"graph: {metric.n_nodes} real CL nodes, {metric.n_edges} edges, cycle rank "
        f"{cycle_rank}, {len(used)} leaf types; {args.samples} simulated samples"
    )

    # Warm the compiled solver (numba caches it on disk after the first run).
    pairwise_graph_emd(X[:3], graph=metric)

    rng = np.random.default_rng(args.seed + 1)
    pairs = rng.choice(args.samples, size=(args.pot_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    D = np.ascontiguousarray(metric.shortest_paths())
    t = time.perf_counter()
    pot = np.array([ot.emd2(X[i], X[j], D) for i, j in pairs])
    pot_per_pair = (time.perf_counter() - t) / len(pairs)

    # Single-thread per-pair time on whole rows (how the solver is driven).
    rows = 8
    t = time.perf_counter()
    pairwise_graph_emd(X[:rows], X, graph=metric, n_jobs=1)
    cb_per_pair = (time.perf_counter() - t) / (rows * args.samples)

    t = time.perf_counter()
    full = pairwise_graph_emd(X, graph=metric, n_jobs=args.n_jobs, progress=True)
    full_s = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    err = np.abs(full[pairs[:, 0], pairs[:, 1]] - pot).max()
    n_pairs = args.samples * (args.samples - 1) // 2
    ratio = pot_per_pair / cb_per_pair
    print()
    print(f"| machine | {platform.machine()} {platform.processor() or ''}, {args.n_jobs} threads |")
    print("| measure | POT ot.emd2 (Floyd-Warshall) | cellbridge | ratio | goal |")
    print("|---|---|---|---|---|")
    print(
        f"| per pair, 1 core | {pot_per_pair * 1e6:.0f} us | {cb_per_pair * 1e6:.1f} us | "
        f"{ratio:.1f}x faster | >= 50x |"
    )
    print(
        f"| all {n_pairs:,} pairs | {pot_per_pair * n_pairs / 3600:.1f} h (extrapolated) | "
        f"{full_s:.1f} s ({args.n_jobs} threads) | "
        f"{pot_per_pair * n_pairs / full_s:.0f}x | < 120 s |"
    )
    print(f"| peak memory (process RSS) | | {peak_gb:.2f} GB | | < 2 GB |")
    print(f"| max abs difference on {len(pairs)} pairs | | {err:.2e} | | <= 1e-9 |")


if __name__ == "__main__":
    main()
