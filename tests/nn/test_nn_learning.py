"""CellSetEncoder learns to attend to the cells that carry the label (POPPY §2.2.1)."""

from __future__ import annotations

import torch
from torch.nn import functional

from cellbridge.nn import CellSetEncoder, pad_sets


def _marker_sets(
    n_sets: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sets of background cells plus a few marker cells; only the markers carry the label.

    Marker cells sit along axis 0 and their sign along axis 1 is the label; background cells
    are loud noise on every other axis, so any attention left on them drowns the label.
    """
    dim = 8
    sets, labels, is_marker = [], [], []
    for _ in range(n_sets):
        n_background = int(torch.randint(15, 30, (1,), generator=generator))
        n_marker = int(torch.randint(2, 5, (1,), generator=generator))
        label = int(torch.randint(0, 2, (1,), generator=generator))
        background = 2.0 * torch.randn(n_background, dim, generator=generator)
        background[:, 0] = 0.3 * torch.randn(n_background, generator=generator) - 1.0
        marker = 0.3 * torch.randn(n_marker, dim, generator=generator)
        marker[:, 0] += 1.0
        marker[:, 1] += 1.0 if label else -1.0
        order = torch.randperm(n_background + n_marker, generator=generator)
        cells = torch.cat([background, marker])[order]
        flag = torch.cat([torch.zeros(n_background), torch.ones(n_marker)])[order].bool()
        sets.append(cells)
        labels.append(label)
        is_marker.append(flag)
    x, mask = pad_sets(sets)
    marker_mask, _ = pad_sets([f[:, None].float() for f in is_marker])
    return x, mask, torch.tensor(labels), marker_mask[..., 0].bool()


def test_attention_moves_to_marker_cells() -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    encoder = CellSetEncoder(8, 2, hidden_dim=16)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=3e-2)
    x_test, mask_test, y_test, markers_test = _marker_sets(256, generator)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            z, alpha = encoder(x_test, mask_test)
        on_markers = float((alpha * markers_test).sum(dim=1).mean())
        accuracy = float((z.argmax(dim=1) == y_test).float().mean())
        return on_markers, accuracy

    before, _ = evaluate()
    for _ in range(300):
        # Fresh sets every step: the loud background cannot be memorised, only the markers
        # generalise.
        x, mask, y, _ = _marker_sets(64, generator)
        optimiser.zero_grad()
        z, _ = encoder(x, mask)
        # z is unit-norm: scale it into logits for a two-class readout of the label.
        functional.cross_entropy(10.0 * z, y).backward()
        optimiser.step()
    after, accuracy = evaluate()
    assert before < 0.3
    assert after > 0.8
    assert accuracy > 0.95
