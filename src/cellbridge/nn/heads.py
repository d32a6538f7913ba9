"""The two-layer projection head with l2-normalisation of POPPY §2.2.1–2.2.2."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    r"""Two-layer FFN followed by l2-normalisation (POPPY §2.2.1, §2.2.2).

    .. math::

        z = \frac{g(h)}{\lVert g(h) \rVert_2}, \qquad
        g(h) = W_2\, \mathrm{Dropout}(\mathrm{GELU}(W_1 h + b_1)) + b_2.

    The paper says "a two-layer FFN" without naming the activation; GELU is chosen because
    it is the activation of the transformer foundation models whose embeddings feed this
    head (scGPT, TranscriptFormer) and of common contrastive projection heads; it is smooth
    and has no dead units.

    Parameters
    ----------
    in_dim
        Size of the pooled vector ``h``.
    out_dim
        Size ``d`` of the shared embedding ``z``.
    hidden_dim
        Width of the hidden layer; None uses ``in_dim``.
    dropout
        Dropout rate after the activation.
    """

    def __init__(
        self, in_dim: int, out_dim: int, *, hidden_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        hidden = in_dim if hidden_dim is None else hidden_dim
        if min(in_dim, out_dim, hidden) < 1:
            raise ValueError(
                f"in_dim, out_dim and hidden_dim must be positive, got {in_dim}, {out_dim}, "
                f"{hidden}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Map ``(..., in_dim)`` to unit-norm ``(..., out_dim)``."""
        return functional.normalize(self.net(h), dim=-1)
