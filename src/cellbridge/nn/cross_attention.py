"""POPPY's phenotype head: a bulk query attending over a reference atlas (§2.2.5).

The softmax over the atlas is computed in chunks of cells with a streaming (online)
log-sum-exp, so memory is bounded by one chunk, not by the atlas: the running maximum
``m``, normaliser ``l = sum exp(s - m)`` and value sum ``u = sum exp(s - m) v`` of the
chunks seen so far are rescaled by ``exp(m_old - m_new)`` when a chunk raises the
maximum (Milakov & Gimelshein, 2018). During training each chunk is recomputed in the
backward pass (``torch.utils.checkpoint``) instead of keeping its ``(B, chunk)``
intermediates. What torch holds is bounded by a chunk; the process's resident memory can
still grow with the number of chunks because glibc's malloc keeps freed chunk buffers on
its heap (``docs/benchmarks.md``; ``MALLOC_MMAP_THRESHOLD_=65536`` bounds it, at some
speed). torch's ``scaled_dot_product_attention`` is not used: it takes vector
values and materialises or fuses the whole key set, while this head needs a scalar value
per cell, a temperature and the per-cell weights for attribution.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["PhenotypeHead"]


class PhenotypeHead(nn.Module):
    r"""Cross-attention from bulk embeddings over fixed reference cells (POPPY §2.2.5).

    For a bulk embedding :math:`z_b` and reference cell embeddings
    :math:`x^{(1)}, \dots, x^{(N)}`:

    .. math::

        q = W_Q z_b, \quad k^{(i)} = W_K x^{(i)}, \quad
        \alpha_i = \frac{\exp(q^\top k^{(i)} / \tau_{ft})}
                        {\sum_j \exp(q^\top k^{(j)} / \tau_{ft})}, \quad
        v_i = W_V x^{(i)}, \quad \hat y = \sum_i \alpha_i v_i + b.

    Parameters
    ----------
    bulk_dim
        Size of :math:`z_b`.
    cell_dim
        Size of a reference cell embedding :math:`x^{(i)}`.
    query_dim
        Size of :math:`q` and :math:`k^{(i)}`.
    temperature
        :math:`\tau_{ft}`; ``None`` = :math:`\sqrt{\text{query\_dim}}`, the scaling of
        "scaled dot-product attention" (the paper does not give a value).
    n_outputs
        Size of :math:`v_i` and :math:`b`: 1 for a binary (logit) or continuous phenotype;
        ``K`` for ``K`` classes (the extension point for multi-class heads).
    """

    def __init__(
        self,
        bulk_dim: int,
        cell_dim: int,
        *,
        query_dim: int = 64,
        temperature: float | None = None,
        n_outputs: int = 1,
    ) -> None:
        super().__init__()
        self.query = nn.Linear(bulk_dim, query_dim, bias=False)
        self.key = nn.Linear(cell_dim, query_dim, bias=False)
        self.value = nn.Linear(cell_dim, n_outputs, bias=False)
        self.bias = nn.Parameter(torch.zeros(n_outputs))
        self.temperature = math.sqrt(query_dim) if temperature is None else float(temperature)

    def scores(self, z_b: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Attention logits :math:`q^\\top k^{(i)} / \\tau_{ft}`, shape ``(B, N)``."""
        return self.query(z_b) @ self.key(cells).T / self.temperature

    def forward(
        self, z_b: torch.Tensor, reference: torch.Tensor, *, chunk_size: int = 8192
    ) -> torch.Tensor:
        """:math:`\\hat y` for ``(B, bulk_dim)`` queries over ``(N, cell_dim)`` cells.

        Returns ``(B, n_outputs)``. Memory is bounded by ``B x chunk_size``.
        """
        return self.predict_and_pool(z_b, reference, chunk_size=chunk_size, pool=False)[0]

    def predict_and_pool(
        self,
        z_b: torch.Tensor,
        reference: torch.Tensor,
        *,
        chunk_size: int = 8192,
        pool: bool = True,
        features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:math:`\\hat y` and, with ``pool``, the attention-pooled cell features
        :math:`\\sum_i \\alpha_i f^{(i)}` (``(B, n_features)``): the profile written as a
        weighted combination of reference cells, in one streaming pass.

        ``features`` is ``(N, n_features)``, one row per reference cell (default: the
        reference embeddings themselves, :math:`f^{(i)} = x^{(i)}`).
        """
        _check_chunk(chunk_size, reference)
        if pool and features is None:
            features = reference
        if not pool:
            features = None
        if features is not None and features.shape[0] != reference.shape[0]:
            from cellbridge.errors import InputError

            raise InputError(
                "features",
                "must have one row per reference cell",
                values=[features.shape[0], reference.shape[0]],
            )
        q = self.query(z_b)
        width = self.bias.shape[0] + (features.shape[1] if features is not None else 0)
        m = torch.full((q.shape[0], 1), -math.inf, dtype=q.dtype, device=q.device)
        lse_sum = torch.zeros_like(m)
        acc = torch.zeros(q.shape[0], width, dtype=q.dtype, device=q.device)
        for start in range(0, reference.shape[0], chunk_size):
            block = reference[start : start + chunk_size]
            extra = None if features is None else features[start : start + chunk_size]
            if torch.is_grad_enabled():
                c_max, c_sum, c_acc = checkpoint(self._chunk, q, block, extra, use_reentrant=False)
            else:
                c_max, c_sum, c_acc = self._chunk(q, block, extra)
            new = torch.maximum(m, c_max)
            old_scale, chunk_scale = torch.exp(m - new), torch.exp(c_max - new)
            lse_sum = lse_sum * old_scale + c_sum * chunk_scale
            acc = acc * old_scale + c_acc * chunk_scale
            m = new
        out = acc / lse_sum
        n_out = self.bias.shape[0]
        return out[:, :n_out] + self.bias, (out[:, n_out:] if features is not None else None)

    def _chunk(
        self, q: torch.Tensor, block: torch.Tensor, extra: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Max, sum of exp and exp-weighted sums (values, and the pooled features) of one
        chunk, relative to the chunk's own max."""
        s = q @ self.key(block).T / self.temperature
        c_max = s.max(dim=1, keepdim=True).values
        w = torch.exp(s - c_max)
        values = self.value(block)
        return (
            c_max,
            w.sum(dim=1, keepdim=True),
            w @ (torch.cat([values, extra], dim=1) if extra is not None else values),
        )

    @torch.no_grad()
    def attention(
        self, z_b: torch.Tensor, reference: torch.Tensor, *, chunk_size: int = 8192
    ) -> torch.Tensor:
        """The weights :math:`\\alpha` of every query over every cell, ``(B, N)``.

        Two passes over the chunks (log-normaliser, then weights written into the
        preallocated output), so only the output is ``B x N``.
        """
        _check_chunk(chunk_size, reference)
        starts = range(0, reference.shape[0], chunk_size)
        lse = torch.full((z_b.shape[0], 1), -math.inf, dtype=z_b.dtype, device=z_b.device)
        for i in starts:
            s = self.scores(z_b, reference[i : i + chunk_size])
            lse = torch.logaddexp(lse, torch.logsumexp(s, 1, keepdim=True))
        # written in place: the output is the only B x N allocation
        out = torch.empty(z_b.shape[0], reference.shape[0], dtype=z_b.dtype, device=z_b.device)
        for i in starts:
            out[:, i : i + chunk_size] = torch.exp(
                self.scores(z_b, reference[i : i + chunk_size]) - lse
            )
        return out

    @torch.no_grad()
    def cell_values(self, reference: torch.Tensor) -> torch.Tensor:
        """:math:`v_i` of every reference cell, ``(N, n_outputs)``."""
        return self.value(reference)


def _check_chunk(chunk_size: int, reference: torch.Tensor) -> None:
    from cellbridge.errors import InputError

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError("chunk_size", "must be a positive integer", values=[chunk_size])
    if reference.ndim != 2 or reference.shape[0] == 0:
        raise InputError(
            "reference",
            "must be a non-empty (cells, dim) matrix",
            values=[tuple(reference.shape)],
            fix="pass the reference atlas's cell embeddings",
        )
