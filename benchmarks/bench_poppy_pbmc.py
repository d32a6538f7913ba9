"""POPPY stage 1 on the embedded SEMI-SYNTHETIC pbmc patients: the paper's Figures 2–3.

The full configuration of :func:`cellbridge.poppy.pbmc_alignment`: 60 patients x 150 real
PBMCs (scanpy's pbmc68k_reduced) in 3 simulated cohorts, 40 patients for training
(pseudobulk + in-silico bulk, two assays), 20 held out; 100 simulated tumours (sorted
profiles mixed with uniform ratios, §3.4). Cells carry pbmc68k's real 50-d PCA as the
frozen cell embedding; the bulk side uses gene tokens from PCA loadings of the training
cells (cellbridge's documented stand-in for an FM's gene embeddings).

Anchor, as in the paper: the same frozen bulk encoder without alignment (mean-pooled
gene tokens) for distances and silhouettes, the untrained model for recall@k. Both are
scored in the same run, on the same held-out profiles; the script prints the ratio
POPPY / baseline per metric, for each seed and as mean ± sd over seeds (the seed changes
the patients, the split, the tumours and the training).

Run: ``python benchmarks/bench_poppy_pbmc.py [--seeds 0 1 2] [--csv out.csv]``
(~40 s per seed on 2 idle cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd
import torch

from cellbridge.poppy import pbmc_alignment

KEYS = ["metric", "truth", "subset"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--csv", default=None, help="write every seed's table here")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print("data: SEMI-SYNTHETIC (real PBMCs; simulated patients, cohorts and tumours)")
    tables = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # tiny validation sets fall back as documented; not a result
            warnings.simplefilter("ignore", UserWarning)
            run = pbmc_alignment(seed=seed, progress=False)
        history = run.model.history
        seconds = time.perf_counter() - t0
        table = run.metrics.assign(seed=seed)
        tables.append(table)
        epochs = len(history.train_loss) if history else 0
        best = history.best_epoch if history else None
        print(
            f"\nseed {seed}: {seconds:.1f} s (train {run.seconds['train']:.1f} s, "
            f"{epochs} epochs, best {best}), load average {os.getloadavg()[0]:.2f}"
        )
        shown = table[[*KEYS, "n", "value", "baseline"]].copy()
        shown["ratio"] = shown["value"] / shown["baseline"]
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    every = pd.concat(tables, ignore_index=True)
    if args.csv:
        every.to_csv(args.csv, index=False)
    if len(args.seeds) > 1:
        every["ratio"] = every["value"] / every["baseline"]
        summary = every.groupby(KEYS, sort=False)[["value", "baseline", "ratio"]].agg(
            ["mean", "std"]
        )
        wins = every.assign(win=every["value"] > every["baseline"]).groupby(KEYS, sort=False)
        summary[("POPPY better", "seeds")] = wins["win"].sum().astype(int)
        print(f"\nmean ± sd over seeds {args.seeds}:")
        print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
        print(
            f"\nPOPPY > baseline in {int((every['value'] > every['baseline']).sum())} of "
            f"{len(every)} (metric, seed) pairs; median ratio "
            f"{float(np.median(every['ratio'])):.2f}"
        )


if __name__ == "__main__":
    main()
