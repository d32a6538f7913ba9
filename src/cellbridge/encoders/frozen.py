"""Make a pretrained torch module explicitly frozen (POPPY §3.2: frozen encoders)."""

from __future__ import annotations

from typing import TypeVar

from torch import nn

__all__ = ["freeze"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def freeze(module: ModuleT) -> ModuleT:
    """Freeze ``module`` in place: no parameter takes a gradient, and it runs in eval mode.

    POPPY trains only the pooling and projection heads on top of frozen pretrained encoders
    (§2.2, §3.2). Frozen parameters keep ``grad is None`` after any backward pass, which the
    tests check.

    Parameters
    ----------
    module
        The pretrained module.

    Returns
    -------
    The same module, for chaining.

    Notes
    -----
    ``requires_grad=False`` survives a parent's ``.train()``, but eval mode does not: a
    parent that calls ``.train()`` switches dropout/batch-norm of the frozen part back on.
    Call ``freeze`` again after ``.train()`` where that matters.
    """
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    module.eval()
    return module
