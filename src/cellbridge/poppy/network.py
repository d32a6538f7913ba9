"""The trainable part of POPPY stage 1 as one torch module (no I/O, no training loop)."""

from __future__ import annotations

import torch
from torch import nn

from cellbridge.nn import BulkTokenEncoder, CellSetEncoder
from cellbridge.poppy.loss import ContrastiveLoss, contrastive_loss_terms

__all__ = ["POPPYNet"]


class POPPYNet(nn.Module):
    r"""Cell encoder :math:`E_c` and bulk encoder :math:`E_b` after their frozen parts.

    Parameters
    ----------
    cell_dim
        :math:`d_c`, size of the frozen cell embedding.
    token_dim
        :math:`d_b`, size of a frozen gene token (or of a precomputed bulk embedding,
        seen as a single token).
    embedding_dim
        :math:`d`, the shared space.
    hidden_dim, dropout
        Of both two-layer FFNs.
    temperature
        :math:`\tau_{cl}` of Eq. 3.
    """

    def __init__(
        self,
        cell_dim: int,
        token_dim: int,
        embedding_dim: int,
        *,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.cell_encoder = CellSetEncoder(
            cell_dim, embedding_dim, hidden_dim=hidden_dim, dropout=dropout
        )
        self.bulk_encoder = BulkTokenEncoder(
            token_dim, embedding_dim, hidden_dim=hidden_dim, dropout=dropout
        )
        self.temperature = temperature

    def forward(
        self, cells: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_c, z_b)`` of one batch: unit rows, row ``i`` of both is item ``i``."""
        z_c, _ = self.cell_encoder(cells, mask)
        z_b, _ = self.bulk_encoder(tokens)
        return z_c, z_b

    def loss(
        self, cells: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor, S: torch.Tensor
    ) -> ContrastiveLoss:
        """Eq. 5 on one batch."""
        z_c, z_b = self(cells, mask, tokens)
        return contrastive_loss_terms(z_c, z_b, S, temperature=self.temperature)
