"""POPPY stage 2: phenotype prediction from bulk by cross-attention over an atlas (§2.2.5).

A fitted stage-1 :class:`~cellbridge.poppy.POPPY` gives bulk embeddings :math:`z_b` and a
frozen cell encoder. Fine-tuning adds :class:`cellbridge.nn.PhenotypeHead`: each bulk
profile queries a fixed reference set of atlas cell embeddings; the prediction is the
attention-weighted sum of per-cell scores. The cell side stays frozen; the bulk encoder is
fine-tuned (default) or frozen. The per-cell attention is kept for attribution (§3.5).
"""

from __future__ import annotations

import copy
import io
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cellbridge._checks import require_unique
from cellbridge.data import CellStore
from cellbridge.errors import InputError
from cellbridge.nn import BulkTokenEncoder, PhenotypeHead
from cellbridge.poppy.config import PhenotypeConfig
from cellbridge.poppy.decomposition import ExpressionDecomposition, expression_decomposition
from cellbridge.poppy.inputs import bulk_inputs, cell_source, check_cell_dim, encode_bulk
from cellbridge.poppy.pairs import ArrayCells
from cellbridge.poppy.training import quiet_lightning

if TYPE_CHECKING:
    from cellbridge.poppy.model import POPPY
    from cellbridge.poppy.network import POPPYNet

__all__ = ["FineTuned", "PhenotypeConfig", "binary_labels", "reference_embeddings"]

log = logging.getLogger(__name__)

Reference = Literal["poppy", "frozen"]


@dataclass
class FineTuned:
    """The stage-2 parts of a model: bulk encoder copy, head, and the fixed reference.

    Attributes
    ----------
    config
        The options used.
    bulk_encoder
        The stage-1 bulk encoder after fine-tuning (a copy: stage-1 embeddings are
        unchanged).
    head
        The cross-attention head.
    reference
        ``(N, dim)`` float32 reference cell embeddings.
    reference_obs
        One row per reference cell (atlas ``obs_names``), with the atlas's ``obs``
        columns kept for attribution (e.g. cell type, sample, labels).
    history
        Mean training loss per epoch.
    """

    config: PhenotypeConfig
    bulk_encoder: BulkTokenEncoder
    head: PhenotypeHead
    reference: torch.Tensor
    reference_obs: pd.DataFrame
    history: list[float]

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON metadata and tensors for :meth:`cellbridge.poppy.POPPY.save`."""
        obs = self.reference_obs.copy()
        categorical = [c for c in obs.columns if isinstance(obs[c].dtype, pd.CategoricalDtype)]
        for column in categorical:
            obs[column] = obs[column].astype(str)
        meta = {
            "config": self.config.to_dict(),
            "reference_obs": json.loads(obs.to_json(orient="split")),
            "categorical": [str(c) for c in categorical],
            "history": list(self.history),
            "temperature": self.head.temperature,
        }
        tensors = {f"phenotype.encoder.{k}": v for k, v in self.bulk_encoder.state_dict().items()}
        tensors |= {f"phenotype.head.{k}": v for k, v in self.head.state_dict().items()}
        tensors["phenotype.reference"] = self.reference
        return meta, tensors

    @classmethod
    def from_checkpoint(
        cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor], net: POPPYNet
    ) -> FineTuned:
        """Rebuild from :meth:`to_checkpoint`'s output (``net``: the stage-1 network)."""
        try:
            config = PhenotypeConfig.from_dict(meta["config"], field="checkpoint finetune config")
            reference = tensors["phenotype.reference"]
            encoder = copy.deepcopy(net.bulk_encoder)
            encoder.load_state_dict(_prefixed(tensors, "phenotype.encoder."), strict=True)
            head_state = _prefixed(tensors, "phenotype.head.")
            query, key = head_state["query.weight"], head_state["key.weight"]
            head = PhenotypeHead(
                query.shape[1],
                key.shape[1],
                query_dim=query.shape[0],
                temperature=float(meta["temperature"]),
                n_outputs=head_state["bias"].shape[0],
            )
            head.load_state_dict(head_state, strict=True)
            obs = pd.read_json(
                io.StringIO(json.dumps(meta["reference_obs"])),
                orient="split",
                dtype=False,
                convert_dates=False,
            )
            obs.index = obs.index.astype(str)
            for column in meta.get("categorical", []):
                obs[column] = obs[column].astype("category")
            history = [float(v) for v in meta["history"]]
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            detail = " ".join(str(err).split())  # one line: state-dict errors span several
            raise InputError("checkpoint", f"phenotype head does not match: {detail}") from None
        if obs.shape[0] != reference.shape[0]:
            raise InputError(
                "checkpoint",
                "reference cells and their obs rows differ in number",
                values=[obs.shape[0], reference.shape[0]],
            )
        return cls(config, encoder.eval(), head.eval(), reference, obs, history)

    @torch.no_grad()
    def logits(self, model: POPPY, bulk: AnnData) -> np.ndarray:
        """``(n_profiles,)`` phenotype logits :math:`\\hat y` of ``bulk``."""
        z = self.embed(model, bulk)
        out = self.head.eval()(z, self.reference, chunk_size=self.config.chunk_size)
        return out[:, 0].numpy().astype(np.float64)

    @torch.no_grad()
    def embed(self, model: POPPY, bulk: AnnData) -> torch.Tensor:
        """Fine-tuned bulk embeddings :math:`z_b` (the queries)."""
        inputs, tokens, _ = bulk_inputs(bulk, model.config, model.token_encoder)
        return encode_bulk(self.bulk_encoder, inputs, tokens)

    @torch.no_grad()
    def attention(self, model: POPPY, bulk: AnnData) -> np.ndarray:
        """``(n_profiles, n_reference)`` attention :math:`\\alpha` of every profile."""
        z = self.embed(model, bulk)
        alpha = self.head.eval().attention(z, self.reference, chunk_size=self.config.chunk_size)
        return alpha.numpy()


