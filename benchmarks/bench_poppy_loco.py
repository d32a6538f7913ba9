"""POPPY stage 2 on the embedded SEMI-SYNTHETIC pbmc patients: Figure 4b-d, over seeds.

For each seed, :func:`cellbridge.poppy.pbmc_phenotype` with its defaults: stage 1 as in
``bench_poppy_pbmc.py`` (40 training patients, 20 epochs); reference atlas = the 6,000
training cells (real pbmc68k PCA as the frozen embedding); labelled bulk = all 60
patients' pseudobulk, phenotype caused by the cytotoxic CD8 T + NK fraction (simulated).

Anchors, in the same run (as in the paper): "POPPY w/o stage 1" (the same fine-tuning
from the untrained stage-1 model) and the frozen bulk encoder + logistic head (no atlas).
Printed: leave-one-cohort-out AUROC per cohort and method with the ratio to each
baseline; the rank of the two causal cell types under the attention-based responder score
and under the label-derived enrichment; their Spearman correlation over cells.

Run: ``python benchmarks/bench_poppy_loco.py [--seeds 0 1 2]`` (~40 s per seed, 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings

import numpy as np
import pandas as pd
import torch

from cellbridge.poppy import pbmc_phenotype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("data: SEMI-SYNTHETIC (real PBMCs; simulated patients, cohorts and phenotype)")
    every, ranks = [], []
    for seed in args.seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # documented sampler fallbacks
            res = pbmc_phenotype(seed=seed, progress=False)
        loco = res.loco.assign(seed=seed)
        every.append(loco)
        wide = loco.pivot(index="cohort", columns="method", values="auroc")
        print(f"\nseed {seed} ({sum(res.seconds.values()):.0f} s): leave-one-cohort-out AUROC")
        print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
        for name, table in (
            ("attention", res.by_cell_type),
            ("label enrichment", res.enrichment_by_cell_type),
        ):
            order = list(table.index)
            rank = {t: order.index(t) + 1 for t in res.causal_types}
            ranks.append({"seed": seed, "score": name, **rank, "rho": res.spearman})
            print(f"  causal-type ranks by {name} (of {len(order)}): {rank}")
        print(f"  Spearman rho (attention vs label enrichment, per cell): {res.spearman:.3f}")
    table = pd.concat(every, ignore_index=True)
    mean = table.groupby("method", sort=False)["auroc"].agg(["mean", "std"])
    print(f"\nAUROC over seeds {args.seeds} x cohorts (mean, sd):")
    print(mean.to_string(float_format=lambda v: f"{v:.3f}"))
    wide = table.pivot_table(index=["seed", "cohort"], columns="method", values="auroc")
    for base in wide.columns[1:]:
        ratio = wide.iloc[:, 0] / wide[base]
        wins = int((wide.iloc[:, 0] > wide[base]).sum())
        print(
            f"POPPY / {base}: mean ratio {float(np.mean(ratio)):.3f}, POPPY higher in "
            f"{wins} of {len(ratio)} held-out cohorts"
        )
    print("\ncausal-type ranks:")
    print(pd.DataFrame(ranks).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
