"""Attention-MIL pooling of a set (Ilse et al., 2018), as POPPY Eq. 2 uses it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["AttentionPool", "pad_sets"]


class AttentionPool(nn.Module):
    r"""Pool a padded batch of sets into one vector per set (POPPY Eq. 2, §2.2.1–2.2.2).

    For the real elements :math:`x^{(1)}, \dots, x^{(N)}` of one set

    .. math::

        f(x) = w^\top x + b, \qquad
        \alpha_i = \frac{\exp f(x^{(i)})}{\sum_{j=1}^{N} \exp f(x^{(j)})}, \qquad
        h = \sum_{i=1}^{N} \alpha_i x^{(i)}.

    The scoring function is a single ``nn.Linear(dim, 1)``, exactly as in the paper (no
    gated or hidden-layer variant of Ilse et al.).

    Parameters
    ----------
    dim
        Size of each element vector (``d_c`` for cells, ``d_b`` for gene tokens).

    Examples
    --------
    >>> pool = AttentionPool(4)
    >>> x, mask = pad_sets([torch.ones(3, 4), torch.ones(1, 4)])
    >>> h, alpha = pool(x, mask)
    >>> tuple(h.shape), tuple(alpha.shape)
    ((2, 4), (2, 3))
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        self.dim = dim
        self.score = nn.Linear(dim, 1)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool each set.

        Parameters
        ----------
        x
            ``(B, N_max, dim)`` padded sets.
        mask
            ``(B, N_max)`` bool, True where the element is real; None means all are real.

        Returns
        -------
        h
            ``(B, dim)`` pooled vectors.
        alpha
            ``(B, N_max)`` attention weights; each row sums to 1 over the real elements and
            is exactly 0 on padding.
        """
        assert x.dim() == 3 and x.shape[-1] == self.dim, (
            f"x must have shape (B, N_max, {self.dim}), got {tuple(x.shape)}"
        )
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        assert mask.shape == x.shape[:2] and mask.dtype == torch.bool, (
            f"mask must be bool of shape {tuple(x.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
        )
        # An empty set has no softmax; the model layer validates inputs, this is the backstop.
        assert bool(mask.any(dim=1).all()), "every set needs at least one real element"
        # Zero the padded rows first: whatever they hold (even NaN/inf) then cannot reach h,
        # alpha or any gradient, including the gradient of w through the padded logits.
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        logits = self.score(x).squeeze(-1)
        # -inf (not a large negative number) makes padding weights exactly 0 after softmax.
        logits = logits.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(logits, dim=1)
        h = torch.einsum("bn,bnd->bd", alpha, x)
        return h, alpha


def pad_sets(
    sets: Sequence[torch.Tensor], *, pad_value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack sets of different sizes into a padded batch and its mask.

    Parameters
    ----------
    sets
        One ``(N_i, dim)`` tensor per set, all with the same ``dim``, dtype and device;
        each with ``N_i >= 1``.
    pad_value
        Value written into the padded rows (ignored by :class:`AttentionPool`).

    Returns
    -------
    x
        ``(B, max N_i, dim)``.
    mask
        ``(B, max N_i)`` bool, True for real rows.
    """
    if len(sets) == 0:
        raise ValueError("sets is empty: pass at least one (N_i, dim) tensor")
    dims = {tuple(s.shape[1:]) for s in sets}
    if any(s.dim() != 2 for s in sets) or len(dims) != 1:
        raise ValueError(
            f"every set must be a 2-D (N_i, dim) tensor with one dim, got shapes "
            f"{[tuple(s.shape) for s in sets][:5]}"
        )
    sizes = [int(s.shape[0]) for s in sets]
    empty = [i for i, n in enumerate(sizes) if n == 0]
    if empty:
        raise ValueError(f"sets at positions {empty[:5]} have no elements")
    x = torch.nn.utils.rnn.pad_sequence(list(sets), batch_first=True, padding_value=pad_value)
    lengths = torch.tensor(sizes, device=x.device)
    mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    return x, mask