def binary_labels(bulk: AnnData, key: str) -> np.ndarray:
    """``obs[key]`` as a float 0/1 vector; refuses missing, non-binary or one-class labels."""
    if key not in bulk.obs:
        raise InputError(
            "label_key",
            f"{key!r} is not an obs column of bulk",
            values=list(bulk.obs.columns),
            fix="name the column holding the phenotype",
        )
    column = bulk.obs[key]
    missing = column.isna().to_numpy()
    if missing.any():
        raise InputError(
            f"bulk.obs[{key!r}]",
            "has missing labels for profiles",
            values=list(bulk.obs_names[missing]),
            fix="label every profile, or subset bulk to the labelled ones",
        )
    values = column.to_numpy()
    if values.dtype == bool:
        values = values.astype(np.int64)
    try:
        numeric = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        numeric = np.array([np.nan])
    if not np.isin(numeric, (0.0, 1.0)).all():
        raise InputError(
            f"bulk.obs[{key!r}]",
            "must be binary (0/1 or bool); found",
            values=sorted({str(v) for v in values})[:10],
            fix="map the classes to 0/1 (multi-class heads are an extension point: "
            "PhenotypeHead(n_outputs=K))",
        )
    if np.unique(numeric).size < 2:
        raise InputError(
            f"bulk.obs[{key!r}]",
            "has a single class; a classifier needs both",
            values=[int(numeric[0])],
            fix="train on profiles of both classes",
        )
    return numeric


