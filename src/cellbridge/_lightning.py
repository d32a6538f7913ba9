"""Lightning training shared by POPPY and BiRD: seeded, validated, early-stopped, resumable.

Reproducibility across an interruption: every random draw of an epoch is seeded by
``(seed, epoch)`` (the samplers' batches, the draws inside each batch) and torch's
generator is re-seeded before every step from ``(seed, epoch, batch)`` by the tasks. A
checkpoint written at the end of an epoch holds the weights, the optimiser state, the
early-stopping state and the best weights so far; resuming from it replays the remaining
epochs exactly as the uninterrupted run would.

Data parallelism (Lightning's ``ddp`` strategy, processes started by ``torchrun``, SLURM's
``srun`` or Lightning itself): the seeded samplers yield the same *global* batch in every
process; each process loads and encodes its share of the items (:class:`Shard`: items
``rank, rank + world, ...``), the embeddings are gathered with their gradients
(:func:`gather_batch`) and every process computes the batch-coupled loss (contrastive,
Sinkhorn) on the whole global batch, as one process would. DDP's gradient average is then
the full-batch gradient, and every process ends with the same weights as a single-process
run, up to floating-point reassociation.
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
import torch.distributed
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from torch.utils.data import DataLoader

from cellbridge.errors import InputError

__all__ = [
    "Shard",
    "TrainerOptions",
    "TrainingHistory",
    "fit_task",
    "gather_batch",
    "is_main_process",
    "log_epoch_loss",
    "quiet_lightning",
    "step_seed",
]

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
    @property
    def num_nodes(self) -> int: ...


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


@dataclass(frozen=True)
class Shard:
    """The share of every global batch that one of ``world`` data-parallel processes loads.

    Process ``rank`` takes the items at positions ``rank, rank + world, rank + 2 world,
    ...`` of the global batch; :func:`gather_batch` puts the per-process results back in
    the global order.

    Attributes
    ----------
    rank
        Global rank of this process, ``0 <= rank < world``.
    world
        Number of data-parallel processes.
    """

    rank: int
    world: int

    def take(self, items: Sequence[Any]) -> list[Any]:
        """This process's items of a global batch (the strided slice ``rank::world``)."""
        return list(items[self.rank :: self.world])


