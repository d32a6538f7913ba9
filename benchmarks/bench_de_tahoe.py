"""BiRD DE signatures at Tahoe scale, streamed from per-plate files: SYNTHETIC data.

Data: a synthetic (simulated) plate set shaped like Tahoe-100M, written as one .h5ad per
plate (by default 2,000,000 cells x 62,710 genes in 14 plates; 50 cell lines, 5 of them
reference lines; 380 drugs, each on one plate; DMSO controls of every line on every
plate; lines and conditions interleaved within a plate as in Tahoe's pooled wells).
Counts are sparse: ``--nnz-per-cell`` genes drawn per cell (Poisson around it; a gene
drawn twice is stored once, so ~10% fewer are stored), from a power law over the
genes, values 1 + Poisson; each drug scales 30 of the 1,000 most often expressed genes
3x in the reference lines, so signatures are not empty.
``X`` is CSR (float32 data, int32 indices) with byte-shuffle + LZF compression. The
writer streams each plate in row chunks, so it never holds a plate.

Measured, in a fresh Python process (so the writer's memory is not counted):
:func:`cellbridge.bird.signatures_from_plates` of the 5 reference lines x 380 drugs
(Wilcoxon, BH, top 100), one plate at a time, or on a loopback Dask cluster of
``--workers`` processes. Printed: wall time, CPU time (user + system of the measuring
process and its workers: on a shared machine, steadier than wall time), cells read/s
(every cell of every plate: their ``obs`` keys are scanned), reference cells processed/s,
stored entries read, and peak RSS: ``ru_maxrss`` of the measuring process
(``getrusage(RUSAGE_SELF)``), its RSS after imports and a warm-up of the compiled kernels
(the libraries' share), the largest worker's ``ru_maxrss`` (``RUSAGE_CHILDREN``, with
``--workers``) and the peak of the whole process tree sampled every 0.1 s with psutil;
and the memory bound of the streaming path (:func:`~cellbridge.bird.signatures_from_plates`:
the largest plate's reference-line entries x 8 bytes, one line in float64, that line's
per-gene statistics,
the plate's row pointers, one read slice).

Run: ``python benchmarks/bench_de_tahoe.py`` (the full set: ~9 min of generation on 2
busy cores, 2 GiB on disk at ~360 stored entries per cell) or ``python
benchmarks/bench_de_tahoe.py --cells 20000 --genes 2000 --drugs 40 --plates 4`` (a smoke
check, seconds). Files go to a temporary folder (``--dir``), deleted at the end unless
``--keep``; ``--reuse`` measures files already in ``--dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

LABEL = "synthetic (simulated) plate set shaped like Tahoe-100M"


# --- writing the plate set -----------------------------------------------------------------


def write_plates(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Write ``args.plates`` .h5ad files into ``folder``; returns their manifest."""
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    rng = np.random.default_rng(args.seed)
    genes = np.array([f"GENE{j:05d}" for j in range(args.genes)])
    lines = [f"LINE{i:02d}" for i in range(args.lines)]
    reference = lines[: args.reference_lines]
    drugs = [f"DRUG{i:03d}" for i in range(args.drugs)]
    # gene popularity: a power law (the r-th most popular gene drawn with probability
    # ~ r^-0.8, as in single-cell data: a few genes in most cells), genes in random order
    by_rank = rng.permutation(args.genes)
    # each drug's 30 responding genes, among the 1,000 most often expressed
    common = by_rank[: min(1000, args.genes)]
    response = {d: rng.choice(common, size=min(30, len(common)), replace=False) for d in drugs}
    sizes = np.full(args.plates, args.cells // args.plates)
    sizes[: args.cells % args.plates] += 1
    manifest: dict[str, Any] = {"plates": [], "reference_lines": reference, "label": LABEL}
    for p in range(args.plates):
        plate = f"plate{p + 1:02d}"
        on_plate = [d for i, d in enumerate(drugs) if i % args.plates == p]
        conditions = np.array(["DMSO", *on_plate])
        responds = np.zeros((len(conditions), args.genes), dtype=bool)
        for c, drug in enumerate(on_plate, start=1):
            responds[c, response[drug]] = True
        n = int(sizes[p])
        line_of = rng.integers(0, args.lines, size=n)
        condition_of = rng.integers(0, len(conditions), size=n)
        path = folder / f"{plate}.h5ad"
        nnz, ref_nnz, line_nnz = 0, 0, np.zeros(args.reference_lines, np.int64)
        with h5py.File(path, "w") as f:
            f.attrs["encoding-type"] = "anndata"
            f.attrs["encoding-version"] = "0.1.0"
            X = f.create_group("X")
            X.attrs["encoding-type"] = "csr_matrix"
            X.attrs["encoding-version"] = "0.1.0"
            X.attrs["shape"] = (n, args.genes)
            opts = {"chunks": (1 << 18,), "maxshape": (None,), "shuffle": True}
            if args.compression != "none":
                opts["compression"] = args.compression
            data = X.create_dataset("data", shape=(0,), dtype=np.float32, **opts)
            indices = X.create_dataset("indices", shape=(0,), dtype=np.int32, **opts)
            indptr = np.zeros(n + 1, dtype=np.int64)
            for lo in range(0, n, args.chunk_cells):
                hi = min(lo + args.chunk_cells, n)
                counts = rng.poisson(args.nnz_per_cell, size=hi - lo).clip(1, args.genes)
                row = np.repeat(np.arange(hi - lo, dtype=np.int64), counts)
                col = by_rank[_power_law_ranks(rng.random(row.size), args.genes)]
                # sorted by row, then gene; a gene drawn twice in a cell is stored once
                # (np.sort, not np.unique: the latter is ~30x slower here)
                key = np.sort(row * args.genes + col)
                key = key[np.r_[True, key[1:] != key[:-1]]]
                row, col = key // args.genes, (key % args.genes).astype(np.int32)
                value = (1 + rng.poisson(0.6, size=key.size)).astype(np.float32)
                # the drug's response genes, in the reference lines' treated cells
                cells = np.arange(lo, hi)
                treated = (condition_of[cells] > 0) & (line_of[cells] < args.reference_lines)
                hit = treated[row] & responds[condition_of[lo + row], col]
                value[hit] *= 4
                per_row = np.bincount(row, minlength=hi - lo)
                indptr[lo + 1 : hi + 1] = nnz + np.cumsum(per_row)
                end = nnz + key.size
                data.resize((end,))
                indices.resize((end,))
                data[nnz:end] = value
                indices[nnz:end] = col
                ref_rows = line_of[cells] < args.reference_lines
                ref_nnz += int(per_row[ref_rows].sum())
                line_nnz += np.bincount(
                    line_of[cells][ref_rows], per_row[ref_rows], args.reference_lines
                ).astype(np.int64)
                nnz = end
            X.create_dataset("indptr", data=indptr)
            obs = pd.DataFrame(
                {
                    "drug": pd.Categorical(conditions[condition_of]),
                    "cell_line": pd.Categorical(np.array(lines)[line_of]),
                    "plate": pd.Categorical([plate] * n),
                    "control": condition_of == 0,
                },
                index=[f"{plate}_cell{i}" for i in range(n)],
            )
            write_elem(f, "obs", obs)
            write_elem(f, "var", pd.DataFrame(index=genes))
            for name in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
                write_elem(f, name, {})
        manifest["plates"].append(
            {
                "path": str(path),
                "cells": n,
                "reference_cells": int((line_of < args.reference_lines).sum()),
                "nnz": nnz,
                "reference_nnz": ref_nnz,
                "largest_line_nnz": int(line_nnz.max()),
                "bytes": path.stat().st_size,
            }
        )
        print(
            f"  wrote {path.name}: {n:,} cells, {nnz:,} entries, "
            f"{path.stat().st_size / 2**30:.2f} GiB",
            flush=True,
        )
    return manifest


def _power_law_ranks(u: np.ndarray, n: int, exponent: float = 0.8) -> np.ndarray:
    """Ranks ``0..n-1`` drawn with probability ~ ``(rank + 1) ** -exponent``: the inverse
    of the continuous CDF, ``O(1)`` per draw (a search in the discrete CDF is ~6x slower)."""
    a = 1.0 - exponent
    ranks = (u * ((n + 1) ** a - 1) + 1) ** (1 / a)
    return np.minimum(ranks.astype(np.int64) - 1, n - 1)


# --- the measured part (run in a fresh process) --------------------------------------------


def _tree_rss() -> int:
    import psutil

    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _warm_up() -> None:
    """Load the compiled DE kernels (numba's cache and LLVM: ~0.1 GiB) on a few cells,
    so that the RSS after this counts them with the libraries, not with the data."""
    import scipy.sparse as sp

    from cellbridge.bird import compare_rows

    X = sp.random(40, 30, density=0.3, format="csr", random_state=0, dtype=np.float32)
    compare_rows(X, [np.arange(10), np.arange(10, 20)], np.arange(20, 40))


def measure(folder: Path, workers: int) -> dict[str, Any]:
    """Time :func:`signatures_from_plates` over the plates of ``folder``."""
    import warnings

    import numba

    from cellbridge.bird import signatures_from_plates

    manifest = json.loads((folder / "manifest.json").read_text())
    files = [Path(p["path"]) for p in manifest["plates"]]
    _warm_up()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak_tree = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_tree[0] = max(peak_tree[0], _tree_rss())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    client: Any = None
    cluster: Any = None
    if workers:
        import distributed

        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        client = distributed.Client(cluster)
        client.run(lambda: __import__("cellbridge.bird"))  # worker imports, not timed
    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sig = signatures_from_plates(
            files, reference_lines=manifest["reference_lines"], client=client
        )
    wall = time.perf_counter() - t0
    if client is not None:
        client.close()
        cluster.close()  # the workers exit: their CPU time and ru_maxrss are counted
    cpu = _cpu_seconds() - cpu0
    stop.set()
    sampler.join()
    sizes = [len(g) for g in sig.genes.values()]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "threads": numba.get_num_threads(),
        "signatures": len(sig.genes),
        "median_size": float(np.median(sizes)),
        "empty": sum(1 for s in sizes if s == 0),
        "warnings": [str(w.message)[:120] for w in caught],
        "rss_after_imports": baseline,
        "maxrss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "maxrss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "peak_tree_rss": peak_tree[0],
    }


