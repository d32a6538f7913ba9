"""Log-domain Sinkhorn (BiRD Eq. 2), forward + backward, against POT's torch backend.

Shape of one BiRD batch: ``--cells`` cells x ``--drugs`` drugs, cost ``C_ik = |f_i - g_k|^2``
from SIMULATED embeddings in R^``--dim`` (standard normal / sqrt(dim), so costs are about
1 to 4), cell labels drawn uniformly over the drugs, ``a = 1/N``, ``b = N_k/N``.

Timed, in the same run, from the embeddings (requiring grad) to their gradients:

- POT: ``ot.bregman.sinkhorn_log(a, b, C, reg=eps, numItermax=--iters, stopThr=0)`` on
  torch tensors (POT's torch backend: ``torch.logsumexp`` per half-step, autograd through
  every iteration); the check of the marginal it makes every 10 iterations is part of it;
- cellbridge: ``cellbridge.ot.sinkhorn`` (default ``method="kernel"``) and, for reference,
  ``method="logsumexp"``.

Each builds the cost with ``squared_euclidean_cost``, takes the plan, and back-propagates
``sum(P * W)`` for a fixed random ``W``. The plans are compared with POT's (max absolute
difference) and so are the gradients (max difference / max |gradient|). A second table
times BiRD's loss (Eq. 3): ``ot_alignment_loss`` against ``-mean(log P[i, k(i)])`` on POT's
plan, which is infinite once the plan underflows.

Run: ``python benchmarks/bench_sinkhorn.py [--cells 1024] [--drugs 380] [--dim 64]
[--iters 100] [--eps 0.1 0.01 0.001] [--dtypes float32 float64] [--threads 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import ot
import torch

import cellbridge.ot._sinkhorn_engines as engines
from cellbridge.ot import ot_alignment_loss, sinkhorn, squared_euclidean_cost
from cellbridge.ot.sinkhorn import Method

Solver = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def simulate(n: int, k: int, dim: int, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    counts = torch.bincount(labels, minlength=k).to(torch.float64)
    return {
        "F": (torch.randn(n, dim, generator=g, dtype=torch.float64) / dim**0.5).to(dtype),
        "G": (torch.randn(k, dim, generator=g, dtype=torch.float64) / dim**0.5).to(dtype),
        "W": torch.randn(n, k, generator=g, dtype=torch.float64).to(dtype),
        "a": torch.full((n,), 1.0 / n, dtype=dtype),
        "b": (counts / n).to(dtype),
        "labels": labels,
    }


def pot_plan(n_iter: int) -> Solver:
    def solve(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
        return ot.bregman.sinkhorn_log(a, b, C, eps, numItermax=n_iter, stopThr=0.0, warn=False)

    return solve


def cellbridge_plan(n_iter: int, method: Method) -> Solver:
    def solve(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
        return sinkhorn(C, a, b, eps=eps, n_iter=n_iter, method=method)

    return solve


def pot_alignment_loss(
    n_iter: int, data: dict[str, torch.Tensor], eps: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Eq. 3 on POT's plan: ``-mean_i log P[i, k(i)]`` (infinite where P underflows)."""
    labels = data["labels"]
    rows = torch.arange(len(labels))

    def loss(C: torch.Tensor) -> torch.Tensor:
        P = pot_plan(n_iter)(C, data["a"], data["b"], eps)
        return -P[rows, labels].log().mean()

    return loss


