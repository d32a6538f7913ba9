"""PhenotypeHead (POPPY §2.2.5): the chunked streaming softmax equals the direct form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.errors import InputError
from cellbridge.nn import PhenotypeHead


def _direct(head: PhenotypeHead, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The equations of §2.2.5 written out in NumPy (float64): the oracle."""
    WQ = head.query.weight.detach().double().numpy()
    WK = head.key.weight.detach().double().numpy()
    WV = head.value.weight.detach().double().numpy()
    b = head.bias.detach().double().numpy()
    zn, xn = z.double().numpy(), x.double().numpy()
    q = zn @ WQ.T
    k = xn @ WK.T
    s = q @ k.T / head.temperature
    alpha = np.exp(s - s.max(axis=1, keepdims=True))
    alpha /= alpha.sum(axis=1, keepdims=True)
    return torch.from_numpy(alpha @ (xn @ WV.T) + b)


def _setup(seed: int, B: int = 5, N: int = 37, scale: float = 1.0) -> tuple:
    torch.manual_seed(seed)
    head = PhenotypeHead(8, 6, query_dim=4, n_outputs=2).double()
    with torch.no_grad():
        head.bias.copy_(torch.randn(2))
    z = torch.randn(B, 8, dtype=torch.float64) * scale
    x = torch.randn(N, 6, dtype=torch.float64) * scale
    return head, z, x


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    chunk=st.integers(1, 50),
    scale=st.sampled_from([0.1, 1.0, 30.0]),  # 30: logits in the hundreds
)
def test_streaming_softmax_equals_the_direct_form(seed: int, chunk: int, scale: float) -> None:
    head, z, x = _setup(seed, scale=scale)
    expected = _direct(head, z, x)
    with torch.no_grad():
        got = head(z, x, chunk_size=chunk)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    alpha = head.attention(z, x, chunk_size=chunk)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(z.shape[0], dtype=torch.float64))
    with torch.no_grad():
        recombined = alpha @ head.cell_values(x) + head.bias
    torch.testing.assert_close(recombined, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk", [1, 7, 37, 1000])
def test_gradients_through_chunks_equal_the_direct_gradients(chunk: int) -> None:
    head, z, x = _setup(3)
    z.requires_grad_(True)
    target = torch.randn(z.shape[0], 2, dtype=torch.float64)

    def direct_forward() -> torch.Tensor:
        s = head.scores(z, x)
        return torch.softmax(s, dim=1) @ head.value(x) + head.bias

    for forward in (direct_forward, lambda: head(z, x, chunk_size=chunk)):
        head.zero_grad()
        z.grad = None
        ((forward() - target) ** 2).sum().backward()
        grads = [p.grad.clone() for p in head.parameters()] + [z.grad.clone()]
        if forward is direct_forward:
            expected = grads
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9)


def test_finite_difference_gradient_of_the_streaming_form() -> None:
    head, z, x = _setup(5, B=2, N=9)

    def f(params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            head.query.weight.copy_(params.view_as(head.query.weight))
        return head(z, x, chunk_size=4).sum()

    w = head.query.weight.detach().clone().requires_grad_(True)
    head.query.weight = torch.nn.Parameter(w)
    head(z, x, chunk_size=4).sum().backward()
    analytic = head.query.weight.grad.clone().flatten()
    base = w.detach().clone().flatten()
    eps = 1e-6
    numeric = torch.zeros_like(base)
    for i in range(base.numel()):
        up, down = base.clone(), base.clone()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (f(up) - f(down)) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_default_temperature_is_sqrt_query_dim_and_bad_inputs() -> None:
    assert PhenotypeHead(3, 3, query_dim=16).temperature == pytest.approx(4.0)
    head = PhenotypeHead(3, 3)
    with pytest.raises(InputError, match="chunk_size"):
        head(torch.zeros(1, 3), torch.zeros(4, 3), chunk_size=0)
    with pytest.raises(InputError, match="reference"):
        head(torch.zeros(1, 3), torch.zeros(0, 3))


def test_training_memory_is_bounded_by_the_chunk_not_the_atlas() -> None:
    """What autograd keeps for backward: ~B x chunk per step, never B x N."""
    torch.manual_seed(0)
    head = PhenotypeHead(16, 16, query_dim=8)
    z = torch.randn(4, 16, requires_grad=True)
    x = torch.randn(20_000, 16)

    def saved_bytes(chunk: int) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            if t.data_ptr() != x.data_ptr() and t.untyped_storage().data_ptr() != x.data_ptr():
                total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            head(z, x, chunk_size=chunk).sum().backward()
        return total

    full = 4 * 20_000 * 4  # one (B, N) float32 matrix
    assert saved_bytes(500) < full / 4

    # the direct form keeps several (B, N) matrices
    def direct_saved() -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            (torch.softmax(head.scores(z, x), dim=1) @ head.value(x)).sum().backward()
        return total

    assert direct_saved() > full


@pytest.mark.parametrize("chunk", [1, 5, 37, 100])
def test_pooled_reference_is_the_attention_weighted_mean_of_cells(chunk: int) -> None:
    head, z, x = _setup(7)
    with torch.no_grad():
        y, pooled = head.predict_and_pool(z, x, chunk_size=chunk)
        alpha = torch.softmax(head.scores(z, x), dim=1)
        assert pooled is not None
        torch.testing.assert_close(pooled, alpha @ x, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(y, head(z, x, chunk_size=chunk), rtol=1e-12, atol=1e-12)
        assert head.predict_and_pool(z, x, chunk_size=chunk, pool=False)[1] is None
