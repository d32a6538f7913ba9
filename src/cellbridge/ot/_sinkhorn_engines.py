r"""The two engines behind :func:`cellbridge.ot.sinkhorn` (BiRD Eq. 2, log domain).

Both run the same iterations on the scaled potentials :math:`u = f/\epsilon`,
:math:`v = g/\epsilon` with :math:`M = -C/\epsilon`, starting from :math:`u = 0`:

.. math::

    v_k \leftarrow \log b_k - \operatorname{LSE}_i (M_{ik} + u_i), \qquad
    u_i \leftarrow \log a_i - \operatorname{LSE}_k (M_{ik} + v_k),

the order of POT's ``ot.bregman.sinkhorn_log``; they differ only in how each log-sum-exp
is evaluated and differentiated.

- ``"logsumexp"``: ``torch.logsumexp`` on the ``N x K`` matrix at every half-step; autograd
  records every iteration (the reference; supports double backward).
- ``"kernel"``: the log-sum-exp is factored through a *stabilised kernel*
  (Schmitzer 2019, "absorption"): with a reference vector :math:`\bar u` and the column
  maxima :math:`s_k = \max_i (M_{ik} + \bar u_i)`,

  .. math::

      \operatorname{LSE}_i (M_{ik} + u_i) = s_k + m + \log \sum_i \tilde K_{ik} p_i, \quad
      \tilde K_{ik} = e^{M_{ik} + \bar u_i - s_k}, \quad
      p_i = e^{u_i - \bar u_i - m}, \quad m = \max_i (u_i - \bar u_i),

  an identity, so each half-step costs one matrix-vector product instead of several
  elementwise passes with an ``exp``. Every factor is at most 1, so nothing overflows;
  factors below :math:`\sqrt{\text{tiny}}` are set to 0, so no product is subnormal
  (:func:`_flush`). When a sum falls below a threshold at which those lost terms could
  matter (:func:`_safe_sum`), the kernel is rebuilt around the current potentials (its
  column maxima are then exactly 1) before the half-step is taken. The backward pass is the
  reverse-mode derivative of *these same unrolled iterations*, written out by hand: the
  softmax of each half-step is :math:`\tilde K_{ik} p_i / c_k`, so the potentials'
  adjoints need one matrix-vector product per half-step and the cost's adjoint is
  :math:`-\sum_j \tilde K^{(j)} \odot (P_j^\top W_j)`, one matrix product per kernel built.
  Memory is two vectors per half-step plus the kernels, instead of the ``N x K`` matrices
  autograd keeps per half-step.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import Any

import torch
from torch.autograd.function import once_differentiable
from torch.nn.functional import threshold

__all__ = ["kernel_potentials", "logsumexp_potentials"]


def logsumexp_potentials(
    M: torch.Tensor, loga: torch.Tensor, logb: torch.Tensor, n_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled potentials ``(u, v)`` after ``n_iter`` iterations, recorded by autograd."""
    u = M.new_zeros(M.shape[0])
    v = M.new_zeros(M.shape[1])
    for _ in range(n_iter):
        v = logb - torch.logsumexp(M + u[:, None], dim=0)
        u = loga - torch.logsumexp(M + v[None, :], dim=1)
    return u, v


def _flush(dtype: torch.dtype) -> float:
    """Kernel entries and weights below this are set to 0: then no product is subnormal.

    Subnormal numbers are exact enough but slow (a microcode assist per operation on x86):
    with every factor in ``[sqrt(tiny), 1]`` each product is at least ``tiny``.
    """
    return math.sqrt(torch.finfo(dtype).tiny)


def _flushed_exp_(x: torch.Tensor) -> torch.Tensor:
    """``exp`` in place, values below :func:`_flush` set to 0; never computes a subnormal.

    Arguments are clamped first to just below ``log(_flush)``: an ``exp`` whose result is
    subnormal is itself several times slower.
    """
    flush = _flush(x.dtype)
    x.clamp_(min=math.log(flush) - 1.0).exp_()
    return threshold(x, flush, 0.0, inplace=True)


def _safe_sum(dtype: torch.dtype, n: int) -> float:
    """Smallest accepted kernel sum: the terms flushed to 0 stay below 1% of an ulp of it.

    Each lost term is below :func:`_flush` (its other factor is at most 1) and at most
    ``n`` are lost per sum.
    """
    return 100.0 * n * _flush(dtype) / torch.finfo(dtype).eps


