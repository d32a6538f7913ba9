"""POPPY stage-1 training: one epoch over a paper-shaped SIMULATED atlas, time and memory.

Paper shape (POPPY §A.3.1): 1,631 single-cell samples, 2,732,789 cells with 2,048-d
frozen embeddings (float16 in the on-disk :class:`cellbridge.data.CellStore`, 11.2 GB),
85 cohorts, 2,744 bulk-like profiles. Everything here is SIMULATED:

- cells: standard normal draws stored as float16, one sample at a time from a per-sample
  seed; sample sizes (as in ``bench_cell_store.py``) a seeded log-normal scaled to the
  total, at least 10 cells;
- bulk: 1,631 pseudobulk-like profiles (one per sample) and 1,113 in-silico-like ones
  (each paired with a random sample), log1p-CPM of Poisson-Gamma counts over 2,000 genes;
  cohorts: samples spread over 85 cohorts, a profile takes its sample's cohort;
- gene tokens: :class:`cellbridge.encoders.ScaledGeneEmbeddings` over a random
  2,000 x 64 gene table;
- similarity: a random symmetric kNN-like sparse matrix over the profiles (15 random
  neighbours each, weights in (0.05, 1), diagonal 1).

Training: ``POPPY(POPPYConfig(max_epochs=1, val_fraction=0, ...)).fit(store, bulk, S)``
with the defaults otherwise (batch 32, 256 cells per set, 2,048 -> 128). An epoch makes
every profile the anchor of one batch, so it encodes ``2,744 x 32`` cell sets. Timed: the
whole ``fit`` and, through a Lightning callback, the epoch itself, split into data
loading (between batches: cell draws from the store, padding, tokens) and the training
step (forward, backward, optimiser). Peak memory: the process and its DataLoader workers,
sampled from ``/proc`` every 50 ms (a sum of RSS: pages workers share with the parent
count twice, so with workers it is an upper bound), and ``getrusage`` maxima.

Goals (issue): one epoch under 10 minutes on 2 CPU cores, peak memory under 4 GB. Time it
on an otherwise idle machine: torch's intra-op threads slow down sharply when another
process competes for the cores; the script prints its CPU time and the load average.

Run: ``python benchmarks/bench_poppy_train.py [--workdir /tmp] [--batch-size 32]
[--max-cells 256] [--num-workers 0] [--threads N] [--max-batches N] [--keep-store]
[--store PATH] [--small]``; ``--small`` is a ~15 s check (120 samples, 150,000 cells,
256-d, 200 profiles, 500 genes, 6 cohorts). ``--max-batches`` stops the epoch early and
extrapolates its time; ``--keep-store`` / ``--store`` write the 11 GB store once and reuse
it.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import lightning
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from lightning.pytorch.callbacks import Callback

from bench_cell_store import sample_sizes  # same sizes as the cell-store benchmark
from cellbridge.data.store import CellStore
from cellbridge.encoders import ScaledGeneEmbeddings
from cellbridge.poppy import POPPY, POPPYConfig

GOAL_EPOCH_S = 600.0
GOAL_PEAK_GB = 4.0


# -- simulated atlas --------------------------------------------------------------------


def embeddings(i: int, n: int, dim: int, seed: int) -> np.ndarray:
    """Simulated float16 embeddings of sample ``i``, reproducible from ``(seed, i)``."""
    rng = np.random.default_rng([seed, i])
    # Normal draws, not random float16 bit patterns: those hold ~3% subnormal values,
    # which slow the float16 -> float32 conversion and float32 arithmetic several-fold.
    values = torch.from_numpy(rng.standard_normal((n, dim), dtype=np.float32))
    return values.to(torch.float16).numpy()


def write_store(path: Path, sizes: np.ndarray, dim: int, seed: int) -> float:
    """Write the simulated store one sample at a time; returns seconds (with ``fsync``)."""
    t = time.perf_counter()
    with CellStore.create(
        path, dim=dim, dtype="float16", source="simulated", provenance="bench_poppy_train"
    ) as writer:
        for i, n in enumerate(sizes):
            writer.append(f"sample_{i:04d}", embeddings(i, int(n), dim, seed))
    with path.open("rb") as f:
        os.fsync(f.fileno())
    return time.perf_counter() - t


def simulated_bulk(
    n_samples: int, n_profiles: int, n_genes: int, n_cohorts: int, seed: int
) -> AnnData:
    """Pseudobulk-like (one per sample) then in-silico-like profiles, log1p-CPM."""
    rng = np.random.default_rng([seed, 1])
    sample_cohort = rng.integers(0, n_cohorts, size=n_samples)
    sample_cohort[:n_cohorts] = np.arange(n_cohorts)  # every cohort present
    n_extra = n_profiles - n_samples
    paired = np.concatenate([np.arange(n_samples), rng.integers(0, n_samples, size=n_extra)])
    gene_mean = rng.lognormal(mean=2.0, sigma=1.5, size=n_genes)
    draws = rng.poisson(gene_mean * rng.gamma(2.0, 0.5, size=(n_profiles, n_genes)))
    counts = draws + rng.random((n_profiles, n_genes))  # non-integer: no ties at 0
    X = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e6).astype(np.float32)
    names = [f"pb_{i:04d}" for i in range(n_samples)] + [f"isb_{i:04d}" for i in range(n_extra)]
    obs = pd.DataFrame(
        {
            "sample": [f"sample_{i:04d}" for i in paired],
            "cohort": [f"cohort_{c:02d}" for c in sample_cohort[paired]],
            "kind": ["pseudobulk"] * n_samples + ["in_silico"] * n_extra,
        },
        index=pd.Index(names),
    )
    var = pd.DataFrame(index=pd.Index([f"gene_{g:04d}" for g in range(n_genes)]))
    return AnnData(X=X, obs=obs, var=var)


def simulated_similarity(names: pd.Index, k: int, seed: int) -> AnnData:
    """Random symmetric kNN-like similarity over ``names``: weights in (0.05, 1), diagonal 1."""
    rng = np.random.default_rng([seed, 2])
    n = len(names)
    rows = np.repeat(np.arange(n), k)
    cols = rng.integers(0, n, size=n * k)
    keep = rows != cols
    W = sp.csr_matrix(
        (rng.uniform(0.05, 1.0, size=int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n)
    )
    W = W.maximum(W.T).tolil()
    W.setdiag(1.0)
    out = AnnData(obs=pd.DataFrame(index=names))
    out.obsp["similarity"] = sp.csr_matrix(W)
    return out


# -- measuring --------------------------------------------------------------------------


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(c) for c in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


class PeakMemory:
    """Samples the RSS of this process plus all its descendants every ``interval`` s."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_total = 0
        self.peak_self = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            own = _rss_bytes(me)
            total = own + sum(_rss_bytes(p) for p in _descendants(me))
            self.peak_self = max(self.peak_self, own)
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its reaped children."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def maxrss_gb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024**2  # KiB on Linux


