"""BiRD drug-aware fine-tuning (§3, Appendix A): frozen cells aligned to a drug space by OT.

A frozen cell embedding :math:`x` (an ``obsm`` key: a foundation model's, or a PCA
stand-in) goes through a learnable projection :math:`f_\\theta` (linear, as in Appendix
A, or an MLP by option) into the space of fixed drug embeddings :math:`g(d)`. Each batch
holds the cells of several drugs; the loss is Eq. 3 on the entropic plan of Eq. 2
(:func:`cellbridge.ot.ot_alignment_loss`), differentiated through a fixed number of
log-domain Sinkhorn iterations. Drugs are split 80/10/10 into train/val/test (seeded;
test drugs never seen in training); one model per cell line (:func:`fit_per_line`) or one
pooled model (:meth:`Aligner.fit` on several lines).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy.spatial.distance import pdist
from torch import nn
from torch.utils.data import Dataset, Sampler

from cellbridge._checkpoint import read_checkpoint, write_checkpoint
from cellbridge._lightning import (
    Shard,
    TrainingHistory,
    fit_task,
    gather_batch,
    loader,
    log_epoch_loss,
    step_seed,
)
from cellbridge.bird._controls import control_flags
from cellbridge.bird.config import AlignConfig
from cellbridge.data.splits import split_by_group
from cellbridge.errors import InputError
from cellbridge.nn.encoders import Standardize
from cellbridge.ot import ot_alignment_loss, squared_euclidean_cost

__all__ = ["AlignConfig", "Aligner", "drug_split", "fit_per_line"]

log = logging.getLogger(__name__)

_KIND = "cellbridge.bird.Aligner"


def drug_split(drugs: Sequence[str], config: AlignConfig) -> pd.Series:
    """Drugs -> ``"train"`` / ``"val"`` / ``"test"`` (BiRD A.1; seeded, by drug).

    Parameters
    ----------
    drugs
        The drug names to split.
    config
        Gives ``val_fraction``, ``test_fraction`` and ``seed``.
    """
    train = 1.0 - config.val_fraction - config.test_fraction
    return split_by_group(
        [str(d) for d in drugs],
        fractions=(train, config.val_fraction, config.test_fraction),
        names=("train", "val", "test"),
        seed=config.seed,
    )


@dataclass
class _Inputs:
    """Treated cells of the embedding's drugs: frozen inputs and drug codes."""

    x: np.ndarray
    drug: np.ndarray  # object array of names
    obs_names: pd.Index


def treated_cells(cells: AnnData, config: AlignConfig) -> _Inputs:
    """The treated cells' frozen embedding and drugs (controls left out, checked)."""
    if not isinstance(cells, AnnData) or cells.n_obs == 0:
        raise InputError("cells", "must be a non-empty AnnData")
    if config.cell_key not in cells.obsm:
        raise InputError(
            f"cells.obsm[{config.cell_key!r}]",
            "is missing: the frozen cell embedding",
            values=list(cells.obsm.keys()),
            fix="compute one (e.g. encoders.PCAStandIn) or set cell_key",
        )
    x = np.asarray(cells.obsm[config.cell_key])
    if (
        x.ndim != 2
        or x.shape[0] != cells.n_obs
        or x.shape[1] == 0
        or not np.issubdtype(x.dtype, np.number)
    ):
        raise InputError(
            f"cells.obsm[{config.cell_key!r}]",
            "must be a numeric (cells, dims) matrix",
            values=[x.shape, str(x.dtype)],
        )
    if config.drug_key not in cells.obs:
        raise InputError(
            "drug_key", "is not an obs column", values=[config.drug_key, *cells.obs.columns]
        )
    keep = ~control_flags(
        cells.obs,
        drug_key=config.drug_key,
        control_key=config.control_key,
        control_drug=config.control_drug,
        where="cells.obs",
    )
    drugs = cells.obs[config.drug_key].to_numpy()
    if pd.isna(drugs[keep]).any():
        raise InputError(
            f"cells.obs[{config.drug_key!r}]",
            "has treated cells without a drug",
            values=list(cells.obs_names[keep & pd.isna(drugs)][:10]),
        )
    x = x[keep]
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise InputError(
            f"cells.obsm[{config.cell_key!r}]",
            "has NaN or infinite values in cells",
            values=list(cells.obs_names[keep][bad][:10]),
            fix="remove or fix those cells",
        )
    return _Inputs(
        x.astype(np.float32), drugs[keep].astype(str).astype(object), cells.obs_names[keep]
    )


