"""AttentionPool against a NumPy evaluation of POPPY Eq. 2, and its set invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellbridge.nn import AttentionPool, pad_sets


def _pool(dim: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> AttentionPool:
    torch.manual_seed(seed)
    return AttentionPool(dim).to(dtype)


def _numpy_eq2(pool: AttentionPool, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = pool.score.weight.detach().numpy().ravel()
    b = float(pool.score.bias.detach().numpy()[0])
    logits = x @ w + b
    alpha = np.exp(logits - logits.max())
    alpha /= alpha.sum()
    return alpha @ x, alpha


def test_weights_equal_numpy_softmax_of_linear_scores() -> None:
    rng = np.random.default_rng(0)
    sets = [rng.normal(size=(n, 5)) for n in (4, 1, 7)]
    pool = _pool(5)
    x, mask = pad_sets([torch.from_numpy(s) for s in sets])
    h, alpha = pool(x, mask)
    for i, s in enumerate(sets):
        h_ref, alpha_ref = _numpy_eq2(pool, s)
        np.testing.assert_allclose(alpha[i, : len(s)].detach().numpy(), alpha_ref, rtol=1e-12)
        np.testing.assert_allclose(h[i].detach().numpy(), h_ref, rtol=1e-12, atol=1e-14)
        assert torch.all(alpha[i, len(s) :] == 0)
    np.testing.assert_allclose(alpha.sum(dim=1).detach().numpy(), 1.0, rtol=1e-12)


def test_padding_changes_nothing_even_if_it_holds_garbage() -> None:
    rng = np.random.default_rng(1)
    s = torch.from_numpy(rng.normal(size=(3, 4)))
    pool = _pool(4)
    h0, a0 = pool(s[None], torch.ones(1, 3, dtype=torch.bool))
    garbage = torch.tensor([[1e6] * 4, [float("nan")] * 4, [float("inf")] * 4])
    x = torch.cat([s, garbage])[None]
    mask = torch.tensor([[True] * 3 + [False] * 3])
    h1, a1 = pool(x, mask)
    torch.testing.assert_close(h1, h0, rtol=0, atol=0)
    torch.testing.assert_close(a1[:, :3], a0, rtol=0, atol=0)
    assert torch.all(a1[:, 3:] == 0)
    (h1.sum() + a1[:, 0].sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in pool.parameters() if p.grad is not None)


def test_permuting_the_set_permutes_alpha_and_keeps_h() -> None:
    rng = np.random.default_rng(2)
    s = torch.from_numpy(rng.normal(size=(6, 3)))
    perm = torch.from_numpy(rng.permutation(6))
    pool = _pool(3)
    h, a = pool(s[None])
    hp, ap = pool(s[perm][None])
    torch.testing.assert_close(hp, h, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ap[0], a[0, perm], rtol=1e-12, atol=1e-14)


def test_a_set_of_one_returns_its_element() -> None:
    s = torch.tensor([[0.5, -2.0, 3.0]], dtype=torch.float64)
    other = torch.zeros(4, 3, dtype=torch.float64)
    x, mask = pad_sets([s, other])
    h, alpha = _pool(3)(x, mask)
    torch.testing.assert_close(h[0], s[0], rtol=0, atol=0)
    assert alpha[0, 0].item() == 1.0
    assert torch.all(alpha[0, 1:] == 0)


def test_gradcheck_float64() -> None:
    rng = np.random.default_rng(3)
    x, mask = pad_sets([torch.from_numpy(rng.normal(size=(n, 3))) for n in (2, 4)])
    x.requires_grad_(True)
    pool = _pool(3)
    assert torch.autograd.gradcheck(lambda t: pool(t, mask), (x,))
    # Padded rows get exactly zero gradient: they do not take part in Eq. 2.
    h, alpha = pool(x, mask)
    (h.sum() + (alpha * torch.arange(4.0, dtype=torch.float64)).sum()).backward()
    assert x.grad is not None
    assert torch.all(x.grad[~mask] == 0)


def test_pad_sets_shapes_and_mask() -> None:
    x, mask = pad_sets([torch.ones(2, 3), torch.ones(5, 3)], pad_value=-1.0)
    assert x.shape == (2, 5, 3)
    assert mask.tolist() == [[True, True, False, False, False], [True] * 5]
    assert torch.all(x[0, 2:] == -1.0)


def test_bad_input_is_refused() -> None:
    pool = _pool(3)
    with pytest.raises(AssertionError, match="at least one real element"):
        pool(
            torch.zeros(2, 2, 3, dtype=torch.float64),
            torch.tensor([[True, False]] * 1 + [[False, False]]),
        )
    with pytest.raises(AssertionError, match="shape"):
        pool(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(AssertionError, match="mask"):
        pool(torch.zeros(1, 2, 3, dtype=torch.float64), torch.ones(1, 2))
    with pytest.raises(ValueError, match="no elements"):
        pad_sets([torch.ones(2, 3), torch.ones(0, 3)])
    with pytest.raises(ValueError, match="one dim"):
        pad_sets([torch.ones(2, 3), torch.ones(2, 4)])
    with pytest.raises(ValueError, match="empty"):
        pad_sets([])
    with pytest.raises(ValueError, match="positive"):
        AttentionPool(0)
