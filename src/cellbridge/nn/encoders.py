"""POPPY's trainable encoders: attention pooling + projection head (§2.2.1–2.2.2)."""

from __future__ import annotations

import torch
from torch import nn

from cellbridge.nn.heads import ProjectionHead
from cellbridge.nn.pooling import AttentionPool

__all__ = ["BulkTokenEncoder", "CellSetEncoder"]


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
        self, cell_dim: int, out_dim: int, hidden_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.pool = AttentionPool(cell_dim)
        self.head = ProjectionHead(cell_dim, out_dim, hidden_dim=hidden_dim, dropout=dropout)

    def forward(
        self, cells: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``(B, N_max, d_c)`` padded cell sets into ``(z, alpha)``.

        Returns ``z`` of shape ``(B, d)`` (unit rows) and the per-cell attention ``alpha``
        of shape ``(B, N_max)`` (0 on padding), kept for attribution.
        """
        h, alpha = self.pool(cells, mask)
        return self.head(h), alpha


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
        self, token_dim: int, out_dim: int, hidden_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.pool = AttentionPool(token_dim)
        self.head = ProjectionHead(token_dim, out_dim, hidden_dim=hidden_dim, dropout=dropout)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``(B, genes, d_b)`` gene tokens into ``(z, alpha)`` (alpha over genes)."""
        h, alpha = self.pool(tokens, mask)
        return self.head(h), alpha
