"""POPPY's stage-2 phenotype head over SIMULATED reference atlases: time, memory, agreement.

:class:`cellbridge.nn.PhenotypeHead` (POPPY §2.2.5) lets each bulk embedding attend over a
fixed reference atlas of ``N`` cell embeddings. It computes the softmax over the atlas in
chunks of cells with a streaming log-sum-exp and recomputes each chunk in the backward
pass, so the memory it needs on top of the atlas is bounded by one chunk.

Data (all SIMULATED): the atlas is ``N x dim`` float32 standard normal draws standing in
for frozen foundation-model cell embeddings (default ``N = 100,000`` at 2,048-d and
``N = 1,000,000`` at 512-d: 1M x 2,048 float32 is 8.2 GB per process and a minute of
sampling per configuration on two cores; ``--dims 2048`` runs it); the bulk batch is
``B = 16`` standard normal 128-d embeddings with random binary labels; the head maps
128 -> 64 (queries), ``dim`` -> 64 (keys) and ``dim`` -> 1 (values), seeded default
initialisation. Timings measure the computation, not the biology.

Anchor, run in the same invocation on the same atlas, head and batch: the direct form
``torch.softmax(head.scores(z, X), 1) @ head.value(X) + head.bias``, which materialises
the ``N x 64`` keys and the ``B x N`` logits and keeps them for the backward pass.

Measured per configuration:

- ``train``: one training step, forward + backward of a BCE loss on the head's logit
  (gradients to the head's parameters and to the bulk embeddings; the atlas is frozen);
- ``attention``: one pass computing the ``(B, N)`` weights, ``head.attention(z, X)``
  against ``torch.softmax(head.scores(z, X), 1)``, without gradients.

Each (configuration, measure) runs in its own fresh interpreter, so peaks do not mix: it
builds the atlas, makes one call on a 64-cell slice (lazy imports and one-time set-up are
not what the atlas costs), records its resident set size (RSS), resets the kernel's
high-water mark (``/proc/self/clear_refs``), runs one warm-up and ``--repeats`` timed
calls, and reports the median time and the peak RSS over all of them minus the RSS before
(which holds the interpreter, torch and the atlas itself). A thread sampling ``VmRSS``
every 10 ms is the fallback where the mark cannot be reset. A last process compares the
chunked and direct outputs, gradients and weights at the first size, at the default
temperature and at a sharp one, and against the direct form in float64.

RSS is what the operating system sees, so it includes memory that glibc's ``malloc`` has
freed but kept: with its default dynamic mmap threshold, the per-chunk buffers of the
chunked form are served from the heap once the first one is freed, and the heap
fragments. ``--mmap-threshold 65536`` runs the timed processes with
``MALLOC_MMAP_THRESHOLD_=65536`` (a fixed threshold), which separates the two.

Run: ``python benchmarks/bench_poppy_phenotype.py [--sizes 100000 1000000]
[--dims 2048 512] [--chunks 1024 8192 65536] [--batch 16] [--repeats 3] [--threads 2]
[--mmap-threshold BYTES] [--no-check]`` (about 2.5 minutes with the defaults on two
cores). Time it on an otherwise idle machine: each row prints the share of the cores other
processes used while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

BULK_DIM = 128
QUERY_DIM = 64
SHARP_TEMPERATURE = 0.05
SEED = 0


# -- memory -----------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_high_water_mark() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") <= _status_kb("VmRSS") + 1024


class RssSampler:
    """Largest ``VmRSS`` of this process seen by a thread polling every ``interval`` s."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak_kb = _status_kb("VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))


# -- one configuration, in its own process ----------------------------------------------


def _setup(n: int, dim: int, batch: int, temperature: float | None = None) -> tuple[Any, ...]:
    import torch

    from cellbridge.nn import PhenotypeHead

    gen = torch.Generator().manual_seed(SEED)
    reference = torch.randn(n, dim, generator=gen)
    z = torch.randn(batch, BULK_DIM, generator=gen)
    labels = torch.randint(0, 2, (batch, 1), generator=gen).float()
    torch.manual_seed(SEED)
    head = PhenotypeHead(BULK_DIM, dim, query_dim=QUERY_DIM, temperature=temperature)
    return head, reference, z, labels