def cellbridge_alignment_loss(
    n_iter: int, labels: torch.Tensor, eps: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    def loss(C: torch.Tensor) -> torch.Tensor:
        return ot_alignment_loss(C, labels, eps=eps, n_iter=n_iter)

    return loss


def time_plan(
    solve: Solver, data: dict[str, torch.Tensor], eps: float, repeats: int
) -> tuple[list[float], list[float], torch.Tensor, torch.Tensor]:
    """Forward and forward+backward seconds per repeat, the plan and dL/dF."""
    fwd, total = [], []
    for _ in range(repeats + 1):  # the first run warms up and is not timed
        F = data["F"].clone().requires_grad_()
        G = data["G"].clone().requires_grad_()
        t0 = time.perf_counter()
        P = solve(squared_euclidean_cost(F, G), data["a"], data["b"], eps)
        loss = (P * data["W"]).sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        total.append(t2 - t0)
    assert F.grad is not None
    return fwd[1:], total[1:], P.detach(), F.grad


def time_loss(
    loss_fn: Callable[[torch.Tensor], torch.Tensor], data: dict[str, torch.Tensor], repeats: int
) -> tuple[list[float], float]:
    total, value = [], float("nan")
    for _ in range(repeats + 1):
        F = data["F"].clone().requires_grad_()
        t0 = time.perf_counter()
        loss = loss_fn(squared_euclidean_cost(F, data["G"]))
        loss.backward()
        total.append(time.perf_counter() - t0)
        value = float(loss.detach())
    return total[1:], value


def kernels_built(data: dict[str, torch.Tensor], eps: float, n_iter: int) -> int:
    """How many stabilised kernels the default engine builds (2 = never rebuilt)."""
    count = 0
    build = engines._Kernel.__init__

    def counting(self: engines._Kernel, *args: object) -> None:
        nonlocal count
        count += 1
        build(self, *args)  # type: ignore[arg-type]

    engines._Kernel.__init__ = counting  # type: ignore[method-assign,assignment]
    try:
        with torch.no_grad():
            C = squared_euclidean_cost(data["F"], data["G"])
            sinkhorn(C, data["a"], data["b"], eps=eps, n_iter=n_iter)
    finally:
        engines._Kernel.__init__ = build  # type: ignore[method-assign]
    return count


def ms(seconds: list[float]) -> str:
    return f"{min(seconds) * 1e3:,.1f} ({statistics.median(seconds) * 1e3:,.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1024)
    parser.add_argument("--drugs", type=int, default=380)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.01, 0.001])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}; Python {platform.python_version()}, torch "
        f"{torch.__version__}, POT {ot.__version__}, numpy {np.__version__}; "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        f"problem: SIMULATED {args.cells:,} cells x {args.drugs} drugs, embeddings in "
        f"R^{args.dim}, {args.iters} iterations (all run), {args.repeats} timed repeats; "
        "times in ms: best (median)"
    )
    plan_rows, loss_rows = [], []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        data = simulate(args.cells, args.drugs, args.dim, dtype, args.seed)
        for eps in args.eps:
            pf, pt, P_pot, g_pot = time_plan(pot_plan(args.iters), data, eps, args.repeats)
            cf, ct, P_cb, g_cb = time_plan(
                cellbridge_plan(args.iters, "kernel"), data, eps, args.repeats
            )
            _, lt, P_lse, _ = time_plan(
                cellbridge_plan(args.iters, "logsumexp"), data, eps, args.repeats
            )
            dP = float((P_cb - P_pot).abs().max())
            dP_lse = float((P_lse - P_pot).abs().max())
            dg = float((g_cb - g_pot).abs().max() / g_pot.abs().max())
            plan_rows.append(
                f"| {dtype_name} | {eps:g} | {ms(pf)} | {ms(pt)} | {ms(cf)} | {ms(ct)} | "
                f"**{min(pt) / min(ct):.1f}x** | {ms(lt)} | {dP:.1e} ({dP_lse:.0e}) | "
                f"{dg:.1e} | {kernels_built(data, eps, args.iters)} |"
            )
            pot_loss = pot_alignment_loss(args.iters, data, eps)
            cb_loss = cellbridge_alignment_loss(args.iters, data["labels"], eps)
            tp, vp = time_loss(pot_loss, data, args.repeats)
            tc, vc = time_loss(cb_loss, data, args.repeats)
            loss_rows.append(
                f"| {dtype_name} | {eps:g} | {ms(tp)} | {vp:.6g} | {ms(tc)} | {vc:.6g} | "
                f"**{min(tp) / min(tc):.1f}x** |"
            )
    print()
    print(
        "| dtype | eps | POT forward | POT fwd+bwd | cellbridge forward | cellbridge fwd+bwd "
        "| POT / cellbridge (fwd+bwd) | cellbridge logsumexp fwd+bwd | max abs dP vs POT "
        "(logsumexp) | max rel d grad | kernels built |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(plan_rows))
    print()
    print("Eq. 3 loss, forward + backward:")
    print()
    print(
        "| dtype | eps | POT plan, -mean log P[i,k(i)] | its value | cellbridge "
        "ot_alignment_loss | its value | POT / cellbridge |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(loss_rows))
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
