"""Frozen pretrained parts take no gradient; the trainable POPPY heads do (POPPY §3.2)."""

from __future__ import annotations

import torch
from torch import nn

from cellbridge.encoders import freeze
from cellbridge.nn import CellSetEncoder, pad_sets


class _Model(nn.Module):
    """A stand-in pretrained cell model feeding the trainable cell-set encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.pretrained = freeze(nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.5)))
        self.encoder = CellSetEncoder(4, 3)

    def forward(self, genes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z, _ = self.encoder(self.pretrained(genes), mask)
        return z


def test_frozen_parts_get_no_gradient_trainable_parts_do() -> None:
    torch.manual_seed(0)
    model = _Model()
    x, mask = pad_sets([torch.randn(5, 6), torch.randn(3, 6)])
    target = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
    loss = (1 - (model(x, mask) * target).sum(dim=1)).mean()
    loss.backward()
    frozen = list(model.pretrained.parameters())
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)
    trainable = list(model.encoder.parameters())
    assert all(p.grad is not None and torch.any(p.grad != 0) for p in trainable)


def test_freeze_sets_eval_mode_and_returns_the_module() -> None:
    module = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    assert freeze(module) is module
    assert not module.training
    x = torch.ones(3, 2)
    torch.testing.assert_close(module(x), module(x))  # dropout is off
    assert all(not p.requires_grad for p in module.parameters())