class EpochTimer(Callback):
    """Epoch wall time, cell sets and cells seen, and the loading / step split."""

    def __init__(self, max_batches: int | None = None) -> None:
        self.max_batches = max_batches
        self.total_batches = 0
        self.epoch_s = 0.0
        self.load_s = 0.0
        self.step_s = 0.0
        self.sets = 0
        self.cells = 0
        self.batches = 0
        self._t0 = 0.0
        self._mark = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.total_batches = int(trainer.num_training_batches)
        self._t0 = self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        now = time.perf_counter()
        self.load_s += now - self._mark
        self._mark = now

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        now = time.perf_counter()
        self.step_s += now - self._mark
        self._mark = now
        self.batches += 1
        self.sets += int(batch.cells.shape[0])
        self.cells += int(batch.mask.sum())
        if self.max_batches is not None and self.batches >= self.max_batches:
            trainer.should_stop = True  # Lightning ends the epoch after this batch
            self.epoch_s = now - self._t0
        if self.batches % 200 == 0:
            print(
                f"  batch {self.batches}: {now - self._t0:.1f} s "
                f"(loading {self.load_s:.1f} s, step {self.step_s:.1f} s)",
                flush=True,
            )

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.max_batches is None or self.batches < self.max_batches:
            self.epoch_s = time.perf_counter() - self._t0