def _check_embedding(embedding: pd.DataFrame, drugs: np.ndarray) -> pd.DataFrame:
    if not isinstance(embedding, pd.DataFrame) or embedding.shape[0] < 2:
        raise InputError("embedding", "must be a DataFrame of drugs x dimensions (>= 2 drugs)")
    if embedding.index.has_duplicates:
        raise InputError(
            "embedding.index",
            "has duplicate drugs",
            values=list(embedding.index[embedding.index.duplicated()][:10]),
        )
    values = embedding.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError("embedding", "has NaN or infinite values")
    index = embedding.index.astype(str)
    missing = sorted(set(drugs) - set(index))
    if missing:
        raise InputError(
            "embedding",
            "has no row for drugs of the cells",
            values=missing[:10],
            fix="embed every drug of the cells (or subset the cells)",
        )
    return pd.DataFrame(values, index=index, columns=[str(c) for c in embedding.columns])


class _Projection(nn.Module):
    """Standardize (fixed) then a linear map or a one-hidden-layer MLP: :math:`f_\\theta`.

    ``calibrated`` applies the scale and shift fitted after training
    (:func:`_calibrate`); the loss only ever sees the raw map.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, d_in: int, d_out: int, head: str, hidden: int) -> None:
        super().__init__()
        self.standardize = Standardize(d_in)
        self.map: nn.Module = (
            nn.Linear(d_in, d_out)
            if head == "linear"
            else nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))
        )
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("shift", torch.zeros(d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(self.standardize(x))

    def calibrated(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self(x) + self.shift


@torch.no_grad()
def _calibrate(projection: _Projection, x: torch.Tensor, targets: torch.Tensor) -> None:
    r"""Fit the scale :math:`s` and shift :math:`t` that Eq. 2–3 leave free.

    The plan of Eq. 2 does not change when every :math:`f_\theta(x_i)` moves by one vector
    :math:`t` (the cost changes by a row term and a column term, absorbed by the
    potentials), and the scale of :math:`f_\theta` acts only as a change of
    :math:`\epsilon`. Eq. 5 scores by absolute distances, so cellbridge fixes them by least
    squares on the training cells: :math:`\min_{s,t} \sum_i \lVert s f_\theta(x_i) + t -
    g(d_{k(i)}) \rVert^2`, i.e. :math:`s = \sum_i \langle \tilde f_i, \tilde g_i \rangle /
    \sum_i \lVert \tilde f_i \rVert^2` (centred) and :math:`t = \bar g - s \bar f`.
    """
    f = projection(x).double()
    g = targets.double()
    fc, gc = f - f.mean(dim=0), g - g.mean(dim=0)
    denominator = float((fc**2).sum())
    scale = float((fc * gc).sum()) / denominator if denominator > 0 else 1.0
    projection.scale.fill_(scale)
    projection.shift.copy_((g.mean(dim=0) - scale * f.mean(dim=0)).float())


class DrugBatchSampler(Sampler[tuple[int, int, tuple[int, ...]]]):
    """Batches of ``drugs_per_batch`` drugs x ``cells_per_drug`` cells, seeded by epoch.

    Yields ``(epoch, number, rows)``; every draw is a function of ``(seed, epoch,
    number)``, so a resumed run replays the same batches.
    """

    def __init__(
        self,
        rows_by_drug: list[np.ndarray],
        *,
        drugs_per_batch: int,
        cells_per_drug: int,
        n_batches: int,
        seed: int,
        fixed_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.rows_by_drug = rows_by_drug
        self.drugs_per_batch = min(drugs_per_batch, len(rows_by_drug))
        self.cells_per_drug = cells_per_drug
        self.n_batches = n_batches
        self.seed = seed
        self.fixed_epoch = fixed_epoch
        self.epoch = 0 if fixed_epoch is None else fixed_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (ignored by a fixed validation sampler)."""
        if self.fixed_epoch is None:
            self.epoch = epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[tuple[int, int, tuple[int, ...]]]:
        for number in range(self.n_batches):
            rng = np.random.default_rng([self.seed, self.epoch, number, 3])
            chosen = rng.choice(len(self.rows_by_drug), self.drugs_per_batch, replace=False)
            rows = []
            for k in np.sort(chosen):
                pool = self.rows_by_drug[k]
                replace = pool.size < self.cells_per_drug
                rows.append(rng.choice(pool, self.cells_per_drug, replace=replace))
            yield self.epoch, number, tuple(int(r) for r in np.concatenate(rows))