def _direct(head: Any, z: Any, reference: Any) -> Any:
    import torch

    return torch.softmax(head.scores(z, reference), 1) @ head.value(reference) + head.bias


def _max_diff(a: Any, b: Any) -> float:
    return (a.double() - b.double()).abs().max().item()


def _train_step(head: Any, form: Any, z: Any, labels: Any) -> tuple[Any, list[Any]]:
    """Forward + backward of the BCE loss; the logits and the gradients (head, then z)."""
    from torch.nn.functional import binary_cross_entropy_with_logits

    head.zero_grad(set_to_none=True)
    zz = z.detach().requires_grad_(True)
    logit = form(head, zz)
    binary_cross_entropy_with_logits(logit, labels).backward()
    grads = [p.grad for p in head.parameters()] + [zz.grad]
    return logit.detach(), grads


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Times one (form, chunk, measure) on a fresh atlas; peak RSS growth over the calls."""
    import torch

    torch.set_num_threads(spec["threads"])
    head, reference, z, labels = _setup(spec["n"], spec["dim"], spec["batch"])
    chunk = spec["chunk"]

    def step(atlas: Any = reference, chunk: int | None = chunk) -> None:
        if spec["measure"] == "train":
            if chunk is None:
                _train_step(head, lambda h, zz: _direct(h, zz, atlas), z, labels)
            else:
                _train_step(head, lambda h, zz: h(zz, atlas, chunk_size=chunk), z, labels)
            return
        with torch.no_grad():
            if chunk is None:
                torch.softmax(head.scores(z, atlas), 1)
            else:
                head.attention(z, atlas, chunk_size=chunk)

    # one call on a tiny atlas first: lazy imports and one-time initialisation (about
    # 60 MB for torch.utils.checkpoint's first use) are not memory the atlas needs
    step(reference[:64], None if chunk is None else 16)
    baseline_kb = _status_kb("VmRSS")
    reset = _reset_high_water_mark()
    times: list[float] = []
    error = None
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    with RssSampler() as sampler:
        try:
            for i in range(spec["repeats"] + 1):
                t = time.perf_counter()
                step()
                if i > 0:
                    times.append(time.perf_counter() - t)
        except (MemoryError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    peak_kb = _status_kb("VmHWM") if reset else sampler.peak_kb
    return {
        **spec,
        "seconds": statistics.median(times) if times else None,
        "times": times,
        "peak_extra_mb": (peak_kb - baseline_kb) / 1024,
        "sampled_extra_mb": (sampler.peak_kb - baseline_kb) / 1024,
        "baseline_mb": baseline_kb / 1024,
        "reference_mb": reference.numel() * reference.element_size() / 1024**2,
        "peak_source": "VmHWM" if reset else "sampled VmRSS",
        "cpu_s": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "error": error,
    }


def _check_one(spec: dict[str, Any], temperature: float | None) -> list[dict[str, Any]]:
    import torch

    head, reference, z, labels = _setup(spec["n"], spec["dim"], spec["batch"], temperature)
    direct_y, direct_g = _train_step(head, lambda h, zz: _direct(h, zz, reference), z, labels)
    with torch.no_grad():
        direct_a = torch.softmax(head.scores(z, reference), 1)
    # the direct form in float64, for the size of float32 rounding itself
    head.double()
    ref64 = reference.double()
    exact_y, exact_g = _train_step(
        head, lambda h, zz, x=ref64: _direct(h, zz, x), z.double(), labels.double()
    )
    with torch.no_grad():
        exact_a = torch.softmax(head.scores(z.double(), ref64), 1)
    del ref64
    head.float()  # the same weights again (float32 -> float64 -> float32 is exact)
    grad_scale = max(g.abs().max().item() for g in exact_g)

    def row(form: str, y: Any, g: Any, a: Any) -> dict[str, Any]:
        grad = max(_max_diff(a_, b_) for a_, b_ in zip(g, exact_g, strict=True))
        return {
            "tau": head.temperature,
            "alpha_max": exact_a.max().item(),
            "form": form,
            "y": _max_diff(y, exact_y),
            "grad": grad,
            "grad_rel": grad / grad_scale,
            "alpha": _max_diff(a, exact_a),
        }

    rows = [row("direct f32", direct_y, direct_g, direct_a)]
    for chunk in spec["chunks"]:
        y, g = _train_step(head, lambda h, zz, c=chunk: h(zz, reference, chunk_size=c), z, labels)
        a = head.attention(z, reference, chunk_size=chunk)
        rows.append(
            row(f"chunked {chunk}", y, g, a)
            | {
                "y_vs_direct": _max_diff(y, direct_y),
                "grad_vs_direct": max(
                    _max_diff(a_, b_) for a_, b_ in zip(g, direct_g, strict=True)
                ),
                "alpha_vs_direct": _max_diff(a, direct_a),
            }
        )
    return rows


def run_check(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Max |chunked - direct| of the logits, gradients and weights; float64 for scale."""
    import torch

    torch.set_num_threads(spec["threads"])
    return [r for tau in (None, SHARP_TEMPERATURE) for r in _check_one(spec, tau)]


