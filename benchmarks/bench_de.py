"""BiRD DE signatures: cellbridge's Wilcoxon against scanpy and illico, same run, SIMULATED.

Data (SIMULATED): one plate of one cell line, ``--cells`` cells x ``--genes`` genes, 50
drugs + DMSO controls in equal shares; counts are negative-binomial-like (Poisson of
Gamma rates around a per-gene mean, 10 "responding" genes per drug shifted 2x), then
log-normalised (1e4 per cell, log1p), stored sparse (CSR) as Tahoe's counts are.

Every method tests each drug against the same-plate controls, one test per gene:

- cellbridge: :func:`cellbridge.bird.compare_rows` (the plate's rows read in place; each
  positive treated value looked up among its gene's sorted control values through a
  bucket index; numba);
- scanpy: ``sc.tl.rank_genes_groups(method="wilcoxon", reference="DMSO")`` (tie
  correction off, its default);
- illico: ``illico.asymptotic_wilcoxon(reference="DMSO", tie_correct=False,
  use_continuity=False)`` when the package is installed (``pip install illico``; it is not a
  cellbridge dependency).

Printed: wall time of each (the median of ``--repeats`` calls, 3 by default, the same
for every method: single calls vary by up to 1.8x on a shared 2-core machine), ratios,
and the largest relative difference of cellbridge's p-values from scanpy's (goal: 1e-6).
Goals (issue): at least 20x faster than scanpy and no slower than 1.5x illico. Threads:
numba and illico use ``--threads`` (default: all cores).

Run: ``python benchmarks/bench_de.py [--cells 60000] [--genes 2000] [--drugs 50]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

from cellbridge.bird import compare_rows

T = TypeVar("T")


def simulate(n_cells: int, n_genes: int, n_drugs: int, seed: int) -> AnnData:
    rng = np.random.default_rng(seed)
    labels = np.array(["DMSO", *(f"drug{i:02d}" for i in range(n_drugs))])
    group = labels[rng.integers(0, len(labels), size=n_cells)]
    base = rng.lognormal(mean=-1.0, sigma=1.2, size=n_genes)
    rate = np.tile(base, (n_cells, 1))
    for i, name in enumerate(labels[1:]):
        genes = rng.choice(n_genes, size=10, replace=False)
        rows = np.flatnonzero(group == name)
        rate[np.ix_(rows, genes)] *= 2.0 if i % 2 else 0.5
    counts = rng.poisson(rng.gamma(5.0, rate / 5.0)).astype(np.float32)
    adata = AnnData(
        X=sp.csr_matrix(counts),
        obs=pd.DataFrame({"drug": pd.Categorical(group)}, index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]),
    )
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def timed(call: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median wall time of ``repeats`` calls (the same rule for every method), and the
    last call's result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=60_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--drugs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per method (median)")
    args = parser.parse_args()
    import numba

    numba.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, scanpy {sc.__version__}, "
        f"numba {numba.__version__}, threads {args.threads}"
    )
    adata = simulate(args.cells, args.genes, args.drugs, args.seed)
    print(
        f"data: SIMULATED {adata.n_obs:,} cells x {adata.n_vars:,} genes, {args.drugs} drugs + "
        f"DMSO, {adata.X.nnz / np.prod(adata.shape):.1%} non-zero"
    )
    drugs = [d for d in adata.obs["drug"].cat.categories if d != "DMSO"]
    X = adata.X.tocsr()
    is_control = (adata.obs["drug"] == "DMSO").to_numpy()

    # warm-up of the compiled kernels on a small slice, not timed
    compare_rows(X[:100, :20], [np.arange(50)], np.arange(50, 100))
    labels = adata.obs["drug"].to_numpy()
    rows = [np.flatnonzero(labels == d) for d in drugs]
    t_ours, ours = timed(lambda: compare_rows(X, rows, np.flatnonzero(is_control)), args.repeats)
    t_scanpy, _ = timed(
        lambda: sc.tl.rank_genes_groups(
            adata, "drug", groups=drugs, reference="DMSO", method="wilcoxon", n_genes=adata.n_vars
        ),
        args.repeats,
    )
    worst = 0.0
    for d, frame in zip(drugs, ours, strict=True):
        ref = sc.get.rank_genes_groups_df(adata, group=d).set_index("names").loc[adata.var_names]
        p_ref, p_ours = ref["pvals"].to_numpy(), frame["pval"].to_numpy()
        worst = max(worst, float(np.max(np.abs(p_ours - p_ref) / np.maximum(p_ref, 1e-300))))

    t_illico = None
    try:
        import illico

        t_illico, _ = timed(
            lambda: illico.asymptotic_wilcoxon(
                adata,
                is_log1p=True,
                group_keys="drug",
                reference="DMSO",
                n_threads=args.threads,
                tie_correct=False,
                use_continuity=False,
            ),
            args.repeats,
        )
    except ImportError:
        print("illico not installed: pip install illico to time it")

    print(f"\n{'method':<12} {'seconds':>9} {'ratio to cellbridge':>20}")
    print(f"{'cellbridge':<12} {t_ours:>9.2f} {1.0:>20.2f}")
    print(f"{'scanpy':<12} {t_scanpy:>9.2f} {t_scanpy / t_ours:>20.2f}")
    if t_illico is not None:
        print(f"{'illico':<12} {t_illico:>9.2f} {t_illico / t_ours:>20.2f}")
    print(f"\nmax relative p-value difference vs scanpy: {worst:.2e} (goal <= 1e-6)")
    print(f"speed-up over scanpy: {t_scanpy / t_ours:.1f}x (goal >= 20x)")
    if t_illico is not None:
        print(f"cellbridge / illico time: {t_ours / t_illico:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
