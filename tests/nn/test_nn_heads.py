"""ProjectionHead and the two POPPY encoders: unit-norm outputs, wiring, closed forms."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from cellbridge.nn import BulkTokenEncoder, CellSetEncoder, ProjectionHead, pad_sets


def test_projection_head_rows_have_unit_norm_and_match_closed_form() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(6, 4, hidden_dim=8).double()
    h = torch.randn(10, 6, dtype=torch.float64)
    z = head(h)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(10, dtype=torch.float64))
    first, second = head.net[0], head.net[3]
    expected = second(functional.gelu(first(h)))
    torch.testing.assert_close(z, expected / expected.norm(dim=1, keepdim=True))


def test_projection_head_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(5, 3, dropout=0.5).eval()
    h = torch.randn(4, 5)
    torch.testing.assert_close(head(h), head(h))
    assert head.net[0].out_features == 5  # hidden_dim defaults to in_dim


@pytest.mark.parametrize(
    "kwargs", [{"in_dim": 0, "out_dim": 2}, {"in_dim": 2, "out_dim": 2, "dropout": 1.0}]
)
def test_projection_head_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ProjectionHead(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("encoder_cls", [CellSetEncoder, BulkTokenEncoder])
def test_encoder_is_pool_then_head(encoder_cls: type[CellSetEncoder]) -> None:
    torch.manual_seed(1)
    encoder = encoder_cls(5, 3, hidden_dim=7).double()
    x, mask = pad_sets([torch.randn(n, 5, dtype=torch.float64) for n in (3, 6)])
    z, alpha = encoder(x, mask)
    h, alpha_ref = encoder.pool(x, mask)
    torch.testing.assert_close(alpha, alpha_ref)
    torch.testing.assert_close(z, encoder.head(h))
    assert z.shape == (2, 3)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2, dtype=torch.float64))
    assert torch.all(alpha[0, 3:] == 0)