@torch.no_grad()
def reference_embeddings(
    model: POPPY, atlas: AnnData | CellStore, config: PhenotypeConfig
) -> tuple[torch.Tensor, pd.DataFrame]:
    """The fixed reference set: ``(N, dim)`` embeddings and their ``obs`` rows."""
    if isinstance(atlas, CellStore):
        raise InputError(
            "atlas",
            "a cell store has no per-cell names or labels for attribution",
            fix="pass the atlas as an AnnData with the cell embedding in obsm",
        )
    if not isinstance(atlas, AnnData) or atlas.n_obs == 0:
        raise InputError("atlas", "must be a non-empty AnnData of cells")
    # the attribution table is indexed by these names
    require_unique(
        atlas.obs_names,
        "atlas.obs_names",
        what="cell names",
        fix="call atlas.obs_names_make_unique()",
    )
    source = cell_source(atlas, model.config, model.standin)
    assert isinstance(source, ArrayCells)  # an AnnData always gives an in-memory source
    check_cell_dim(source, model._fitted().cell_encoder.pool.score.in_features)
    rows = reference_rows(atlas.n_obs, config)
    cells = torch.from_numpy(np.ascontiguousarray(source.embedding[rows]))
    if config.reference == "poppy":
        encoder = model._fitted().cell_encoder.eval()
        parts = [encoder(cells[i : i + 4096, None, :])[0] for i in range(0, cells.shape[0], 4096)]
        cells = torch.cat(parts)
    obs = atlas.obs.iloc[rows].copy()
    obs.index = obs.index.astype(str)
    return cells.contiguous(), obs


def reference_rows(n_cells: int, config: PhenotypeConfig) -> np.ndarray:
    """Atlas rows of the reference set: all, or a seeded subsample of ``max_reference_cells``."""
    if config.max_reference_cells is None or config.max_reference_cells >= n_cells:
        return np.arange(n_cells)
    rng = np.random.default_rng([config.seed, 11])
    return np.sort(rng.choice(n_cells, config.max_reference_cells, replace=False))


class _FinetuneTask(pl.LightningModule):
    """Binary cross-entropy of the head's logit, bulk encoder trained or frozen."""

    reference: torch.Tensor

    def __init__(
        self,
        encoder: BulkTokenEncoder,
        head: PhenotypeHead,
        reference: torch.Tensor,
        config: PhenotypeConfig,
        cell_head: nn.Module | None = None,
        decomposition: ExpressionDecomposition | None = None,
    ) -> None:
        super().__init__()
        self.encoder, self.head, self.config = encoder, head, config
        # frozen: maps an attention-pooled frozen cell embedding into the aligned space
        self.cell_head = cell_head
        self.decomposition = decomposition
        self.register_buffer("reference", reference, persistent=False)
        if decomposition is not None:
            self.register_buffer("cell_features", decomposition.cells, persistent=False)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.epoch_losses: list[float] = []
        self._batch_losses: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, ...], _: int) -> torch.Tensor:
        tokens, y = batch[0], batch[1]
        z, _alpha = self.encoder(tokens)
        weight = self.config.reconstruction_weight
        out, pooled = self.head.predict_and_pool(
            z,
            self.reference,
            chunk_size=self.config.chunk_size,
            pool=weight > 0,
            features=self._cell_features(),
        )
        loss = self.loss_fn(out[:, 0], y)
        if pooled is not None and self.decomposition is not None:
            reconstruction = self.decomposition.loss(pooled, batch[2])
            self.log("reconstruction", reconstruction, prog_bar=True, batch_size=y.shape[0])
            loss = loss + weight * reconstruction
        elif pooled is not None:
            rebuilt = (
                self.cell_head(pooled)
                if self.cell_head is not None
                else nn.functional.normalize(pooled, dim=1)
            )
            reconstruction = (1.0 - (rebuilt * z).sum(dim=1)).mean()
            self.log("reconstruction", reconstruction, prog_bar=True, batch_size=y.shape[0])
            loss = loss + weight * reconstruction
        self._batch_losses.append(float(loss.detach()))
        self.log("loss", loss, prog_bar=True, batch_size=y.shape[0])
        return loss

    def _cell_features(self) -> torch.Tensor | None:
        """The decomposition's per-cell features (a buffer that follows the device)."""
        if self.decomposition is None:
            return None
        features = self.cell_features
        assert isinstance(features, torch.Tensor)
        return features

    def on_train_epoch_end(self) -> None:
        self.epoch_losses.append(float(np.mean(self._batch_losses)))
        self._batch_losses = []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )


def finetune(
    model: POPPY,
    bulk: AnnData,
    atlas: AnnData | CellStore,
    config: PhenotypeConfig,
    *,
    progress: bool = True,
) -> FineTuned:
    """Train the phenotype head (and optionally the bulk encoder) on labelled bulk.

    See :meth:`cellbridge.poppy.POPPY.finetune`.
    """
    net = model._fitted()
    y = binary_labels(bulk, config.label_key)
    inputs, tokens, _ = bulk_inputs(bulk, model.config, model.token_encoder)
    reference, reference_obs = reference_embeddings(model, atlas, config)
    encoder = copy.deepcopy(net.bulk_encoder)
    encoder.requires_grad_(config.finetune_bulk)
    # a frozen encoder stays in eval mode (no dropout), a fine-tuned one trains with it
    encoder.train(config.finetune_bulk)
    torch.manual_seed(config.seed)
    head = PhenotypeHead(
        model.config.embedding_dim,
        reference.shape[1],
        query_dim=config.query_dim,
        temperature=config.temperature,
    )
    with torch.no_grad():  # start at the base rate: logit(mean y)
        p = float(y.mean())
        head.bias.fill_(float(np.log(p / (1 - p))))
    columns = [
        torch.from_numpy(np.asarray(tokens(inputs), dtype=np.float32)),
        torch.from_numpy(y.astype(np.float32)),
    ]
    decomposition = None
    if config.reconstruction_weight > 0 and config.reconstruction_space == "expression":
        decomposition = _decomposition(model, inputs, atlas, config)
        columns.append(decomposition.bulk)
    data = TensorDataset(*columns)
    loader = DataLoader(
        data,
        batch_size=min(config.batch_size, len(data)),
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    cell_head = None
    if (
        config.reconstruction_weight > 0
        and config.reconstruction_space == "embedding"
        and config.reference == "frozen"
    ):
        stage1 = net.cell_encoder
        cell_head = nn.Sequential(
            copy.deepcopy(stage1.standardize), copy.deepcopy(stage1.head)
        ).eval()
        cell_head.requires_grad_(False)
    task = _FinetuneTask(encoder, head, reference, config, cell_head, decomposition)
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=config.max_epochs,
            accelerator=config.accelerator,
            devices=config.devices,
            deterministic=True,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            log_every_n_steps=1,
        )
        trainer.fit(task, loader)
    log.info(
        "phenotype head: %d profiles, %d reference cells, loss %.3f -> %.3f",
        len(data),
        reference.shape[0],
        task.epoch_losses[0],
        task.epoch_losses[-1],
    )
    return FineTuned(
        config,
        encoder.cpu().eval(),
        head.cpu().eval(),
        reference,
        reference_obs,
        task.epoch_losses,
    )


def _decomposition(
    model: POPPY, inputs: np.ndarray, atlas: AnnData | CellStore, config: PhenotypeConfig
) -> ExpressionDecomposition:
    """The expression-space decomposition targets (bulk inputs are log1p-CPM)."""
    encoder = model.token_encoder
    if model.config.bulk_key is not None or encoder is None:
        raise InputError(
            "reconstruction_space",
            "'expression' needs bulk expression, but the bulk encoder reads a "
            "precomputed embedding (bulk_key)",
            fix="use reconstruction_space='embedding'",
        )
    assert isinstance(atlas, AnnData)  # reference_embeddings refused a CellStore
    return expression_decomposition(
        atlas,
        np.expm1(inputs.astype(np.float64)),
        reference_rows(atlas.n_obs, config),
        list(encoder.genes),
        seed=config.seed,
    )


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
