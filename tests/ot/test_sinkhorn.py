"""Log-domain Sinkhorn (BiRD Eq. 2) and the alignment loss (Eq. 3) against POT and autograd."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import cellbridge.ot._sinkhorn_engines as engines
from cellbridge.errors import InputError
from cellbridge.ot import (
    marginals_from_counts,
    marginals_from_labels,
    ot_alignment_loss,
    sinkhorn,
    sinkhorn_potentials,
    squared_euclidean_cost,
)

HYP = settings(max_examples=40, deadline=None, derandomize=True)
METHODS = ["kernel", "logsumexp"]
F64 = torch.float64


def problem(
    n: int, k: int, *, seed: int = 0, dim: int = 8, dtype: torch.dtype = F64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cost from random embeddings (entries of order 1), a = 1/N, b from random drug labels."""
    g = torch.Generator().manual_seed(seed)
    F = torch.randn(n, dim, generator=g, dtype=F64) / math.sqrt(dim)
    G = torch.randn(k, dim, generator=g, dtype=F64) / math.sqrt(dim)
    C = torch.cdist(F, G) ** 2
    counts = torch.bincount(torch.randint(0, k, (n,), generator=g), minlength=k) + 1
    a = torch.full((n,), 1.0 / n, dtype=F64)
    b = counts.to(F64) / counts.sum()
    return C.to(dtype), a.to(dtype), b.to(dtype), counts


def pot_plan(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, n_iter: int):
    """POT's log-domain Sinkhorn, run for exactly ``n_iter`` iterations (stopThr=0)."""
    P, log = ot.bregman.sinkhorn_log(
        a.numpy(),
        b.numpy(),
        C.numpy(),
        reg=eps,
        numItermax=n_iter,
        stopThr=0.0,
        warn=False,
        log=True,
    )
    return P, log["log_u"], log["log_v"]


