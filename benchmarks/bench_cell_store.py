"""Out-of-core cell store at the 3CA shape: write, read sample by sample, peak memory.

POPPY's training atlas (3CA, paper §A.3.1) holds 2,732,789 cells from 1,631 samples; with
2,048-d float16 embeddings that is 11 GB. The embeddings here are SYNTHETIC: random
float16 bit patterns in (-2, 2) (float32: standard normal draws), generated one sample at
a time from a per-sample seed, so generation never holds more than one sample. Uncompressed
I/O does not depend on the values. Sample sizes are a seeded log-normal around 1,650
cells (at least 10, as in 3CA), scaled to the total.

Anchors (the disk's own speed), in 8 MiB blocks: a plain sequential ``write`` + ``fsync``
of as many bytes (the faster of one run before and one after the store's passes: a VM's
disk varies), and a plain sequential ``read`` of the store file with the page cache
dropped. Passes: write the store (then ``fsync``); read it right after writing (the file
is still in the OS page cache), as stored and as float32; then, each after
``posix_fadvise(DONTNEED)`` drops the file from the cache, a cold read, the read anchor,
and a cold pass drawing ``max_cells`` cells per sample (a per-step cell budget; the paper
gives none, 1,000 here).

Run: ``python benchmarks/bench_cell_store.py [--samples 1631] [--cells 2732789]
[--dim 2048] [--dir /tmp] [--small]``; ``--small`` is a seconds-long check (60 samples,
100,000 cells, 256-d).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch  # imported up front, as in a training loop: float16 -> float32 reads use it

from cellbridge.data.store import CellStore


def sample_sizes(n_samples: int, n_cells: int, seed: int) -> np.ndarray:
    """Seeded log-normal sizes (median ~1,650), at least 10, summing to ``n_cells``."""
    rng = np.random.default_rng(seed)
    draws = rng.lognormal(mean=np.log(1650), sigma=0.8, size=n_samples)
    sizes = np.maximum(10, np.floor(draws / draws.sum() * n_cells)).astype(np.int64)
    sizes[np.argmax(sizes)] += n_cells - sizes.sum()
    return sizes


def embeddings(i: int, n: int, dim: int, dtype: str, seed: int) -> np.ndarray:
    """Synthetic embeddings of sample ``i``, reproducible from ``(seed, i)`` alone."""
    rng = np.random.default_rng([seed, i])
    if dtype == "float16":
        # Clearing bit 14 keeps the exponent below 16: finite values with |x| < 2.
        bits = rng.integers(0, 2**16, size=(n, dim), dtype=np.uint16) & np.uint16(0xBFFF)
        return bits.view(np.float16)
    return rng.standard_normal((n, dim), dtype=np.float32)


def drop_from_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_fraction(path: Path) -> str:
    """Share of the file in the page cache, from util-linux ``fincore`` when present."""
    if shutil.which("fincore") is None:
        return "n/a"
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return f"{int(out[0]) / path.stat().st_size:.0%}" if out else "n/a"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1631)
    parser.add_argument("--cells", type=int, default=2_732_789)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--max-cells", type=int, default=1000)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="60 samples, 100,000 cells, 256-d")
    args = parser.parse_args()
    if args.small:
        args.samples, args.cells, args.dim = 60, 100_000, 256

    sizes = sample_sizes(args.samples, args.cells, args.seed)
    itemsize = np.dtype(args.dtype).itemsize
    n_bytes = args.cells * args.dim * itemsize
    print(
        f"{args.samples:,} samples, {args.cells:,} cells (per sample: median "
        f"{int(np.median(sizes)):,}, max {sizes.max():,}) x {args.dim} {args.dtype} = "
        f"{n_bytes / 1e9:.2f} GB of synthetic embeddings"
    )
    print(f"after imports: peak RSS {peak_rss_gb():.2f} GB")
    workdir = Path(tempfile.mkdtemp(prefix="bench_cell_store.", dir=args.dir))
    path = workdir / "cells.h5"
    rows: list[tuple[str, float, str]] = []

    def add(name: str, seconds: float, note: str = "") -> None:
        rows.append((name, seconds, note))
        print(f"{name}: {seconds:.2f} s, peak RSS so far {peak_rss_gb():.2f} GB", flush=True)

    plain_writes: list[float] = []

    def plain_write() -> None:
        """The write anchor; the disk of a VM varies run to run, so it runs twice."""
        t = time.perf_counter()
        plain = workdir / "plain.bin"
        block = memoryview(np.random.default_rng(args.seed).bytes(8 * 1024**2))
        with plain.open("wb", buffering=0) as f:
            for start in range(0, n_bytes, len(block)):
                f.write(block[: n_bytes - start])
            os.fsync(f.fileno())
        plain_writes.append(time.perf_counter() - t)
        print(f"plain write + fsync: {plain_writes[-1]:.2f} s", flush=True)
        plain.unlink()

    try:
        plain_write()
        # -- write ----------------------------------------------------------------------
        generate_s = 0.0
        t0 = time.perf_counter()
        with CellStore.create(
            path, dim=args.dim, dtype=args.dtype, source="synthetic", provenance="benchmark"
        ) as writer:
            for i, n in enumerate(sizes):
                t = time.perf_counter()
                emb = embeddings(i, int(n), args.dim, args.dtype, args.seed)
                generate_s += time.perf_counter() - t
                writer.append(f"sample_{i:04d}", emb)
                del emb
        write_s = time.perf_counter() - t0 - generate_s
        add("write (append + close)", write_s, "generation not timed")
        t = time.perf_counter()
        with path.open("rb") as f:
            os.fsync(f.fileno())
        add("write + fsync (on disk)", write_s + time.perf_counter() - t)
        print(f"generation (not timed above): {generate_s:.1f} s")
        file_gb = path.stat().st_size / 1e9

        # -- read -----------------------------------------------------------------------
        def full_pass(dtype: str | None) -> float:
            t = time.perf_counter()
            seen = 0
            with CellStore.open(path) as store:
                for _, cells in store.iter_samples(dtype=dtype):  # type: ignore[arg-type]
                    seen += len(cells)
            assert seen == args.cells
            return time.perf_counter() - t

        warm = cached_fraction(path)
        add("read right after writing, stored dtype", full_pass(None), f"{warm} of file cached")
        add("read again, as float32", full_pass("float32"), "float16 -> float32 on the CPU")

        drop_from_cache(path)
        cold = cached_fraction(path)
        add("read, cold (file dropped from cache)", full_pass(None), f"{cold} cached before")

        drop_from_cache(path)
        t = time.perf_counter()
        with path.open("rb", buffering=0) as f:
            buf = bytearray(8 * 1024**2)
            while f.readinto(buf):
                pass
        add("anchor: plain sequential read, cold", time.perf_counter() - t, "whole file")

        drop_from_cache(path)
        t = time.perf_counter()
        kept = 0
        with CellStore.open(path) as store:
            rng = np.random.default_rng(args.seed)
            for i in range(len(store)):
                kept += len(store.sample(i, args.max_cells, rng, dtype=None))
        sub_s = time.perf_counter() - t
        print(f"subsample pass: {sub_s:.1f} s for {kept:,} cells")

        # again, last (writing as many bytes evicts the store from the page cache)
        plain_write()
        # -- correctness: three samples against a fresh draw from their seeds -----------
        with CellStore.open(path) as store:
            for i in (0, len(sizes) // 2, len(sizes) - 1):
                expected = embeddings(i, int(sizes[i]), args.dim, args.dtype, args.seed)
                assert np.array_equal(store.read(i, dtype=None), expected), i
        with h5py.File(path) as f:
            chunk = f["embeddings"].chunks
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    peak = peak_rss_gb()
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB RAM; "
        f"Python {platform.python_version()}, numpy {np.__version__}, h5py {h5py.__version__} "
        f"(HDF5 {h5py.version.hdf5_version}), torch {torch.__version__}"
    )
    print(
        f"file: {file_gb:.2f} GB for {n_bytes / 1e9:.2f} GB of embeddings; chunks {chunk} "
        f"({chunk[0] * chunk[1] * itemsize / 2**20:.0f} MiB)"
    )
    print()
    add("anchor: plain sequential write + fsync", min(plain_writes), "best of 2 (before, after)")
    anchors = {
        kind: next(
            sec for name, sec, _ in rows if name.startswith(f"anchor: plain sequential {kind}")
        )
        for kind in ("read", "write")
    }
    print("| pass | time | MB/s | cells/s | vs anchor | note |")
    print("|---|---|---|---|---|---|")
    for name, sec, note in rows:
        kind = "read" if "read" in name else "write" if "fsync" in name else ""
        ratio = f"{anchors[kind] / sec:.2f}x" if kind else ""
        print(
            f"| {name} | {sec:.2f} s | {n_bytes / sec / 1e6:,.0f} | "
            f"{args.cells / sec / 1e6:.2f} M | {ratio} | {note} |"
        )
    print(
        f"| subsample {args.max_cells:,} cells per sample, cold | {sub_s:.2f} s | | "
        f"{kept / sub_s / 1e6:.2f} M | | {len(sizes) / sub_s:,.0f} samples/s, {kept:,} cells |"
    )
    print(f"| peak memory (process RSS) | {peak:.2f} GB | | | | goal < 2 GB |")


if __name__ == "__main__":
    main()