# -- driver -----------------------------------------------------------------------------


def machine(threads: int) -> str:
    import torch

    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{model} ({platform.machine()}, Linux {platform.release()}), {os.cpu_count()} cores, "
        f"{ram:.0f} GiB RAM; Python {platform.python_version()}, torch {torch.__version__} "
        f"({threads} threads)"
    )


def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def _busy_cpu_s() -> float:
    """CPU seconds all processes on the machine have used since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _in_subprocess(mode: str, spec: dict[str, Any], mmap_threshold: int | None = None) -> Any:
    """Runs ``spec`` in a fresh interpreter; adds the CPU share other processes took."""
    cmd = [sys.executable, os.path.abspath(__file__), f"--{mode}", json.dumps(spec)]
    env = dict(os.environ)
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    busy0, own0, t0 = _busy_cpu_s(), _children_cpu_s(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    others = (_busy_cpu_s() - busy0) - (_children_cpu_s() - own0)
    others_pct = max(0.0, 100 * others / ((time.perf_counter() - t0) * (os.cpu_count() or 1)))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            if isinstance(result, dict):
                result["others_pct"] = others_pct
            return result
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return {**spec, "error": f"process exited with {proc.returncode}: {tail[:120]}"}


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--dims", type=int, nargs="+", default=[2048, 512], help="one per size, or one for all"
    )
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 8192, 65536])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        help="run the timed processes with MALLOC_MMAP_THRESHOLD_ set to this many bytes "
        "(a fixed glibc mmap threshold; default: glibc's dynamic one)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the agreement check")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--check", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(run_config(json.loads(args.worker))))
        return
    if args.check:
        print("RESULT " + json.dumps(run_check(json.loads(args.check))))
        return

    dims = args.dims if len(args.dims) == len(args.sizes) else [args.dims[0]] * len(args.sizes)
    print(f"machine: {machine(args.threads)}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(
        f"SIMULATED atlases (float32 N(0, 1)), B = {args.batch} bulk queries ({BULK_DIM}-d), "
        f"query_dim {QUERY_DIM}; median of {args.repeats} calls after one warm-up; "
        "peak = RSS high-water mark minus RSS with the atlas loaded, fresh process each row"
    )
    threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if args.mmap_threshold is not None:
        threshold = str(args.mmap_threshold)
    print(f"glibc mmap threshold: {threshold or 'dynamic (default)'}")
    t0 = time.perf_counter()
    results = []
    for n, dim in zip(args.sizes, dims, strict=True):
        for measure in ("train", "attention"):
            for chunk in [None, *args.chunks]:
                spec = {
                    "n": n,
                    "dim": dim,
                    "chunk": chunk,
                    "measure": measure,
                    "batch": args.batch,
                    "repeats": args.repeats,
                    "threads": args.threads,
                }
                need_mb = n * dim * 4 / 1024**2 + 1024
                if need_mb > _available_mb():
                    results.append({**spec, "error": f"skipped: needs ~{need_mb:,.0f} MB"})
                else:
                    results.append(_in_subprocess("worker", spec, args.mmap_threshold))
                r = results[-1]
                print(
                    f"  done {measure} N={n:,} chunk={chunk}: {_fmt(r.get('seconds'), '.3f')} s, "
                    f"{_fmt(r.get('peak_extra_mb'), '.1f')} MB {r.get('error') or ''}",
                    flush=True,
                )

    print()
    header = (
        "| measure | form | N | dim | chunk | s / call | vs direct (time) "
        "| peak extra MB | vs direct (memory) | atlas MB | other load |"
    )
    print(header)
    print("|---" * 11 + "|")
    for r in results:
        anchor = next(
            a
            for a in results
            if a["n"] == r["n"] and a["measure"] == r["measure"] and a["chunk"] is None
        )
        time_ratio = mem_ratio = None
        if r.get("seconds") and anchor.get("seconds"):
            time_ratio = r["seconds"] / anchor["seconds"]
        if r.get("peak_extra_mb") and anchor.get("peak_extra_mb") and not anchor.get("error"):
            mem_ratio = anchor["peak_extra_mb"] / r["peak_extra_mb"]
        form = "direct (anchor)" if r["chunk"] is None else "chunked streaming"
        print(
            f"| {r['measure']} | {form} | {r['n']:,} | {r['dim']} | "
            f"{'—' if r['chunk'] is None else format(r['chunk'], ',')} | "
            f"{_fmt(r.get('seconds'), '.3f')} | {_fmt(time_ratio, '.2f')}x | "
            f"{_fmt(r.get('peak_extra_mb'), ',.1f')} | {_fmt(mem_ratio, '.1f')}x less | "
            f"{_fmt(r.get('reference_mb'), ',.0f')} | {_fmt(r.get('others_pct'), '.0f')}% |"
            + (f" {r['error']}" if r.get("error") else "")
        )
    sources = {r.get("peak_source") for r in results if r.get("peak_source")}
    print(f"peak measured from: {', '.join(sorted(sources))}")
    print("time ratio = chunked / direct (below 1 is faster); memory ratio = direct / chunked")
    print(
        "other load = CPU time other processes used while the row ran, % of all cores "
        "(torch's threads slow down sharply when it is not ~0)"
    )

    if not args.no_check:
        spec = {
            "n": args.sizes[0],
            "dim": dims[0],
            "batch": args.batch,
            "chunks": args.chunks,
            "threads": args.threads,
        }
        rows = _in_subprocess("check", spec)
        print()
        print(
            f"agreement at N = {args.sizes[0]:,}, dim {dims[0]}: max |difference| of the logits "
            "y, the gradients (head parameters and bulk embeddings) and the weights alpha"
        )
        if isinstance(rows, dict):
            print(f"  check failed: {rows.get('error')}")
        else:
            print(
                "| temperature | largest alpha | form | y vs direct | grad vs direct "
                "| alpha vs direct | y vs float64 | grad vs float64 (relative) "
                "| alpha vs float64 |"
            )
            print("|---" * 9 + "|")
            for r in rows:
                print(
                    f"| {r['tau']:g} | {r['alpha_max']:.3g} | {r['form']} | "
                    f"{_fmt(r.get('y_vs_direct'), '.2e')} | "
                    f"{_fmt(r.get('grad_vs_direct'), '.2e')} | "
                    f"{_fmt(r.get('alpha_vs_direct'), '.2e')} | {r['y']:.2e} | "
                    f"{r['grad']:.2e} ({r['grad_rel']:.1e}) | {r['alpha']:.2e} |"
                )
    print()
    print(
        f"load average after: {os.getloadavg()[0]:.2f}; "
        f"total wall time {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