def machine() -> str:
    model = "unknown CPU"
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{model} ({platform.machine()}, Linux {platform.release()}), {os.cpu_count()} cores, "
        f"{ram:.0f} GiB RAM; Python {platform.python_version()}, numpy {np.__version__}, "
        f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), lightning {lightning.__version__}"
    )


# -- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1631)
    parser.add_argument("--cells", type=int, default=2_732_789)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--profiles", type=int, default=2744)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cohorts", type=int, default=85)
    parser.add_argument("--token-dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=POPPYConfig.batch_size)
    parser.add_argument("--max-cells", type=int, default=POPPYConfig.max_cells)
    parser.add_argument("--num-workers", type=int, default=POPPYConfig.num_workers)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--max-batches",
        type=int,
        default=None,
        help="stop the epoch after this many batches; the epoch time is then extrapolated",
    )
    parser.add_argument("--workdir", default=None, help="where the store is written (temp)")
    parser.add_argument("--keep-store", action="store_true", help="do not delete the store")
    parser.add_argument(
        "--store", default=None, help="reuse a store written by an earlier --keep-store run"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--small", action="store_true", help="120 samples, 150,000 cells, 256-d, 200 profiles"
    )
    args = parser.parse_args()
    if args.small:
        args.samples, args.cells, args.dim = 120, 150_000, 256
        args.profiles, args.genes, args.cohorts = 200, 500, 6
    if args.profiles < args.samples:
        parser.error("--profiles must be at least --samples (one pseudobulk per sample)")

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print("SIMULATED DATA: random embeddings, expression, cohorts and similarity")
    sizes = sample_sizes(args.samples, args.cells, args.seed)
    n_bytes = args.cells * args.dim * 2
    print(
        f"{args.samples:,} samples, {args.cells:,} cells (per sample: median "
        f"{int(np.median(sizes)):,}, max {sizes.max():,}) x {args.dim} float16 = "
        f"{n_bytes / 1e9:.2f} GB; {args.profiles:,} profiles x {args.genes:,} genes, "
        f"{args.cohorts} cohorts",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench_poppy_train.", dir=args.workdir))
    path = workdir / "cells.h5"
    if args.store is not None:
        path = Path(args.store)
    try:
        if args.store is None:
            write_s = write_store(path, sizes, args.dim, args.seed)
        else:
            write_s = float("nan")
            with CellStore.open(path) as check:
                assert check.cell_counts.to_numpy().tolist() == sizes.tolist(), "other shape"
        store_gb = path.stat().st_size / 1e9
        done = "reused" if args.store is not None else f"written in {write_s:.1f} s"
        print(f"store: {store_gb:.2f} GB, {done}", flush=True)

        bulk = simulated_bulk(args.samples, args.profiles, args.genes, args.cohorts, args.seed)
        similarity = simulated_similarity(bulk.obs_names, 15, args.seed)
        table = pd.DataFrame(
            np.random.default_rng([args.seed, 3]).normal(size=(args.genes, args.token_dim)),
            index=bulk.var_names,
        )
        config = POPPYConfig(
            batch_size=args.batch_size,
            max_cells=args.max_cells,
            num_workers=args.num_workers,
            max_epochs=1,
            val_fraction=0.0,
            seed=args.seed,
            accelerator="cpu",
        )
        timer = EpochTimer(args.max_batches)
        print(f"after setup: peak RSS {maxrss_gb(resource.RUSAGE_SELF):.2f} GB", flush=True)
        load_before = os.getloadavg()[0]
        with CellStore.open(path) as store, PeakMemory() as mem:
            cpu0 = _cpu_s()
            t = time.perf_counter()
            model = POPPY(config, token_encoder=ScaledGeneEmbeddings(table))
            model.fit(store, bulk, similarity, progress=False, callbacks=[timer])
            fit_s = time.perf_counter() - t
            cpu_s = _cpu_s() - cpu0
        load_after = os.getloadavg()[0]
        assert model.history is not None
        loss = model.history.train_loss[-1]
    finally:
        if args.keep_store:
            print(f"store kept at {path}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    peak_self = maxrss_gb(resource.RUSAGE_SELF)
    peak_child = maxrss_gb(resource.RUSAGE_CHILDREN)
    peak_sampled = mem.peak_total / 1024**3
    peak = max(peak_self, peak_sampled)
    measured = timer.epoch_s  # over timer.batches batches
    scale = timer.total_batches / timer.batches
    epoch = measured * scale
    partial = timer.batches < timer.total_batches
    if partial:
        print(
            f"PARTIAL EPOCH: {timer.batches:,} of {timer.total_batches:,} batches in "
            f"{measured:.1f} s; epoch time extrapolated x{scale:.2f}"
        )
    print()
    print(f"machine: {machine()}")
    print(
        f"config: batch_size {config.batch_size}, max_cells {config.max_cells}, "
        f"num_workers {config.num_workers}, embedding_dim {config.embedding_dim}; "
        f"{timer.batches:,} batches, train loss {loss:.4f}"
    )
    print(
        f"CPU: fit used {cpu_s:.0f} CPU s in {fit_s:.0f} s wall ({cpu_s / fit_s:.2f} cores busy "
        f"on average); 1-min load average {load_before:.1f} before, {load_after:.1f} after "
        "(anything above this run's own share means other processes competed for the cores)"
    )
    print()
    print("SIMULATED atlas (random data): timings measure the pipeline, not the biology.")
    print("| measure | value | goal | ratio (goal / value) |")
    print("|---|---|---|---|")
    print(f"| cells stored | {args.cells:,} in {args.samples:,} samples | | |")
    print(f"| store size (float16, {args.dim}-d) | {store_gb:.2f} GB | | |")
    if args.store is None:
        print(f"| store write + fsync (not in the epoch) | {write_s:.1f} s | | |")
    print(
        f"| **epoch wall time**{' (extrapolated)' if partial else ''} | **{epoch:.1f} s** | "
        f"< {GOAL_EPOCH_S:.0f} s | "
        f"{GOAL_EPOCH_S / epoch:.2f}x |"
    )
    print(
        f"| - data loading (draws, padding, tokens) | {timer.load_s:.1f} s "
        f"({timer.load_s / measured:.0%}) | | |"
    )
    print(
        f"| - training step (forward, backward, AdamW) | {timer.step_s:.1f} s "
        f"({timer.step_s / measured:.0%}) | | |"
    )
    print(f"| whole `fit` (incl. setup, standardisation pass) | {fit_s:.1f} s | | |")
    print(f"| cell sets encoded | {timer.sets:,} ({timer.sets / measured:,.1f} /s) | | |")
    print(f"| cells encoded | {timer.cells:,} ({timer.cells / measured:,.0f} /s) | | |")
    print(
        f"| **peak memory** (process + workers, sampled) | **{peak:.2f} GB** | "
        f"< {GOAL_PEAK_GB:.0f} GB | {GOAL_PEAK_GB / peak:.2f}x |"
    )
    print(
        f"| peak RSS, getrusage (self / largest child) | {peak_self:.2f} / "
        f"{peak_child:.2f} GB | | |"
    )


if __name__ == "__main__":
    main()