# --- report --------------------------------------------------------------------------------


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def report(args: argparse.Namespace, manifest: dict[str, Any], result: dict[str, Any]) -> None:
    plates = manifest["plates"]
    cells = sum(p["cells"] for p in plates)
    ref = sum(p["reference_cells"] for p in plates)
    nnz = sum(p["nnz"] for p in plates)
    ref_nnz = sum(p["reference_nnz"] for p in plates)
    genes = args.genes
    largest = max(plates, key=lambda p: p["reference_nnz"])
    # the documented bound: the plate's reference rows as stored (float32 + int32), one
    # line normalised and tested (~48 bytes per entry), that line's per-gene statistics
    # (~100 bytes per gene and drug), the plate's row pointers, one 32 MiB read slice
    drugs_per_plate = -(-args.drugs // args.plates)
    bound = (
        largest["reference_nnz"] * 8
        + largest["largest_line_nnz"] * 48
        + 100 * genes * drugs_per_plate
        + largest["cells"] * 8
        + (1 << 22) * 8
    )
    wall = result["wall_s"]
    mode = f"Dask LocalCluster, {args.workers} workers" if args.workers else "one process"
    print(f"\ndata: {manifest['label']}")
    print(
        f"  {cells:,} cells x {genes:,} genes in {len(plates)} plates; "
        f"{nnz:,} stored entries ({nnz / cells:.0f} per cell, density "
        f"{nnz / (cells * genes):.4%}); {sum(p['bytes'] for p in plates) / 2**30:.2f} GiB on "
        f"disk ({args.compression}); reference lines: {len(manifest['reference_lines'])} "
        f"({ref:,} cells, {ref_nnz:,} entries)"
    )
    print(f"run: signatures_from_plates, {mode}, numba threads {result['threads']}")
    print(
        f"  {result['signatures']} signatures (median {result['median_size']:.0f} genes, "
        f"{result['empty']} empty)"
    )
    rows = [
        ("wall time", f"{wall:.1f} s"),
        ("CPU time (user + system, all processes)", f"{result.get('cpu_s', float('nan')):.1f} s"),
        ("cells read (obs keys scanned) / s", f"{cells / wall:,.0f}"),
        ("reference cells processed / s", f"{ref / wall:,.0f}"),
        ("reference entries processed / s", f"{ref_nnz / wall:,.0f}"),
        (
            "RSS after imports + kernel warm-up (measuring process)",
            _gib(result["rss_after_imports"]),
        ),
        ("peak RSS, measuring process (ru_maxrss)", _gib(result["maxrss_self"])),
    ]
    if args.workers:
        rows.append(("peak RSS, largest worker (ru_maxrss)", _gib(result["maxrss_children"])))
    rows += [
        ("peak RSS, process tree (psutil, 0.1 s)", _gib(result["peak_tree_rss"])),
        ("largest plate: reference entries", f"{largest['reference_nnz']:,}"),
        ("documented bound above the libraries (largest plate)", _gib(bound)),
        (
            "measured: peak - after warm-up",
            _gib(result["maxrss_self"] - result["rss_after_imports"]),
        ),
    ]
    print()
    print("| quantity | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2_000_000)
    parser.add_argument("--genes", type=int, default=62_710)
    parser.add_argument("--plates", type=int, default=14)
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--reference-lines", type=int, default=5)
    parser.add_argument("--drugs", type=int, default=380)
    parser.add_argument("--nnz-per-cell", type=int, default=400)
    parser.add_argument(
        "--workers",
        "--dask-local-workers",
        type=int,
        default=0,
        help="Dask LocalCluster workers (0: one process)",
    )
    parser.add_argument("--compression", choices=["lzf", "gzip", "none"], default="lzf")
    parser.add_argument("--chunk-cells", type=int, default=20_000, help="rows written at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="folder of the plate files")
    parser.add_argument("--keep", action="store_true", help="keep the plate files")
    parser.add_argument("--reuse", action="store_true", help="measure the files in --dir")
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:  # the fresh process
        print(json.dumps(measure(args.measure, args.workers)))
        return
    if args.reference_lines > args.lines or args.drugs < args.plates:
        parser.error("need reference lines <= lines and at least one drug per plate")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    folder = args.dir or Path(tempfile.mkdtemp(prefix="tahoe_like_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if args.reuse:
            manifest = json.loads((folder / "manifest.json").read_text())
            print(f"reusing the {len(manifest['plates'])} plates in {folder}")
        else:
            print(f"writing the {LABEL} to {folder}")
            t0 = time.perf_counter()
            manifest = write_plates(args, folder)
            (folder / "manifest.json").write_text(json.dumps(manifest))
            print(f"  written in {time.perf_counter() - t0:.0f} s")
        command = [sys.executable, __file__, "--measure", str(folder), "--workers"]
        done = subprocess.run(
            [*command, str(args.workers)], check=True, capture_output=True, text=True
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        report(args, manifest, result)
        for message in result["warnings"]:
            print(f"warning: {message}")
    finally:
        if args.keep or args.reuse:
            print(f"plate files kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
