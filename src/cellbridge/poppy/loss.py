"""Multi-positive contrastive alignment of cell and bulk embeddings — POPPY Eq. 3–5 (§2.2.3).

Each of the ``N`` samples in a batch has a cell embedding (a row of ``Z_c``) and a bulk
embedding (a row of ``Z_b``). Instead of one positive per anchor (CLIP), the target of
every anchor is the row-normalised similarity ``S`` of the batch, so every sample with
non-zero similarity is a (weighted) positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cellbridge.errors import InputError

__all__ = ["ContrastiveLoss", "contrastive_loss_terms", "multi_positive_contrastive_loss"]

#: Default temperature ``tau_cl``. The paper does not report its value; 0.07 is the
#: CLIP / SimCLR convention for l2-normalised embeddings.
DEFAULT_TEMPERATURE = 0.07


@dataclass(frozen=True)
class ContrastiveLoss:
    """The POPPY objective and its two directions (Eq. 5).

    Attributes
    ----------
    total
        ``(cell_to_bulk + bulk_to_cell) / 2``, the scalar to minimise.
    cell_to_bulk
        ``L^{c->b}``: KL of the soft labels from the cell-anchored predictive distribution.
    bulk_to_cell
        ``L^{b->c}``: the same with bulk anchors.
    """

    total: Tensor
    cell_to_bulk: Tensor
    bulk_to_cell: Tensor


def contrastive_loss_terms(
    z_cells: Tensor,
    z_bulk: Tensor,
    S: Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    unit_norm_atol: float | None = 1e-3,
) -> ContrastiveLoss:
    r"""Multi-positive contrastive KL loss and its two directional terms (POPPY Eq. 3–5).

    With :math:`\tau` the temperature,

    .. math::

        L^\times = Z_c Z_b^\top / \tau, \quad L^c = Z_c Z_c^\top / \tau, \quad
        L^b = Z_b Z_b^\top / \tau \qquad \text{(Eq. 3)}

    where the diagonals of :math:`L^c` and :math:`L^b` are set to :math:`-\infty`,

    .. math::

        \tilde L^{c\to b} = [L^\times \mid L^c], \quad
        \tilde L^{b\to c} = [(L^\times)^\top \mid L^b] \qquad \text{(Eq. 4)}

    and, with :math:`\hat S_{ij} = S_{ij} / \sum_k S_{ik}` and
    :math:`\tilde S = [\hat S \mid 0_{N\times N}]`,

    .. math::

        \mathcal L^{c\to b} = \mathrm{KL}(\tilde S \,\|\, \mathrm{softmax}(\tilde L^{c\to b})),
        \quad
        \mathcal L^{b\to c} = \mathrm{KL}(\tilde S \,\|\, \mathrm{softmax}(\tilde L^{b\to c})),
        \quad
        \mathcal L = \tfrac12 (\mathcal L^{c\to b} + \mathcal L^{b\to c}) \qquad \text{(Eq. 5)}

    The softmax is taken over each row (length ``2N``). Reduction: each direction is the
    **mean over the N anchors of the row-wise KL**
    :math:`\frac1N \sum_i \sum_j \tilde S_{ij} (\log \tilde S_{ij} - \log P_{ij})` with
    :math:`0 \log 0 = 0` (what ``torch.nn.KLDivLoss(reduction="batchmean")`` computes).

    Parameters
    ----------
    z_cells
        ``(N, d)`` cell-level embeddings ``Z_c``, one row per sample, l2-normalised.
    z_bulk
        ``(N, d)`` bulk embeddings ``Z_b``, row ``i`` the same sample as ``z_cells[i]``,
        l2-normalised.
    S
        ``(N, N)`` non-negative similarity of the batch (e.g. the diffusion kernel of
        POPPY A.2 restricted to the batch). Every row needs a positive entry; rows are
        normalised here, so ``S`` need not be row-stochastic. No gradient flows into it
        in practice (it is data), but none is blocked either.
    temperature
        ``tau_cl`` > 0. The paper gives no value; the default 0.07 is the CLIP / SimCLR
        convention.
    unit_norm_atol
        The encoders of §2.2.1–2.2.2 end with an l2 normalisation, and ``temperature``
        only has its usual meaning for unit vectors, so rows whose norm differs from 1 by
        more than this are refused rather than silently renormalised. ``None`` skips the
        check (it costs a device sync).

    Returns
    -------
    ContrastiveLoss
        ``total``, ``cell_to_bulk`` and ``bulk_to_cell``, each a 0-d tensor.

    Raises
    ------
    InputError
        Shapes that do not match, a non-positive temperature, embeddings far from unit
        norm, or ``S`` with negative / non-finite entries or a row without a positive.

    Examples
    --------
    >>> import torch
    >>> z = torch.eye(3)
    >>> terms = contrastive_loss_terms(z, z, torch.eye(3), temperature=1.0)
    >>> round(float(terms.total), 4)  # -log(e / (e + 4)): e for the match, 1 for the rest
    0.9048
    """
    n = _check_inputs(z_cells, z_bulk, S, temperature, unit_norm_atol)
    dtype = torch.promote_types(z_cells.dtype, z_bulk.dtype)
    zc = z_cells.to(dtype)
    zb = z_bulk.to(dtype)
    s = S.to(device=zc.device, dtype=dtype)

    cross = zc @ zb.T / temperature
    # Self-similarity is always maximal for unit vectors; leaving it in would reward
    # nothing and dominate the softmax, hence the -inf of Eq. 3.
    self_mask = torch.eye(n, dtype=torch.bool, device=zc.device)
    intra_c = (zc @ zc.T / temperature).masked_fill(self_mask, -math.inf)
    intra_b = (zb @ zb.T / temperature).masked_fill(self_mask, -math.inf)

    target = s / s.sum(dim=1, keepdim=True)
    # sum_j S~ log S~ (the entropy part of the KL) only involves the first block; xlogy
    # makes 0 log 0 = 0 without a NaN in value or gradient.
    neg_entropy = torch.special.xlogy(target, target).sum(dim=1)

    def direction(logits_cross: Tensor, logits_intra: Tensor) -> Tensor:
        log_p = torch.log_softmax(torch.cat([logits_cross, logits_intra], dim=1), dim=1)
        # The target is zero on the whole intra-modal block, so only the cross-modal
        # columns enter the cross-entropy; the -inf entries (which sit in the intra
        # block) are never multiplied by 0, so no NaN appears in the value or gradient.
        cross_entropy = -(target * log_p[:, :n]).sum(dim=1)
        return (neg_entropy + cross_entropy).mean()

    c2b = direction(cross, intra_c)
    b2c = direction(cross.T, intra_b)
    return ContrastiveLoss(total=0.5 * (c2b + b2c), cell_to_bulk=c2b, bulk_to_cell=b2c)


def multi_positive_contrastive_loss(
    z_cells: Tensor,
    z_bulk: Tensor,
    S: Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    unit_norm_atol: float | None = 1e-3,
) -> Tensor:
    """The scalar POPPY objective ``L`` of Eq. 5 (POPPY Eq. 3–5).

    Same as ``contrastive_loss_terms(...).total``; see :func:`contrastive_loss_terms`
    for the equations, the reduction, the parameters and the errors. Use that function
    when the two directional terms are wanted (e.g. for logging).

    Parameters
    ----------
    z_cells, z_bulk
        ``(N, d)`` l2-normalised cell-level and bulk embeddings, row ``i`` of both the same
        sample.
    S
        ``(N, N)`` non-negative similarity of the batch, a positive entry in every row.
    temperature
        ``tau_cl`` > 0 (default 0.07, the CLIP convention).
    unit_norm_atol
        Refuse rows whose norm differs from 1 by more than this; ``None`` skips the check.
    """
    return contrastive_loss_terms(
        z_cells, z_bulk, S, temperature=temperature, unit_norm_atol=unit_norm_atol
    ).total


def _check_inputs(
    z_cells: Tensor,
    z_bulk: Tensor,
    S: Tensor,
    temperature: float,
    unit_norm_atol: float | None,
) -> int:
    """Refuse input that Eq. 3–5 cannot be applied to; return the batch size ``N``."""
    for name, z in (("z_cells", z_cells), ("z_bulk", z_bulk)):
        if not isinstance(z, Tensor) or z.ndim != 2 or not z.is_floating_point():
            raise InputError(
                name,
                "must be a 2-d floating-point tensor (N samples x d dimensions)",
                values=[getattr(z, "shape", type(z).__name__)],
                fix="stack the encoder outputs into a float tensor of shape (N, d)",
            )
    if z_cells.shape != z_bulk.shape:
        raise InputError(
            "z_bulk",
            "shape differs from z_cells; row i of both must be the same sample",
            values=[tuple(z_cells.shape), tuple(z_bulk.shape)],
            fix="pass cell and bulk embeddings of the same N samples, same dimension d",
        )
    n = z_cells.shape[0]
    if n == 0:
        raise InputError("z_cells", "the batch is empty", fix="pass at least one sample")
    if not isinstance(S, Tensor) or tuple(S.shape) != (n, n):
        raise InputError(
            "S",
            f"must be a ({n}, {n}) tensor matching the batch",
            values=[getattr(S, "shape", type(S).__name__)],
            fix="restrict the similarity matrix to the rows and columns of the batch",
        )
    if not (isinstance(temperature, int | float) and math.isfinite(temperature)) or (
        temperature <= 0
    ):
        raise InputError(
            "temperature",
            "must be a finite number > 0",
            values=[temperature],
            fix="use e.g. the default 0.07",
        )
    if unit_norm_atol is not None:
        for name, z in (("z_cells", z_cells), ("z_bulk", z_bulk)):
            norms = torch.linalg.vector_norm(z.detach(), dim=1)
            # `~(x <= atol)` also catches NaN norms.
            bad = torch.nonzero(~((norms - 1).abs() <= unit_norm_atol)).flatten()
            if bad.numel():
                raise InputError(
                    name,
                    f"rows are not l2-normalised (|norm - 1| > {unit_norm_atol}) at rows",
                    values=bad.tolist(),
                    fix="apply torch.nn.functional.normalize(z, dim=1) in the encoder, "
                    "or pass unit_norm_atol=None to skip this check",
                )
    s = S.detach()
    bad_entries = torch.nonzero(~(torch.isfinite(s) & (s >= 0)))
    if bad_entries.numel():
        raise InputError(
            "S",
            "entries must be finite and non-negative; bad entries at (row, col)",
            values=[tuple(ij) for ij in bad_entries.tolist()],
            fix="use a similarity kernel such as cellbridge.ot.diffusion_kernel",
        )
    empty_rows = torch.nonzero(s.sum(dim=1) <= 0).flatten()
    if empty_rows.numel():
        raise InputError(
            "S",
            "rows without any positive (all-zero similarity) cannot be normalised; rows",
            values=empty_rows.tolist(),
            fix="keep the diagonal of S (self-similarity 1) or drop these samples",
        )
    return n