class _GatherRows(torch.autograd.Function):
    """All-gather along the first axis; backward: the summed gradient of this process's rows.

    (``torch.distributed.nn.functional.all_gather`` does the same but is deprecated, and
    its backward runs an all-to-all through scatters on gloo.)
    """

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor) -> torch.Tensor:
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        ctx.rows, ctx.rank = local.shape[0], rank
        parts = [torch.empty_like(local) for _ in range(world)]
        torch.distributed.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_batch(local: torch.Tensor, total: int, world: int) -> torch.Tensor:
    r"""The rows of every process's shard, in the order of the global batch, with gradients.

    ``local`` holds this process's rows (positions ``rank::world`` of a global batch of
    ``total`` items, see :class:`Shard`). The shards are padded to one size, all-gathered
    and interleaved back into the global order, so a loss computed on the result is the
    single-process loss of the whole batch.

    Gradient: every process computes the same loss :math:`L` on the gathered batch; the
    backward of the gather sums the gradients of all processes with respect to each
    shard, so process :math:`r` receives :math:`\mathrm{world} \cdot \partial L /
    \partial z_r` for its rows :math:`z_r`. DDP then *averages* the parameter gradients
    over the processes, which gives :math:`\sum_r \partial L / \partial z_r \cdot
    \partial z_r / \partial \theta = \partial L / \partial \theta`: the full-batch
    gradient, with no further scaling (tested in ``tests/test_ddp.py``).

    Parameters
    ----------
    local
        ``(len(range(rank, total, world)), ...)`` rows of this process.
    total
        Size of the global batch.
    world
        Number of processes (the default process group's size); ``1`` returns ``local``
        unchanged, without any collective.

    Returns
    -------
    torch.Tensor
        ``(total, ...)``.
    """
    if world == 1:
        return local
    size = -(-total // world)
    pad = local.new_zeros((size - local.shape[0], *local.shape[1:]))
    gathered = _GatherRows.apply(torch.cat([local, pad]))
    # (world * size, ...) by process -> (size, world, ...) -> global positions i * world + r
    rest = tuple(local.shape[1:])
    return gathered.view(world, size, *rest).transpose(0, 1).reshape(size * world, *rest)[:total]


def log_epoch_loss(task: pl.LightningModule, name: str, loss: torch.Tensor, size: int) -> None:
    """Log a step's loss as the epoch's mean over the global batches of ``size`` items.

    Under data parallelism every process computed the same loss on the gathered batch, so
    the mean synchronised across processes is that value exactly.
    """
    task.log(
        name,
        loss,
        on_step=False,
        on_epoch=True,
        batch_size=size,
        prog_bar=True,
        sync_dist=task.trainer.world_size > 1,
    )


def is_main_process() -> bool:
    """Whether this is global rank 0 (``True`` without an initialised process group).

    After a data-parallel fit every process holds the trained model; write files from
    this one only.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return True


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


class _ShardedDropout(torch.nn.Module):
    """``nn.Dropout`` applied to one process's rows of a global batch.

    The mask of the whole global batch is drawn as one process would draw it (same shape,
    same generator, re-seeded per step by :func:`step_seed`) and this process keeps its
    rows: every item gets the mask of a single-process run, and the processes' items do
    not share masks.
    """

    def __init__(self, p: float, shard: Shard) -> None:
        super().__init__()
        self.p, self.shard, self.total = p, shard, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.numel() == 0:
            return x
        shape = (self.total, *x.shape[1:])
        # what torch's CPU dropout computes: bernoulli_(1 - p) / (1 - p) of the input's shape
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        noise.div_(1 - self.p)
        return x * noise[self.shard.rank :: self.shard.world]


class _DataParallel(Callback):
    """Splits every global batch across the processes of a multi-process fit.

    Sets each batch dataset's ``shard`` attribute to this process's :class:`Shard`, and
    replaces the task's ``nn.Dropout`` layers with :class:`_ShardedDropout`, which needs
    the global batch size of each step: the task's ``global_batch_size(batch)``. Both
    are undone when the fit ends.
    """

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = datasets
        self.swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []

    def _set(self, shard: Shard | None) -> None:
        for dataset in self.datasets:
            dataset.shard = shard

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.world_size == 1:
            self._set(None)
            return
        shard = Shard(trainer.global_rank, trainer.world_size)
        self._set(shard)
        for parent in list(pl_module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Dropout:
                    setattr(parent, name, _ShardedDropout(child.p, shard))
                    self.swapped.append((parent, name, child))

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.swapped:
            total = int(pl_module.global_batch_size(batch))  # type: ignore[operator]
            for parent, name, _ in self.swapped:
                getattr(parent, name).total = total

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._set(None)
        for parent, name, original in self.swapped:
            setattr(parent, name, original)
        self.swapped = []


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
    # lightning.fabric logs e.g. "Initializing distributed: GLOBAL_RANK ..." per process
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
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
        epoch's weights are kept). Their datasets have a ``shard`` attribute, set to this
        process's :class:`Shard` during a multi-process fit; the task gathers the shards
        with :func:`gather_batch`.
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

    Notes
    -----
    Under a data-parallel strategy (``ddp``), every process runs this function and ends
    with the same trained weights and history; only global rank 0 writes checkpoints.
    Strategies whose launcher starts worker processes from this one (``ddp_spawn``,
    ``ddp_fork``, ``ddp_notebook``, an interactive ``auto``) are refused: the best weights
    and the history would stay in the workers.

    Raises
    ------
    InputError
        A strategy that trains in spawned or forked worker processes, or a dataset without
        a ``shard`` attribute under several processes.
    """
    monitor = "val_loss" if val_loader is not None else None
    best = _BestWeights(monitor)
    loaders = [train_loader] if val_loader is None else [train_loader, val_loader]
    datasets = [dl.dataset for dl in loaders]
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
            num_nodes=config.num_nodes,
            strategy=config.strategy,
            # The samplers give every process the same global batch; _DataParallel splits it.
            use_distributed_sampler=False,
            deterministic=True,
            callbacks=[*every, _DataParallel(datasets), *callbacks],
            logger=False,
            default_root_dir=root,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
        )
        _check_launcher(trainer, task, datasets)
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


def _check_launcher(trainer: pl.Trainer, task: pl.LightningModule, datasets: Sequence[Any]) -> None:
    """Refuse what a multi-process fit cannot do right (see :func:`fit_task`)."""
    launcher = trainer.strategy.launcher
    if isinstance(launcher, _MultiProcessingLauncher):
        raise InputError(
            "strategy",
            "trains in worker processes started from this one (spawn / fork), which keep the "
            "best weights and the training history",
            values=[type(trainer.strategy).__name__],
            fix="use strategy='ddp' in a script: launched as is (Lightning starts the other "
            "processes by running the script again), by torchrun, or by srun under SLURM",
        )
    if launcher is not None and not all(hasattr(d, "shard") for d in datasets):
        raise InputError(
            "strategy",
            "the training data cannot be sharded across processes",
            values=[type(d).__name__ for d in datasets],
        )
    if launcher is not None and not hasattr(task, "global_batch_size"):
        raise InputError("strategy", "the task cannot be trained on several processes")