class _Kernel:
    """:math:`\\tilde K = \\exp(M + \\bar r - s)` along one axis, reference and shift kept.

    ``axis=0``: the log-sum-exp runs over rows ``i`` (the ``v`` update), ``ref`` is a
    row vector :math:`\\bar u` and the shift the column maxima; ``axis=1``: over columns
    ``k`` (the ``u`` update), ``ref`` is :math:`\\bar v` and the shift the row maxima.
    """

    def __init__(self, M: torch.Tensor, ref: torch.Tensor, axis: int) -> None:
        self.axis = axis
        self.ref = ref
        x = M + (ref[:, None] if axis == 0 else ref[None, :])
        self.shift = x.amax(dim=axis)
        self.mat = _flushed_exp_(x.sub_(self.shift[None, :] if axis == 0 else self.shift[:, None]))

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`p = e^{x - \\bar r - m}` (flushed below :func:`_flush`) and :math:`m`."""
        z = x - self.ref
        m = z.max()
        return _flushed_exp_(z.sub_(m)), m

    def sums(self, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`\\sum_i \\tilde K_{ik} w_i` (``axis=0``) or :math:`\\sum_k \\tilde K_{ik} w_k`."""
        mat = self.mat.T if self.axis == 0 else self.mat
        return torch.mv(mat, w) if out is None else torch.mv(mat, w, out=out)


class _KernelSinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        M: torch.Tensor,
        loga: torch.Tensor,
        logb: torch.Tensor,
        n_iter: int,
        store: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        N, K = M.shape
        floor = _safe_sum(M.dtype, max(N, K))
        u = M.new_zeros(N)
        v = M.new_zeros(K)
        kernels: list[list[_Kernel]] = [[], []]  # built kernels, per axis
        used: list[list[int]] = [[], []]  # kernel index of every half-step, per axis
        # Weights and sums of every half-step, kept for the reverse pass.
        W = [M.new_empty(n_iter if store else 1, n) for n in (N, K)]
        S = [M.new_empty(n_iter if store else 1, n) for n in (K, N)]

        def half_step(
            x: torch.Tensor, axis: int, log_marginal: torch.Tensor, t: int
        ) -> torch.Tensor:
            ks = kernels[axis]
            for attempt in range(2):
                if attempt or not ks:
                    if not store:
                        ks.clear()  # only the reverse pass needs the older kernels
                    ks.append(_Kernel(M, x, axis))
                kern = ks[-1]
                w, m = kern.weights(x)
                s = kern.sums(w, out=S[axis][t if store else 0])
                if bool(s.min() >= floor):
                    break
            if store:
                W[axis][t] = w
                used[axis].append(len(ks) - 1)
            return log_marginal - (torch.log(s) + kern.shift + m)

        for t in range(n_iter):
            v = half_step(u, 0, logb, t)
            u = half_step(v, 1, loga, t)
        if store:  # no potentials kept: an output held by ctx would be a reference cycle
            ctx.mats = [[k.mat for k in ks] for ks in kernels]
            ctx.used, ctx.W, ctx.S, ctx.n_iter = used, W, S, n_iter
        return u, v

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, du_out: torch.Tensor | None, dv_out: torch.Tensor | None) -> Any:
        mats, used, W, S = ctx.mats, ctx.used, ctx.W, ctx.S
        (P, Q), (C, R) = W, S  # v-steps: weights p (N), sums c (K); u-steps: q (K), r (N)
        n_iter = ctx.n_iter
        N, K = P.shape[1], Q.shape[1]
        like = P
        du = du_out if du_out is not None else like.new_zeros(N)
        dv = dv_out if dv_out is not None else like.new_zeros(K)
        need_a, need_b = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        dloga = like.new_zeros(N) if need_a else None
        dlogb = like.new_zeros(K) if need_b else None
        Gu = like.new_empty(n_iter, N)  # du / r of every u-step
        Gv = like.new_empty(n_iter, K)  # dv / c of every v-step
        for t in range(n_iter - 1, -1, -1):
            # u_{t+1} = log a - LSE_k(M + v_{t+1}); softmax A = K~ q / r (rows).
            if dloga is not None:
                dloga += du
            torch.div(du, R[t], out=Gu[t])
            dv = dv - Q[t] * torch.mv(mats[1][used[1][t]].T, Gu[t])
            # v_{t+1} = log b - LSE_i(M + u_t); softmax B = K~ p / c (columns).
            if dlogb is not None:
                dlogb += dv
            torch.div(dv, C[t], out=Gv[t])
            du = -(P[t] * torch.mv(mats[0][used[0][t]], Gv[t]))
            dv = torch.zeros_like(dv)  # v_t feeds nothing but u_t
        dM = None
        if ctx.needs_input_grad[0]:
            dM = like.new_zeros(N, K)
            for axis, (left, right) in enumerate(((P, Gv), (Gu, Q))):
                # Kernel j serves a contiguous run of half-steps (used[axis] never decreases).
                for j, mat in enumerate(mats[axis]):
                    lo, hi = bisect_left(used[axis], j), bisect_right(used[axis], j)
                    if hi > lo:
                        dM.addcmul_(mat, left[lo:hi].T @ right[lo:hi], value=-1.0)
        return dM, dloga, dlogb, None, None


def kernel_potentials(
    M: torch.Tensor, loga: torch.Tensor, logb: torch.Tensor, n_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled potentials ``(u, v)`` after ``n_iter`` iterations, stabilised-kernel engine."""
    store = torch.is_grad_enabled() and (
        M.requires_grad or loga.requires_grad or logb.requires_grad
    )
    u, v = _KernelSinkhorn.apply(M, loga, logb, n_iter, store)
    return u, v
