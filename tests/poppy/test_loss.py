"""Multi-positive contrastive loss (POPPY Eq. 3–5): oracle, closed form, gradients, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr

from cellbridge.errors import InputError
from cellbridge.poppy import (
    ContrastiveLoss,
    contrastive_loss_terms,
    multi_positive_contrastive_loss,
)


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    z = rng.normal(size=(n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _similarity(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random non-negative S with zeros, diagonal 1 (as the diffusion kernel has)."""
    s = rng.random((n, n)) * (rng.random((n, n)) < 0.5)
    s = (s + s.T) / 2
    np.fill_diagonal(s, 1.0)
    return s


def _numpy_eq3_5(zc: np.ndarray, zb: np.ndarray, S: np.ndarray, tau: float) -> tuple[float, float]:
    """Direct transcription of POPPY Eq. 3–5 in float64, independent of the torch code."""
    n = zc.shape[0]
    Lx = zc @ zb.T / tau
    Lc = zc @ zc.T / tau
    Lb = zb @ zb.T / tau
    Lc[np.diag_indices(n)] = -np.inf
    Lb[np.diag_indices(n)] = -np.inf
    L_c2b = np.hstack([Lx, Lc])
    L_b2c = np.hstack([Lx.T, Lb])
    S_hat = S / S.sum(axis=1, keepdims=True)
    S_tilde = np.hstack([S_hat, np.zeros((n, n))])

    def kl(logits: np.ndarray) -> float:
        P = np.exp(log_softmax(logits, axis=1))
        # rel_entr(x, y) = x log(x / y) with 0 log 0 = 0; summed per row, mean over rows.
        return float(rel_entr(S_tilde, P).sum(axis=1).mean())

    return kl(L_c2b), kl(L_b2c)


