"""Lightning training shared by POPPY and BiRD: seeded, validated, early-stopped, resumable.

Reproducibility across an interruption: every random draw of an epoch is seeded by
``(seed, epoch)`` (the samplers' batches, the draws inside each batch) and torch's
generator is re-seeded before every step from ``(seed, epoch, batch)`` by the tasks. A
checkpoint written at the end of an epoch holds the weights, the optimiser state, the
early-stopping state and the best weights so far; resuming from it replays the remaining
epochs exactly as the uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

__all__ = ["TrainerOptions", "TrainingHistory", "fit_task", "quiet_lightning", "step_seed"]

log = logging.getLogger(__name__)


class TrainerOptions(Protocol):
    """The options :func:`fit_task` reads from a method's (frozen) config."""

    @property
    def max_epochs(self) -> int: ...
    @property
    def patience(self) -> int: ...
    @property
    def accelerator(self) -> str: ...
    @property
    def devices(self) -> int | str: ...
    @property
    def strategy(self) -> str: ...


#: Lightning warnings that describe choices made here on purpose (CPU-first, small data).
_EXPECTED_WARNINGS = (
    r".*does not have many workers.*",
    r".*GPU available but not used.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*LeafSpec.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
    r".*module\(s\) in eval mode at the start of training.*",  # frozen encoders, on purpose
)


def step_seed(seed: int, epoch: int, batch: int) -> int:
    """The torch seed of one training step: a function of ``(seed, epoch, batch)`` only."""
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0])


@dataclass
class TrainingHistory:
    """Per-epoch mean losses, the best epoch and whether training stopped early.

    Attributes
    ----------
    train_loss
        Mean training loss of each epoch.
    val_loss
        Mean validation loss of each epoch (empty without a validation split).
    best_epoch
        The epoch whose weights were kept (0-based; -1 before training).
    stopped_early
        Whether early stopping ended training before ``max_epochs``.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False


class _BestWeights(Callback):
    """Keeps the weights of the epoch with the lowest validation loss (or the last epoch)."""

    def __init__(self, monitor: str | None) -> None:
        self.monitor = monitor
        self.best = float("inf")
        self.best_epoch = -1
        self.weights: dict[str, torch.Tensor] = {}
        self.history = TrainingHistory()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor is None:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if value < self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.weights = copy.deepcopy(pl_module.state_dict())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        self.history.train_loss.append(float(metrics["train_loss"]))
        if "val_loss" in metrics:
            self.history.val_loss.append(float(metrics["val_loss"]))
        if self.monitor is None:
            self.best_epoch = trainer.current_epoch
            self.weights = copy.deepcopy(pl_module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "weights": self.weights,
            "train_loss": list(self.history.train_loss),
            "val_loss": list(self.history.val_loss),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict["best"])
        self.best_epoch = int(state_dict["best_epoch"])
        self.weights = dict(state_dict["weights"])
        self.history.train_loss = list(state_dict["train_loss"])
        self.history.val_loss = list(state_dict["val_loss"])


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """While training runs: Lightning's INFO banners (devices, tips) go to DEBUG level,
    and its warnings about choices made here on purpose are not shown."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        logger.setLevel(level)


def loader(batches: Any, sampler: Any, workers: int) -> DataLoader[Any]:
    """A loader whose sampler yields whole batches (``batch_size=None``)."""
    return DataLoader(
        batches,
        batch_size=None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def fit_task(
    task: pl.LightningModule,
    config: TrainerOptions,
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any] | None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    name: str = "cellbridge",
) -> TrainingHistory:
    """Train ``task`` in place with Lightning and load its best weights.

    Parameters
    ----------
    task
        The Lightning module; it logs ``train_loss`` (and ``val_loss`` when validating).
    config
        Epochs, patience, devices (:class:`TrainerOptions`).
    train_loader, val_loader
        Data; ``val_loader=None`` = no validation and no early stopping (the last
        epoch's weights are kept).
    checkpoint_dir
        Where ``last.ckpt`` is written after every epoch; ``None`` = a temporary folder.
    resume
        Continue from ``checkpoint_dir/last.ckpt`` when it exists. The checkpoint is
        read with ``weights_only=True`` (torch's restricted loader, no arbitrary objects).
    progress
        Show Lightning's progress bar.
    callbacks
        Extra Lightning callbacks.
    name
        For the log line and the temporary folder.
    """
    monitor = "val_loss" if val_loader is not None else None
    best = _BestWeights(monitor)
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as scratch, quiet_lightning():
        root = Path(checkpoint_dir) if checkpoint_dir is not None else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        every: list[Callback] = [
            best,
            ModelCheckpoint(
                dirpath=root,
                filename="{epoch}",
                save_last=True,
                save_top_k=1,
                save_on_train_epoch_end=True,
            ),
        ]
        if monitor is not None:
            every.append(EarlyStopping(monitor=monitor, patience=config.patience, mode="min"))
        trainer = pl.Trainer(
            max_epochs=config.max_epochs,
            accelerator=config.accelerator,
            devices=config.devices,
            strategy=config.strategy,
            deterministic=True,
            callbacks=[*every, *callbacks],
            logger=False,
            default_root_dir=root,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
        )
        last = root / "last.ckpt"
        ckpt_path = str(last) if resume and checkpoint_dir is not None and last.is_file() else None
        if ckpt_path:
            log.info("resuming %s training from %s", name, ckpt_path)
        trainer.fit(task, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
    if best.weights:
        task.load_state_dict(best.weights)
    history = best.history
    history.best_epoch = best.best_epoch
    history.stopped_early = trainer.current_epoch < config.max_epochs and monitor is not None
    return history
