"""Exact kNN under ontology W1 for large cohorts, against the full pairwise path in one run.

N = 20,000 samples, k = 100 (POPPY's kernel), compositions on a ~250-node graph pruned
from the real Cell Ontology. The full matrix (N(N-1)/2 = 2e8 exact W1 problems) is timed
on its first ``--full-samples`` samples with the same threads and extrapolated by the
number of pairs; ``knn_graph_emd`` runs on all N. Exactness is checked on ``--check-rows``
random samples: their whole rows are solved in the full path's orientation and their
bandwidth, neighbour sets and distances compared bit for bit.

The compositions are SIMULATED (seeded Dirichlet draws around 85 cohort means over real
CL terms, as in ``bench_graph_emd.py``); only the ontology is real.

Run: ``python benchmarks/bench_knn_emd.py [--samples 20000] [--k 100] [--n-jobs 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np

from bench_graph_emd import cl_graph, signals
from cellbridge.ot import diffusion_kernel, knn_graph_emd, pairwise_graph_emd
from cellbridge.poppy import ontology_graph_metric


def full_rows(X: np.ndarray, rows: np.ndarray, metric: object) -> np.ndarray:
    """Whole rows of the full matrix, each pair solved as the symmetric path solves it."""
    out = np.empty((rows.size, len(X)))
    for r, i in enumerate(rows):
        out[r, i + 1 :] = pairwise_graph_emd(X[i : i + 1], X[i + 1 :], graph=metric)[0]
        out[r, :i] = pairwise_graph_emd(X[:i], X[i : i + 1], graph=metric)[:, 0]
        out[r, i] = np.inf
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=250)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--full-samples", type=int, default=1_500)
    parser.add_argument("--check-rows", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    graph, used = cl_graph(args.nodes, args.seed)
    metric = ontology_graph_metric(graph)
    X = signals(graph, used, args.samples, args.seed)
    print(
        f"graph: {metric.n_nodes} real CL nodes, {metric.n_edges} edges, cycle rank "
        f"{metric.n_edges - metric.n_nodes + 1}; {args.samples:,} SIMULATED samples; "
        f"k = {args.k}; {args.n_jobs} threads on {os.cpu_count()} cores"
    )
    # Warm the compiled code (numba caches it on disk after the first run).
    knn_graph_emd(X[:50], graph=metric, k=5)

    m = min(args.full_samples, args.samples)
    t = time.perf_counter()
    pairwise_graph_emd(X[:m], graph=metric, n_jobs=args.n_jobs)
    full_small = time.perf_counter() - t
    n_pairs = args.samples * (args.samples - 1) // 2
    full_s = full_small * n_pairs / (m * (m - 1) // 2)

    t = time.perf_counter()
    nn = knn_graph_emd(X, graph=metric, k=args.k, n_jobs=args.n_jobs, progress=True)
    knn_s = time.perf_counter() - t
    t = time.perf_counter()
    K = diffusion_kernel(nn, k=args.k)
    kernel_s = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    rng = np.random.default_rng(args.seed + 7)
    rows = np.sort(rng.choice(args.samples, size=args.check_rows, replace=False))
    exact = full_rows(X, rows, metric)
    same = 0
    for r, i in enumerate(rows):
        sigma = np.partition(exact[r], args.k - 1)[args.k - 1]
        cols = np.flatnonzero(exact[r] <= sigma)
        row = nn.distances[i]
        same += int(
            sigma == nn.sigma[i]
            and np.array_equal(cols, row.indices)
            and np.array_equal(exact[r, cols], row.data)
        )

    print()
    print(f"| machine | {platform.machine()} {platform.processor() or ''}, {args.n_jobs} threads |")
    print("| measure | full pairwise path | kNN search | ratio | goal |")
    print("|---|---|---|---|---|")
    print(
        f"| exact W1 problems | {n_pairs:,} | {nn.n_solved:,} | "
        f"{n_pairs / nn.n_solved:.0f}x fewer | |"
    )
    print(
        f"| wall time, N = {args.samples:,}, k = {args.k} | {full_s / 60:.1f} min (extrapolated "
        f"from {m:,} samples: {full_small:.1f} s) | {knn_s / 60:.2f} min | "
        f"{full_s / knn_s:.1f}x faster | < 10 min |"
    )
    print(f"| kernel (Eq. 6) from the neighbours | | {kernel_s:.2f} s, {K.nnz:,} entries | | |")
    print(f"| peak memory (process RSS) | | {peak_gb:.2f} GB | | |")
    print(
        f"| rows identical to the full matrix (sigma, neighbours, bits) | | "
        f"{same} / {len(rows)} | | all |"
    )


if __name__ == "__main__":
    main()
