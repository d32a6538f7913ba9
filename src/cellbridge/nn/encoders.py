"""POPPY's trainable encoders: attention pooling + projection head (§2.2.1–2.2.2)."""

from __future__ import annotations

import torch
from torch import nn

from cellbridge.nn.heads import ProjectionHead
from cellbridge.nn.pooling import AttentionPool

__all__ = ["BulkTokenEncoder", "CellSetEncoder", "Standardize"]


class Standardize(nn.Module):
    """A fixed (non-trainable) affine map ``(h - shift) / scale`` per feature.

    Placed between the attention pooling and the projection head. It starts as the
    identity; :meth:`fit` sets it from pooled training inputs so that every feature has
    mean 0 and standard deviation 1 across samples. Pooled frozen embeddings share a large
    common component (every bulk profile is mostly the same genes), which otherwise maps
    all samples to nearly one direction after l2-normalisation and stalls the contrastive
    loss for many epochs. The buffers are saved with the model; they take no gradient.

    Parameters
    ----------
    dim
        Number of features standardised (the last axis of the input).
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit(self, pooled: torch.Tensor) -> Standardize:
        """Set shift/scale to the mean/std of ``(samples, dim)`` ``pooled`` (std 0 -> 1)."""
        std = pooled.std(dim=0, unbiased=False)
        self.shift.copy_(pooled.mean(dim=0))
        self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        return self

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Standardise ``(..., dim)`` features."""
        return (h - self.shift) / self.scale


class CellSetEncoder(nn.Module):
    r"""The cell-level encoder :math:`E_c` (POPPY §2.2.1).

    A patient's set of frozen cell embeddings :math:`x_c^{(i)} \in \mathbb{R}^{d_c}` is
    pooled with Eq. 2 into :math:`h_c`, then projected and l2-normalised into
    :math:`z_c \in \mathbb{R}^{d}`. The frozen embedding itself is computed upstream
    (:func:`cellbridge.encoders.cell_embeddings`); this module holds only trainable parts.

    Parameters
    ----------
    cell_dim
        ``d_c``, the size of a cell embedding.
    out_dim
        ``d``, the size of the shared embedding.
    hidden_dim, dropout
        Passed to :class:`~cellbridge.nn.heads.ProjectionHead`.
    """

    def __init__(
        self, cell_dim: int, out_dim: int, *, hidden_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.pool = AttentionPool(cell_dim)
        self.standardize = Standardize(cell_dim)
        self.head = ProjectionHead(cell_dim, out_dim, hidden_dim=hidden_dim, dropout=dropout)

    def forward(
        self, cells: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``(B, N_max, d_c)`` padded cell sets into ``(z, alpha)``.

        Returns ``z`` of shape ``(B, d)`` (unit rows) and the per-cell attention ``alpha``
        of shape ``(B, N_max)`` (0 on padding), kept for attribution.
        """
        h, alpha = self.pool(cells, mask)
        return self.head(self.standardize(h)), alpha


class BulkTokenEncoder(nn.Module):
    r"""The bulk encoder :math:`E_b` after its frozen token step (POPPY §2.2.2).

    A frozen gene-token encoder (:class:`cellbridge.encoders.GeneTokenEncoder`) turns a bulk
    profile into :math:`H \in \mathbb{R}^{m_b \times d_b}`; this module pools the gene
    tokens with Eq. 2 into :math:`h_b` and projects and l2-normalises it into
    :math:`z_b \in \mathbb{R}^{d}`.

    Parameters
    ----------
    token_dim
        ``d_b``, the size of a gene token.
    out_dim
        ``d``, the size of the shared embedding.
    hidden_dim, dropout
        Passed to :class:`~cellbridge.nn.heads.ProjectionHead`.
    """

    def __init__(
        self, token_dim: int, out_dim: int, *, hidden_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.pool = AttentionPool(token_dim)
        self.standardize = Standardize(token_dim)
        self.head = ProjectionHead(token_dim, out_dim, hidden_dim=hidden_dim, dropout=dropout)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``(B, genes, d_b)`` gene tokens into ``(z, alpha)`` (alpha over genes)."""
        h, alpha = self.pool(tokens, mask)
        return self.head(self.standardize(h)), alpha