class _Batches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows -> (frozen inputs, drug codes).

    With a ``shard`` (set by the trainer in a multi-process fit) the inputs are this
    process's rows only; the codes are always the whole batch's.
    """

    def __init__(self, x: np.ndarray, codes: np.ndarray) -> None:
        self.x = torch.from_numpy(x)
        self.codes = torch.from_numpy(codes.astype(np.int64))
        self.shard: Shard | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(
        self, item: tuple[int, int, tuple[int, ...]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.tensor(item[2], dtype=torch.long)
        mine = rows if self.shard is None else rows[self.shard.rank :: self.shard.world]
        return self.x[mine], self.codes[rows]


class _AlignTask(pl.LightningModule):
    """Eq. 3 on the plan of Eq. 2 over the drugs present in each batch.

    Under data parallelism each process projects its share of the batch's cells; the
    plan of Eq. 2 couples every cell of the batch, so the loss is computed on the gathered
    projections of the whole batch (:func:`~cellbridge._lightning.gather_batch`).
    """

    drugs: torch.Tensor

    def __init__(self, projection: _Projection, drugs: torch.Tensor, config: AlignConfig) -> None:
        super().__init__()
        self.projection = projection
        self.config = config
        self.register_buffer("drugs", drugs, persistent=False)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], name: str) -> torch.Tensor:
        x, codes = batch
        size, world = self.global_batch_size(batch), self.trainer.world_size
        present, labels = torch.unique(codes, return_inverse=True)
        z = gather_batch(self.projection(x), size, world)
        cost = squared_euclidean_cost(z, self.drugs[present])
        loss = ot_alignment_loss(
            cost, labels, eps=self.config.epsilon, n_iter=self.config.sinkhorn_iterations
        )
        log_epoch_loss(self, name, loss, size)
        return loss

    @staticmethod
    def global_batch_size(batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        """Cells of the whole batch (this process may hold a share of them)."""
        return int(batch[1].shape[0])

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return self._step(batch, "train_loss")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return self._step(batch, "val_loss")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        torch.manual_seed(step_seed(self.config.seed, self.current_epoch, batch_idx))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.projection.parameters(),
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )


@dataclass
class Aligner:
    """A frozen cell encoder aligned to a drug-embedding space (BiRD §3).

    Build it from a config and :meth:`fit` it (or :meth:`load` one); the other fields are
    set by fitting.

    Attributes
    ----------
    config
        The options.
    projection
        The trained :math:`f_\\theta` (``None`` before fitting).
    drug_space
        :math:`g(d)` as used: drugs x dimensions, divided by ``drug_scale``.
    drug_scale
        Root mean squared distance between the training drugs when
        ``config.normalize_drugs``, else 1.
    split
        Drug -> ``"train"``/``"val"``/``"test"``.
    lines
        The cell lines of the cells it was fitted on.
    history
        Per-epoch losses of the fit.

    Examples
    --------
    >>> aligner = Aligner(AlignConfig(cell_key="X_pca")).fit(cells, bird)  # doctest: +SKIP
    >>> z = aligner.transform(cells)  # f_theta(x), in the drug space  # doctest: +SKIP
    """

    config: AlignConfig = field(default_factory=AlignConfig)
    projection: _Projection | None = None
    drug_space: pd.DataFrame | None = None  # g(d) as used: scaled by drug_scale
    drug_scale: float = 1.0
    split: pd.Series | None = None
    lines: list[str] = field(default_factory=list)
    history: TrainingHistory | None = None

    # ------------------------------------------------------------------ training
    def fit(
        self,
        cells: AnnData,
        embedding: pd.DataFrame,
        *,
        split: pd.Series | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = True,
        progress: bool = True,
    ) -> Aligner:
        """Train :math:`f_\\theta` on the cells of the training drugs.

        Parameters
        ----------
        cells
            Treated (and control) cells or pseudo-bulk replicates with the frozen
            embedding in ``obsm[cell_key]``; all their cell lines are pooled (use
            :func:`fit_per_line` for one model per line).
        embedding
            Drugs x dimensions: :math:`g(d)`, e.g. :func:`cellbridge.bird.bird_embedding`.
        split
            Drug -> ``"train"``/``"val"``/``"test"``; default :func:`drug_split` of the
            cells' drugs. Test drugs are never used here.
        checkpoint_dir, resume
            Per-epoch Lightning checkpoints and exact resume.
        progress
            Progress bar.
        """
        config = self.config
        data = treated_cells(cells, config)
        space = _check_embedding(embedding, data.drug)
        split = self._split(split, data.drug, config)
        scale = (
            _drug_scale(space.loc[split.index[split == "train"]]) if config.normalize_drugs else 1.0
        )
        space = space / scale
        names = list(space.index)
        code_of = {d: i for i, d in enumerate(names)}
        codes = np.array([code_of[d] for d in data.drug], dtype=np.int64)
        part = split.reindex(data.drug).to_numpy()
        torch.manual_seed(config.seed)
        projection = _Projection(data.x.shape[1], space.shape[1], config.head, config.hidden_dim)
        train_rows = np.flatnonzero(part == "train")
        projection.standardize.fit(torch.from_numpy(data.x[train_rows]))
        drugs = torch.tensor(space.to_numpy(), dtype=torch.float32)
        train = self._loader(data, codes, train_rows, fixed=False)
        val_rows = np.flatnonzero(part == "val")
        val = None
        if np.unique(codes[val_rows]).size >= 2:
            val = self._loader(data, codes, val_rows, fixed=True)
        else:
            log.warning(
                "%d validation drug(s): training %d epochs without early stopping "
                "(Eq. 2 needs at least 2 drugs to compare)",
                np.unique(codes[val_rows]).size,
                config.max_epochs,
            )
        task = _AlignTask(projection, drugs, config)
        history = fit_task(
            task,
            config,
            train,
            val,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
            resume=resume,
            progress=progress,
            name="cellbridge-bird",
        )
        rows = torch.from_numpy(train_rows)
        _calibrate(projection.eval(), torch.from_numpy(data.x)[rows], drugs[codes[train_rows]])
        self.projection = projection
        self.drug_space, self.drug_scale, self.split = space, scale, split
        self.history = history
        if config.cell_line_key in cells.obs:
            self.lines = sorted(set(cells.obs[config.cell_line_key].astype(str)))
        return self

    @staticmethod
    def _split(split: pd.Series | None, drugs: np.ndarray, config: AlignConfig) -> pd.Series:
        """The drug split as plain strings, index ``drug``, name ``part``."""
        split = drug_split(sorted(set(drugs)), config) if split is None else split
        split = pd.Series(
            split.astype(str).to_numpy(),
            index=pd.Index(split.index.astype(str), name="drug"),
            name="part",
        )
        unknown = sorted(set(split.astype(str)) - {"train", "val", "test"})
        if unknown:
            raise InputError("split", "values must be train, val or test", values=unknown)
        missing = sorted(set(drugs) - set(split.index))
        if missing:
            raise InputError("split", "has no part for drugs of the cells", values=missing[:10])
        if not (split == "train").any():
            raise InputError("split", "has no training drug")
        return split

    def _loader(self, data: _Inputs, codes: np.ndarray, rows: np.ndarray, *, fixed: bool) -> Any:
        config = self.config
        by_drug = [rows[codes[rows] == k] for k in np.unique(codes[rows])]
        if len(by_drug) < 2:
            raise InputError(
                "split",
                "a part needs cells of at least 2 drugs (Eq. 2 compares drugs)",
                values=[len(by_drug)],
            )
        per_batch = min(config.drugs_per_batch, len(by_drug)) * config.cells_per_drug
        n_batches = config.batches_per_epoch or max(1, math.ceil(rows.size / per_batch))
        sampler = DrugBatchSampler(
            by_drug,
            drugs_per_batch=config.drugs_per_batch,
            cells_per_drug=config.cells_per_drug,
            n_batches=n_batches,
            seed=config.seed + (1 if fixed else 0),
            fixed_epoch=0 if fixed else None,
        )
        return loader(_Batches(data.x, codes), sampler, 0)

    # ------------------------------------------------------------------ use
    def _fitted(self) -> tuple[_Projection, pd.DataFrame]:
        if self.projection is None or self.drug_space is None:
            raise InputError("aligner", "is not fitted", fix="call .fit() or Aligner.load()")
        return self.projection, self.drug_space

    @torch.no_grad()
    def transform(self, cells: AnnData) -> np.ndarray:
        """:math:`f_\\theta(x)` of every cell (controls included), ``(cells, dims)``, with
        the calibrated scale and shift (:func:`_calibrate`)."""
        projection, space = self._fitted()
        if not isinstance(cells, AnnData) or self.config.cell_key not in cells.obsm:
            raise InputError(
                f"cells.obsm[{self.config.cell_key!r}]",
                "is missing: the frozen cell embedding the aligner was trained on",
            )
        x = np.asarray(cells.obsm[self.config.cell_key], dtype=np.float32)
        expected = projection.standardize.shift.shape[0]
        if x.ndim != 2 or x.shape[1] != expected:
            raise InputError(
                f"cells.obsm[{self.config.cell_key!r}]",
                f"must have {expected} columns, as at training",
                values=[x.shape],
            )
        if not np.isfinite(x).all():
            raise InputError(f"cells.obsm[{self.config.cell_key!r}]", "has NaN or inf")
        if x.shape[0] == 0:
            return np.zeros((0, space.shape[1]), dtype=np.float32)
        out = [
            projection.calibrated(torch.from_numpy(x[i : i + 65536]))
            for i in range(0, len(x), 65536)
        ]
        return torch.cat(out).numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to the directory ``path`` (atomic)."""
        projection, space = self._fitted()
        assert self.split is not None
        meta = {
            "config": self.config.to_dict(),
            "drug_scale": self.drug_scale,
            "drugs": list(space.index),
            "dims": list(space.columns),
            "split": {str(k): str(v) for k, v in self.split.items()},
            "lines": list(self.lines),
            "history": None if self.history is None else self.history.__dict__,
            "d_in": int(projection.standardize.shift.shape[0]),
        }
        tensors = {f"projection.{k}": v for k, v in projection.state_dict().items()}
        tensors["drug_space"] = torch.tensor(space.to_numpy(), dtype=torch.float64)
        return write_checkpoint(path, _KIND, meta, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Aligner:
        """Read a directory written by :meth:`save` (hash and tensor table checked)."""
        meta, tensors = read_checkpoint(path, _KIND)
        try:
            config = AlignConfig.from_dict(meta["config"], field="checkpoint config")
            space = pd.DataFrame(
                tensors["drug_space"].numpy(), index=meta["drugs"], columns=meta["dims"]
            )
            projection = _Projection(
                int(meta["d_in"]), space.shape[1], config.head, config.hidden_dim
            )
            state = {
                k.removeprefix("projection."): v
                for k, v in tensors.items()
                if k.startswith("projection.")
            }
            projection.load_state_dict(state, strict=True)
            history = TrainingHistory(**meta["history"]) if meta.get("history") else None
            drug_scale = float(meta["drug_scale"])
            split = pd.Series(meta["split"], name="part").rename_axis("drug")
            lines = list(meta["lines"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            detail = " ".join(str(err).split())  # one line: state-dict errors span several
            raise InputError("checkpoint", f"does not match an aligner: {detail}") from None
        return cls(
            config=config,
            projection=projection.eval(),
            drug_space=space,
            drug_scale=drug_scale,
            split=split,
            lines=lines,
            history=history,
        )


def _drug_scale(space: pd.DataFrame) -> float:
    """sqrt of the mean squared distance between distinct drugs (1 if all coincide)."""
    if space.shape[0] < 2:
        return 1.0
    mean_sq = float(pdist(space.to_numpy(dtype=np.float64), "sqeuclidean").mean())
    return float(np.sqrt(mean_sq)) if mean_sq > 0 else 1.0


def fit_per_line(
    cells: AnnData,
    embedding: pd.DataFrame,
    config: AlignConfig | None = None,
    *,
    lines: Sequence[str] | None = None,
    split: pd.Series | None = None,
    progress: bool = True,
) -> dict[str, Aligner]:
    """One :class:`Aligner` per cell line (BiRD A: a model per line), one shared drug split.

    Parameters
    ----------
    cells
        Cells of every line, with the frozen embedding in ``obsm[config.cell_key]`` (as for
        :meth:`Aligner.fit`).
    embedding
        Drugs x dimensions: :math:`g(d)`.
    config
        Options shared by every line's model; default ``AlignConfig()``.
    lines
        The cell lines to train on (default: all in ``obs[cell_line_key]``).
    split
        Shared by every line; default :func:`drug_split` of all the cells' drugs.
    progress
        Progress bars.
    """
    config = config or AlignConfig()
    if config.cell_line_key not in cells.obs:
        raise InputError("cell_line_key", "is not an obs column", values=[config.cell_line_key])
    column = cells.obs[config.cell_line_key].astype(str)
    available = sorted(set(column))
    chosen = available if lines is None else [str(line) for line in lines]
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise InputError("lines", "are not in the cells", values=unknown, fix=f"use {available}")
    if split is None:
        split = drug_split(sorted(set(treated_cells(cells, config).drug)), config)
    return {
        line: Aligner(config).fit(
            cells[(column == line).to_numpy()], embedding, split=split, progress=progress
        )
        for line in chosen
    }