def test_matches_numpy_transcription_of_eq3_5() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 10))
        d = int(rng.integers(2, 12))
        tau = float(rng.uniform(0.05, 2.0))
        zc, zb, S = _unit_rows(rng, n, d), _unit_rows(rng, n, d), _similarity(rng, n)
        terms = contrastive_loss_terms(
            torch.from_numpy(zc), torch.from_numpy(zb), torch.from_numpy(S), temperature=tau
        )
        c2b, b2c = _numpy_eq3_5(zc, zb, S, tau)
        assert isinstance(terms, ContrastiveLoss)
        np.testing.assert_allclose(float(terms.cell_to_bulk), c2b, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(float(terms.bulk_to_cell), b2c, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(float(terms.total), (c2b + b2c) / 2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("tau", [1.0, 0.5, 0.07])
def test_closed_form_orthonormal_identity(n: int, tau: float) -> None:
    # Orthonormal embeddings, Z_c = Z_b, S = I: each row's logits are 1/tau once (the
    # match), 0 for the N-1 cross and N-1 intra non-matches, -inf for itself, so the
    # KL is -log(e^{1/tau} / (e^{1/tau} + 2(N - 1))) in both directions.
    z = torch.eye(n, dtype=torch.float64)
    terms = contrastive_loss_terms(z, z, torch.eye(n, dtype=torch.float64), temperature=tau)
    expected = -(1 / tau) + math.log(math.exp(1 / tau) + 2 * (n - 1))
    for value in (terms.total, terms.cell_to_bulk, terms.bulk_to_cell):
        assert float(value) == pytest.approx(expected, rel=1e-12)


def test_closed_form_uniform_targets() -> None:
    # Orthonormal Z_c = Z_b, S = all ones, tau = 1: targets uniform 1/N on the cross
    # block; predicted P = e/Z on the match, 1/Z elsewhere, Z = e + 2(N - 1).
    n = 4
    z = torch.eye(n, dtype=torch.float64)
    loss = multi_positive_contrastive_loss(
        z, z, torch.ones(n, n, dtype=torch.float64), temperature=1.0
    )
    Z = math.e + 2 * (n - 1)
    expected = sum((1 / n) * math.log((1 / n) / p) for p in [math.e / Z] + [1 / Z] * (n - 1))
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_gradcheck_float64() -> None:
    rng = np.random.default_rng(1)
    n, d = 5, 4
    zc = torch.from_numpy(_unit_rows(rng, n, d)).requires_grad_(True)
    zb = torch.from_numpy(_unit_rows(rng, n, d)).requires_grad_(True)
    S = torch.from_numpy(_similarity(rng, n))
    assert (S == 0).any()  # zero targets must not poison the gradient

    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return multi_positive_contrastive_loss(a, b, S, temperature=0.3)

    assert torch.autograd.gradcheck(f, (zc, zb), eps=1e-6, atol=1e-7)
    f(zc, zb).backward()
    assert zc.grad is not None and zb.grad is not None
    assert torch.isfinite(zc.grad).all() and torch.isfinite(zb.grad).all()


def test_invariant_to_consistent_permutation_and_row_scaling() -> None:
    rng = np.random.default_rng(2)
    n, d = 7, 5
    zc, zb, S = _unit_rows(rng, n, d), _unit_rows(rng, n, d), _similarity(rng, n)
    base = contrastive_loss_terms(
        torch.from_numpy(zc), torch.from_numpy(zb), torch.from_numpy(S), temperature=0.2
    )
    perm = rng.permutation(n)
    permuted = contrastive_loss_terms(
        torch.from_numpy(zc[perm]),
        torch.from_numpy(zb[perm]),
        torch.from_numpy(S[np.ix_(perm, perm)]),
        temperature=0.2,
    )
    # Row normalisation makes S's row scale irrelevant.
    scaled = contrastive_loss_terms(
        torch.from_numpy(zc),
        torch.from_numpy(zb),
        torch.from_numpy(S * rng.uniform(0.1, 10, size=(n, 1))),
        temperature=0.2,
    )
    for other in (permuted, scaled):
        assert float(other.total) == pytest.approx(float(base.total), rel=1e-12)
        assert float(other.cell_to_bulk) == pytest.approx(float(base.cell_to_bulk), rel=1e-12)
    # Swapping the modalities swaps the directions (L^x -> (L^x)^T).
    swapped = contrastive_loss_terms(
        torch.from_numpy(zb), torch.from_numpy(zc), torch.from_numpy(S), temperature=0.2
    )
    assert float(swapped.cell_to_bulk) == pytest.approx(float(base.bulk_to_cell), rel=1e-12)
    assert float(swapped.total) == pytest.approx(float(base.total), rel=1e-12)


def test_float32_agrees_with_float64() -> None:
    rng = np.random.default_rng(3)
    zc, zb, S = _unit_rows(rng, 6, 8), _unit_rows(rng, 6, 8), _similarity(rng, 6)
    args64 = [torch.from_numpy(a) for a in (zc, zb, S)]
    args32 = [a.float() for a in args64]
    l64 = multi_positive_contrastive_loss(*args64)
    l32 = multi_positive_contrastive_loss(*args32)
    assert l32.dtype == torch.float32
    assert float(l32) == pytest.approx(float(l64), rel=1e-4)


def test_training_learns_known_pairing() -> None:
    # Known signal: sample i's strongest positive is itself (diagonal 1), with weaker
    # random off-diagonal positives. Free embeddings trained on the loss must make every
    # bulk embedding's nearest cell embedding its own sample.
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    n, d = 12, 16
    off = rng.random((n, n)) * 0.3 * (rng.random((n, n)) < 0.3)
    S = torch.from_numpy((off + off.T) / 2 + np.eye(n)).float()
    raw_c = torch.nn.Parameter(torch.randn(n, d))
    raw_b = torch.nn.Parameter(torch.randn(n, d))
    opt = torch.optim.Adam([raw_c, raw_b], lr=0.05)

    def loss_now() -> torch.Tensor:
        zc = torch.nn.functional.normalize(raw_c, dim=1)
        zb = torch.nn.functional.normalize(raw_b, dim=1)
        return multi_positive_contrastive_loss(zc, zb, S)

    with torch.no_grad():
        start = float(loss_now())
    for _ in range(200):
        opt.zero_grad()
        loss = loss_now()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = float(loss_now())
    assert end < 0.5 * start
    with torch.no_grad():
        zc = torch.nn.functional.normalize(raw_c, dim=1)
        zb = torch.nn.functional.normalize(raw_b, dim=1)
        sims = zb @ zc.T
    assert torch.equal(sims.argmax(dim=1), torch.arange(n))
    assert torch.equal(sims.argmax(dim=0), torch.arange(n))


def _ok() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = torch.eye(3, dtype=torch.float64)
    return z, z.clone(), torch.eye(3, dtype=torch.float64)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda a: (a[0][:2], a[1], a[2]), "z_bulk"),
        (lambda a: (a[0], a[1], a[2][:2]), "S"),
        (lambda a: (a[0][0], a[1][0], a[2]), "z_cells"),
        (lambda a: (a[0], a[1], -a[2]), "S"),
        (lambda a: (a[0], a[1], a[2].fill_diagonal_(float("nan"))), "S"),
        (lambda a: (a[0], a[1], a[2] * torch.tensor([[1.0], [0.0], [1.0]])), "S"),
        (lambda a: (2 * a[0], a[1], a[2]), "z_cells"),
        (lambda a: (a[0], a[1] * float("nan"), a[2]), "z_bulk"),
    ],
)
def test_bad_input_raises(change: object, field: str) -> None:
    args = change(_ok())  # type: ignore[operator]
    with pytest.raises(InputError) as err:
        multi_positive_contrastive_loss(*args)
    assert err.value.field == field


@pytest.mark.parametrize("tau", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_temperature_raises(tau: float) -> None:
    with pytest.raises(InputError, match="temperature"):
        multi_positive_contrastive_loss(*_ok(), temperature=tau)


def test_unit_norm_check_can_be_skipped() -> None:
    z, zb, S = _ok()
    loss = multi_positive_contrastive_loss(2 * z, zb, S, temperature=1.0, unit_norm_atol=None)
    assert torch.isfinite(loss)
