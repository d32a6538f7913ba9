"""Lightning training of POPPY stage 1: seeded, validated, early-stopped, resumable.

Reproducibility across an interruption: every random draw of an epoch is seeded by
``(seed, epoch)`` — the sampler's batches, the cell draws of each batch
(:class:`~cellbridge.poppy.pairs.PairBatches`) and torch's generator (dropout), which is
re-seeded before every step from ``(seed, epoch, batch)``. A checkpoint written at the
end of an epoch holds the weights, the optimiser state, the early-stopping state and the
best weights so far; resuming from it replays the remaining epochs exactly as the
uninterrupted run would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from cellbridge._lightning import (
    TrainingHistory,
    fit_task,
    gather_batch,
    loader,
    log_epoch_loss,
    quiet_lightning,
    step_seed,
)
from cellbridge.poppy.config import POPPYConfig
from cellbridge.poppy.loss import contrastive_loss_terms
from cellbridge.poppy.network import POPPYNet
from cellbridge.poppy.pairs import NumberedBatches, PairBatch, PairBatches

__all__ = ["TrainingHistory", "quiet_lightning", "train_alignment"]

log = logging.getLogger(__name__)


class _AlignmentTask(pl.LightningModule):
    """Eq. 5 on cross-cohort batches (no data handling, no I/O).

    Under data parallelism each process encodes its share of the batch's items and the
    loss (Eq. 3-5, which couples every pair of the batch) is computed on the gathered
    embeddings of the whole batch (:func:`~cellbridge._lightning.gather_batch`).
    """

    def __init__(self, net: POPPYNet, config: POPPYConfig) -> None:
        super().__init__()
        self.net = net
        self.config = config

    def _step(self, batch: PairBatch, name: str) -> torch.Tensor:
        size, world = self.global_batch_size(batch), self.trainer.world_size
        z_c, z_b = self.net(batch.cells, batch.mask, batch.tokens)
        z_c, z_b = gather_batch(z_c, size, world), gather_batch(z_b, size, world)
        loss = contrastive_loss_terms(z_c, z_b, batch.S, temperature=self.net.temperature).total
        log_epoch_loss(self, name, loss, size)
        return loss

    @staticmethod
    def global_batch_size(batch: PairBatch) -> int:
        """Items of the whole batch (this process may hold a share of them)."""
        return int(batch.S.shape[0])

    def training_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train_loss")

    def validation_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val_loss")

    def on_train_batch_start(self, batch: PairBatch, batch_idx: int) -> None:
        # Dropout draws depend on (seed, epoch, batch) only, not on what else consumed
        # torch's generator (a resumed run creates its data loaders in another order).
        torch.manual_seed(step_seed(self.config.seed, self.current_epoch, batch_idx))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )


def train_alignment(
    net: POPPYNet,
    config: POPPYConfig,
    train: tuple[PairBatches, NumberedBatches],
    val: tuple[PairBatches, NumberedBatches] | None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> TrainingHistory:
    """Train ``net`` in place with Lightning and load its best weights.

    Parameters
    ----------
    net
        The module to train (frozen parts already frozen).
    config
        Epochs, patience, optimiser, devices.
    train, val
        Batches and their numbered cross-cohort sampler; ``val=None`` = no validation and
        no early stopping.
    checkpoint_dir, resume, progress, callbacks
        As in :func:`cellbridge._lightning.fit_task`.
    """
    return fit_task(
        _AlignmentTask(net, config),
        config,
        loader(*train, config.num_workers),
        loader(*val, config.num_workers) if val is not None else None,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=progress,
        callbacks=callbacks,
        name="cellbridge-poppy",
    )