# --- equal to POT ------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps", [1.0, 0.1, 0.01])
@pytest.mark.parametrize(("n", "k"), [(30, 7), (7, 30), (1, 5), (6, 1)])
def test_plan_and_potentials_equal_pot(method: str, eps: float, n: int, k: int) -> None:
    C, a, b, _ = problem(n, k, seed=n * k)
    n_iter = 37
    expected, log_u, log_v = pot_plan(C, a, b, eps, n_iter)
    P = sinkhorn(C, a, b, eps=eps, n_iter=n_iter, method=method)
    assert P.dtype == F64 and P.shape == (n, k)
    np.testing.assert_allclose(P.numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(P.numpy(), expected, rtol=1e-9, atol=1e-300)
    # POT's log_u, log_v are the potentials divided by reg: f = eps * log_u.
    f, g = sinkhorn_potentials(C, a, b, eps=eps, n_iter=n_iter, method=method)
    np.testing.assert_allclose(f.numpy(), eps * log_u, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g.numpy(), eps * log_v, rtol=1e-9, atol=1e-9)


def test_pot_torch_backend_agrees_and_one_iteration() -> None:
    C, a, b, _ = problem(12, 5)
    for n_iter in (1, 2, 100):
        expected = ot.bregman.sinkhorn_log(
            a, b, C, 0.05, numItermax=n_iter, stopThr=0.0, warn=False
        )
        for method in METHODS:
            P = sinkhorn(C, a, b, eps=0.05, n_iter=n_iter, method=method)
            torch.testing.assert_close(P, expected, rtol=1e-9, atol=1e-15)


def test_log_plan_is_log_of_plan_and_rows_exact() -> None:
    C, a, b, _ = problem(20, 6)
    logP = sinkhorn(C, a, b, eps=0.1, n_iter=5, log=True)
    torch.testing.assert_close(logP.exp(), sinkhorn(C, a, b, eps=0.1, n_iter=5))
    # The last half-iteration updates f, so rows meet a after any number of iterations.
    torch.testing.assert_close(logP.exp().sum(1), a, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_marginals_met_after_enough_iterations(method: str) -> None:
    C, a, b, _ = problem(40, 9, seed=3)
    P = sinkhorn(C, a, b, eps=0.1, n_iter=500, method=method)
    torch.testing.assert_close(P.sum(1), a, rtol=1e-12, atol=0)
    torch.testing.assert_close(P.sum(0), b, rtol=0, atol=1e-10)
    few = sinkhorn(C, a, b, eps=0.1, n_iter=2, method=method)
    assert (few.sum(0) - b).abs().max() > 1e-6  # not converged: no early stop, no fix-up


def test_converges_to_exact_ot_as_eps_goes_to_zero() -> None:
    C, a, b, _ = problem(9, 5, seed=7)
    exact = ot.emd2(a.numpy(), b.numpy(), C.numpy())
    gaps = []
    for eps, n_iter in [(0.3, 300), (0.1, 1000), (0.03, 3000), (0.01, 10000)]:
        P = sinkhorn(C, a, b, eps=eps, n_iter=n_iter)
        torch.testing.assert_close(P.sum(0), b, rtol=0, atol=1e-8)
        gap = float((P * C).sum()) - exact
        # 0 <= <P_eps, C> - OT <= eps * (H(a) + H(b)) <= eps * log(N K) (entropic bias).
        assert -1e-8 <= gap <= eps * math.log(9 * 5)
        gaps.append(gap)
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3


# --- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1.0, 0.1, 0.01, 1e-3])
def test_kernel_gradients_equal_autograd_through_the_iterations(
    eps: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-written reverse pass is the derivative of the same unrolled iterations."""
    built = []
    build = engines._Kernel.__init__

    def counting(self: engines._Kernel, *args: Any) -> None:
        built.append(1)
        build(self, *args)

    monkeypatch.setattr(engines._Kernel, "__init__", counting)
    C0, a0, b0, counts = problem(25, 6, seed=11)
    weights = torch.randn(25, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    labels = torch.repeat_interleave(torch.arange(6), counts - 1)
    grads = {}
    for method in METHODS:
        C = C0.clone().requires_grad_()
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        logP = sinkhorn(C, a, b, eps=eps, n_iter=30, log=True, method=method)
        loss = (logP.exp() * weights).sum() - logP[torch.arange(25), labels[:25]].mean()
        grads[method] = torch.autograd.grad(loss, (C, a, b))
    for got, want in zip(grads["kernel"], grads["logsumexp"], strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10 * float(want.abs().max()))
    # One kernel per axis at large eps; at small eps the rebuilds are exercised too.
    if eps >= 0.1:
        assert len(built) == 2
    elif eps <= 1e-3:
        assert len(built) > 2


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_cost(method: str) -> None:
    C, a, b, _ = problem(5, 3, seed=2)
    C.requires_grad_()
    weights = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=F64)

    def plan_and_loss(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        P = sinkhorn(cost, a, b, eps=0.2, n_iter=15, method=method)
        return P, (P * weights).sum()

    assert torch.autograd.gradcheck(plan_and_loss, (C,))


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_embeddings_and_eps_through_the_loss(method: str) -> None:
    g = torch.Generator().manual_seed(4)
    F = torch.randn(6, 3, generator=g, dtype=F64, requires_grad=True)
    G = torch.randn(3, 3, generator=g, dtype=F64, requires_grad=True)
    eps = torch.tensor(0.5, dtype=F64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 0])

    def loss(F: torch.Tensor, G: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        cost = squared_euclidean_cost(F, G)
        return ot_alignment_loss(cost, labels, eps=eps, n_iter=12, method=method)

    assert torch.autograd.gradcheck(loss, (F, G, eps))


# --- dtypes and small eps ----------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_float32_matches_float64(method: str) -> None:
    C, a, b, _ = problem(64, 12, seed=5)
    P64 = sinkhorn(C, a, b, eps=0.05, n_iter=100, method=method)
    C32 = C.float().requires_grad_()
    P32 = sinkhorn(C32, a.float(), b.float(), eps=0.05, n_iter=100, method=method)
    assert P32.dtype == torch.float32
    torch.testing.assert_close(P32.double(), P64, rtol=0, atol=1e-6)
    (P32 * torch.arange(12.0)).sum().backward()
    assert C32.grad is not None and C32.grad.dtype == torch.float32
    assert torch.isfinite(C32.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("method", METHODS)
def test_small_eps_stays_finite(dtype: torch.dtype, method: str) -> None:
    """eps = 1e-3 on costs of order 1: exp(-C/eps) underflows, the log domain does not."""
    g = torch.Generator().manual_seed(6)
    F = torch.randn(48, 16, generator=g, dtype=dtype, requires_grad=True)
    G = torch.randn(10, 16, generator=g, dtype=dtype, requires_grad=True)
    labels = torch.arange(48) % 10
    cost = squared_euclidean_cost(F, G) / 32  # entries about 0.5 to 3
    m = marginals_from_counts(torch.bincount(labels), dtype=dtype)
    logP = sinkhorn(cost, *m, eps=1e-3, n_iter=100, method=method, log=True)
    P = logP.exp()
    assert torch.isfinite(logP).all() and torch.isfinite(P).all() and (P >= 0).all()
    assert (P == 0).any()  # the plan really underflows somewhere
    loss = ot_alignment_loss(cost, labels, eps=1e-3, n_iter=100, method=method)
    assert torch.isfinite(loss) and float(loss.detach()) >= math.log(48) - 1e-3
    (loss + (P * cost).sum()).backward()
    for x in (F, G):
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_small_eps_float32_close_to_float64() -> None:
    C, a, b, _ = problem(40, 8, seed=8)
    P64 = sinkhorn(C, a, b, eps=1e-3, n_iter=100)
    P32 = sinkhorn(C.float(), a.float(), b.float(), eps=1e-3, n_iter=100)
    torch.testing.assert_close(P32.double(), P64, rtol=0, atol=1e-4)


# --- zero-mass rows and columns ----------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_zero_mass_drugs_get_no_mass_and_change_nothing_else(method: str) -> None:
    C, a, _, _ = problem(15, 6, seed=9)
    b = torch.tensor([0.2, 0.0, 0.5, 0.0, 0.3, 0.0], dtype=F64)
    keep = b > 0
    Cg = C.clone().requires_grad_()
    logP = sinkhorn(Cg, a, b, eps=0.1, n_iter=40, method=method, log=True)
    assert torch.isneginf(logP[:, ~keep]).all()
    reduced = sinkhorn(C[:, keep], a, b[keep], eps=0.1, n_iter=40, method=method, log=True)
    torch.testing.assert_close(logP[:, keep], reduced, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logP.exp(), pot_plan_tensor(C, a, b, 0.1, 40), rtol=1e-9, atol=1e-15)
    logP.exp().sum().backward()
    assert Cg.grad is not None and torch.isfinite(Cg.grad).all()


def pot_plan_tensor(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, n: int):
    with np.errstate(divide="ignore"):  # POT takes log(0) = -inf for the empty columns
        return torch.as_tensor(pot_plan(C, a, b, eps, n)[0])


# --- the loss (Eq. 3) --------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_alignment_loss_is_eq3_on_the_plan(method: str) -> None:
    C, _, _, _ = problem(30, 5, seed=10)
    labels = torch.arange(30) % 4  # drug 4 has no cells: b_4 = 0
    a, b = marginals_from_counts(torch.bincount(labels, minlength=5))
    logP = sinkhorn(C, a, b, eps=0.05, n_iter=50, log=True, method=method)
    want = -logP[torch.arange(30), labels].mean()
    got = ot_alignment_loss(C, labels, eps=0.05, n_iter=50, method=method)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    assert float(got) >= math.log(30)


def test_alignment_loss_reaches_log_n_on_aligned_embeddings() -> None:
    G = torch.eye(4, dtype=F64) * 3
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3])
    F = G[labels] + 0.01
    loss = ot_alignment_loss(squared_euclidean_cost(F, G), labels, eps=0.05, n_iter=200)
    assert abs(float(loss) - math.log(9)) < 1e-6
    shuffled = ot_alignment_loss(squared_euclidean_cost(F, G), labels.roll(1), eps=0.05)
    assert float(shuffled) > float(loss) + 10


@given(
    sizes=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    seed=st.integers(0, 2**16),
    eps=st.floats(0.25, 2.0),
    zeros=st.booleans(),
)
@HYP
def test_property_plan_nonnegative_finite_marginals(
    sizes: tuple[int, int], seed: int, eps: float, zeros: bool
) -> None:
    n, k = sizes
    rng = np.random.default_rng(seed)
    C = torch.as_tensor(rng.uniform(0, 1, size=(n, k)))
    a = rng.uniform(0.05, 1, size=n)
    b = rng.uniform(0.05, 1, size=k)
    if zeros and k > 1:
        b[rng.integers(k)] = 0.0  # an absent drug
    a_t, b_t = torch.as_tensor(a / a.sum()), torch.as_tensor(b / b.sum())
    plans = [sinkhorn(C, a_t, b_t, eps=eps, n_iter=400, method=m) for m in METHODS]
    for P in plans:
        assert torch.isfinite(P).all() and (P >= 0).all()
        torch.testing.assert_close(P.sum(1), a_t, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(P.sum(0), b_t, rtol=0, atol=1e-9)
    torch.testing.assert_close(plans[0], plans[1], rtol=1e-10, atol=1e-15)


# --- cost and marginal helpers -----------------------------------------------------------


def test_squared_euclidean_cost_equals_scipy() -> None:
    g = torch.Generator().manual_seed(12)
    F = torch.randn(17, 5, generator=g, dtype=F64)
    G = torch.randn(4, 5, generator=g, dtype=F64)
    C = squared_euclidean_cost(F, torch.cat([G, F[:1]]))  # F[0] vs itself: 0, not negative
    want = cdist(F.numpy(), torch.cat([G, F[:1]]).numpy(), "sqeuclidean")
    np.testing.assert_allclose(C.numpy(), want, rtol=1e-12, atol=1e-12)
    assert (C >= 0).all()
    with pytest.raises(InputError, match="G: has 3 dimensions but F has 5"):
        squared_euclidean_cost(F, G[:, :3])


def test_marginals_from_labels_and_counts() -> None:
    m = marginals_from_labels(np.array(["x", "y", "x", "z"]), drugs=["z", "y", "x", "w"])
    assert m.drugs == ["z", "y", "x", "w"]
    assert m.labels.tolist() == [2, 1, 2, 0]
    assert m.b.tolist() == [0.25, 0.25, 0.5, 0.0]
    assert m.a.tolist() == [0.25] * 4 and m.a.dtype == F64
    a, b = marginals_from_counts(np.array([2, 0, 6]), dtype=torch.float32)
    assert a.shape == (8,) and a.dtype == b.dtype == torch.float32
    assert b.tolist() == [0.25, 0.0, 0.75]


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"labels": ["x", None]}, "labels", "cells without a drug"),
        ({"labels": ["x", "q"], "drugs": ["x"]}, "labels", "drugs not in `drugs`"),
        ({"labels": ["x"], "drugs": ["x", "x"]}, "drugs", "duplicate drugs"),
        ({"labels": []}, "labels", "non-empty"),
    ],
)
def test_marginals_from_labels_refuses(kwargs: dict, field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        marginals_from_labels(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([1, -1], "whole numbers >= 0"),
        ([1.5, 2], "whole numbers >= 0"),
        ([0, 0], "no cells"),
        ([[1, 2]], "1-D array"),
    ],
)
def test_marginals_from_counts_refuses(counts: list, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        marginals_from_counts(counts)
    assert err.value.field == "counts"


# --- input validation --------------------------------------------------------------------


def _bad(**change: object) -> dict:
    C, a, b, _ = problem(4, 3)
    args: dict[str, object] = {"cost": C, "a": a, "b": b, "eps": 0.1, "n_iter": 5}
    args.update(change)
    return args


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (
            _bad(
                cost=torch.ones(4, 3).index_put_(
                    (torch.tensor([1]), torch.tensor([2])), torch.tensor(math.nan)
                )
            ),
            "cost",
            r"1 NaN or infinite entries, at \(row, column\) \(\(1, 2\)\)",
        ),
        (_bad(cost=torch.full((4, 3), math.inf)), "cost", "12 NaN or infinite"),
        (_bad(cost=torch.ones(4, 3, dtype=torch.int64)), "cost", "float32 or float64"),
        (_bad(cost=torch.ones(4, 3, dtype=torch.float16)), "cost", "float32 or float64"),
        (_bad(cost=torch.ones(4)), "cost", "2-D"),
        (_bad(cost=torch.ones(0, 3)), "cost", "non-empty"),
        (_bad(cost=np.ones((4, 3))), "cost", "torch.Tensor"),
        (
            _bad(a=torch.tensor([0.5, 0.5, 0.25, -0.25])),
            "a",
            r"finite and >= 0; bad entries at \(3\)",
        ),
        (_bad(b=torch.tensor([0.5, math.nan, 0.5])), "b", "finite and >= 0"),
        (_bad(a=torch.zeros(4)), "a", "sums to 0.0"),
        (_bad(b=torch.tensor([0.5, 0.5, 0.5])), "b", r"sums to 1.5, not 1"),
        (_bad(b=torch.tensor([0.5, 0.5])), "b", "must be 3 numbers"),
        (_bad(a=torch.ones(3, 1) / 3), "a", "must be 4 numbers"),
        (_bad(a=["x"] * 4), "a", "must be 4 numbers"),
        (_bad(eps=0.0), "eps", "finite number > 0"),
        (_bad(eps=-1.0), "eps", "finite number > 0"),
        (_bad(eps=math.nan), "eps", "finite number > 0"),
        (_bad(eps=True), "eps", "finite number > 0"),
        (_bad(eps=torch.ones(2)), "eps", "finite number > 0"),
        (_bad(eps=1e-320), "eps", "too small for costs"),
        (_bad(n_iter=0), "n_iter", "integer >= 1"),
        (_bad(n_iter=2.5), "n_iter", "integer >= 1"),
        (_bad(n_iter=True), "n_iter", "integer >= 1"),
        (_bad(method="exact"), "method", "must be one of"),
    ],
)
def test_sinkhorn_refuses_bad_input(args: dict, field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        sinkhorn(**args)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 2], "must be 4 integers"),
        ([0, 1, 2, 3], r"outside the 3 cost columns \(3\)"),
        ([0.0, 1.0, 2.0, 0.0], "must be 4 integers"),
        ([0, -1, 1, 1], r"outside .* \(-1\)"),
    ],
)
def test_alignment_loss_refuses_bad_labels(labels: list, message: str) -> None:
    C, _, _, _ = problem(4, 3)
    with pytest.raises(InputError, match=message) as err:
        ot_alignment_loss(C, labels, eps=0.1)
    assert err.value.field == "labels"


def test_no_grad_gives_the_same_plan() -> None:
    C, a, b, _ = problem(10, 4)
    with torch.no_grad():
        P = sinkhorn(C.clone().requires_grad_(), a, b, eps=0.01, n_iter=60)
    torch.testing.assert_close(P, sinkhorn(C, a, b, eps=0.01, n_iter=60, method="logsumexp"))
