"""``POPPY``: stage-1 model — fit, embed bulk and cell sets, save and load (POPPY §2.2)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from lightning.pytorch.callbacks import Callback

from cellbridge._checkpoint import read_checkpoint, write_checkpoint
from cellbridge.data import CellStore
from cellbridge.encoders import GeneTokenEncoder, PCAStandIn, ScaledGeneEmbeddings
from cellbridge.errors import InputError
from cellbridge.poppy.config import POPPYConfig
from cellbridge.poppy.inputs import (
    bulk_inputs,
    cell_source,
    check_cell_dim,
    encode_bulk,
    mean_tokens,
    paired_samples,
    sampler_groups,
)
from cellbridge.poppy.network import POPPYNet
from cellbridge.poppy.pairs import (
    CellSource,
    NumberedBatches,
    PairBatches,
    expand_similarity,
)
from cellbridge.poppy.phenotype import FineTuned, PhenotypeConfig, binary_labels, finetune
from cellbridge.poppy.sampler import CrossCohortSampler
from cellbridge.poppy.training import TrainingHistory, train_alignment

__all__ = ["POPPY"]

log = logging.getLogger(__name__)

FORMAT = "cellbridge.poppy.stage1/1"


#: Below this many validation samples, ``fit`` logs that early stopping is unreliable.
SMALL_VALIDATION = 10


class POPPY:
    """Ontology-supervised contrastive alignment of bulk and single-cell embeddings.

    Stage 1 of POPPY (§2.2.1–2.2.4): a cell-set encoder :math:`E_c` (attention-MIL pooling
    of frozen cell embeddings, Eq. 2, then a two-layer FFN and l2) and a bulk encoder
    :math:`E_b` (frozen gene tokens, the same pooling over genes, FFN, l2), trained with
    the multi-positive contrastive loss (Eq. 3–5) on batches of the cross-cohort sampler.

    Parameters
    ----------
    config
        Options (see :class:`POPPYConfig`; the paper gives no numeric training settings).
    token_encoder
        The frozen gene-token encoder of the bulk side. ``None``: gene embeddings learned
        once from the training cells as PCA loadings
        (:meth:`~cellbridge.encoders.ScaledGeneEmbeddings.from_reference`); ignored when
        ``config.bulk_key`` is set.

    Examples
    --------
    >>> from cellbridge.data import pbmc_patients
    >>> from cellbridge.poppy import POPPY, POPPYConfig, sample_similarity
    >>> data = pbmc_patients(n_patients=16, cells_per_patient=30)
    >>> S = sample_similarity(data.cells, k=8)
    >>> model = POPPY(POPPYConfig(cell_key="X_pca", max_epochs=1, batch_size=4))
    >>> model = model.fit(data.cells, data.pseudobulk, S, progress=False)
    >>> model.embed_bulk(data.pseudobulk).shape
    (16, 128)
    """

    def __init__(
        self, config: POPPYConfig | None = None, *, token_encoder: GeneTokenEncoder | None = None
    ) -> None:
        self.config = config if config is not None else POPPYConfig()
        if not isinstance(self.config, POPPYConfig):
            raise InputError("config", f"must be a POPPYConfig, got {type(config).__name__}")
        self.token_encoder = token_encoder
        self.standin: PCAStandIn | None = None
        self.net: POPPYNet | None = None
        self.history: TrainingHistory | None = None
        self.sources: dict[str, str] = {}
        self.split: dict[str, list[str]] = {}
        self.phenotype: FineTuned | None = None

    # ------------------------------------------------------------------ training
    def fit(
        self,
        cells: AnnData | CellStore,
        bulk: AnnData,
        similarity: AnnData,
        *,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = True,
        progress: bool = True,
        callbacks: Sequence[Callback] = (),
    ) -> POPPY:
        """Train the encoders; returns ``self``.

        Parameters
        ----------
        cells
            Single cells with ``obs[sample_key]`` and the frozen embedding in
            ``obsm[cell_key]`` (or expression, for the PCA stand-in), or an on-disk
            :class:`~cellbridge.data.CellStore` for atlases larger than memory.
        bulk
            Bulk-like profiles (pseudobulk, in-silico bulk, ...) as log1p-CPM, one per
            row, unique names; ``obs[sample_key]`` names the single-cell sample each is
            paired with (absent: the row name), ``obs[cohort_key]`` its cohort.
        similarity
            Output of :func:`~cellbridge.poppy.sample_similarity`: ``obsp[similarity_key]``
            over either the bulk profiles or the single-cell samples.
        checkpoint_dir
            Lightning checkpoints (``last.ckpt`` after every epoch); ``None`` = none kept.
        resume
            Continue from ``checkpoint_dir/last.ckpt`` if present; the result equals an
            uninterrupted run.
        progress
            Show a progress bar.
        callbacks
            Extra Lightning callbacks.
        """
        cfg = self.config
        if cfg.cell_key is None and isinstance(cells, AnnData) and self.standin is None:
            self.standin = PCAStandIn.fit(cells, n_pcs=cfg.n_pcs, seed=cfg.seed)
        if cfg.bulk_key is None and self.token_encoder is None:
            if not isinstance(cells, AnnData):
                raise InputError(
                    "token_encoder",
                    "needed when cells come from a CellStore (it holds no expression)",
                    fix="pass token_encoder=ScaledGeneEmbeddings(table) or set bulk_key",
                )
            self.token_encoder = ScaledGeneEmbeddings.from_reference(
                cells, n_components=cfg.n_gene_components, seed=cfg.seed
            )
        source = cell_source(cells, cfg, self.standin)
        inputs, tokens, bulk_source = bulk_inputs(bulk, cfg, self.token_encoder)
        paired = paired_samples(bulk, cfg)
        _check_paired(paired, source)
        groups = sampler_groups(bulk, cfg)
        S = expand_similarity(similarity, paired.index, paired, key=cfg.similarity_key)
        train_idx, val_idx = self._split(paired)

        def batches(idx: np.ndarray, fixed: int | None) -> tuple[PairBatches, NumberedBatches]:
            sub = S[idx][:, idx]
            data = PairBatches(
                source,
                paired.to_numpy()[idx].tolist(),
                inputs[idx],
                tokens,
                sub.tocsr(),
                max_cells=cfg.max_cells,
                seed=cfg.seed if fixed is None else cfg.seed + 1,
            )
            B = min(cfg.batch_size, idx.size)
            # Fallbacks on the small fixed validation set are expected: logged, not warned.
            sampler = CrossCohortSampler(sub, groups[idx], B, seed=cfg.seed, warn=fixed is None)
            return data, NumberedBatches(sampler, fixed_epoch=fixed)

        self.net = _new_net(cfg, source.dim, int(tokens(inputs[:1]).shape[-1]))
        _fit_standardize(
            self.net, source, paired.to_numpy()[train_idx], inputs[train_idx], tokens, cfg
        )
        self.sources = {"cells": source.source, "bulk": bulk_source}
        log.info(
            "POPPY: %d profiles (%d train, %d validation); cells: %s; bulk: %s",
            len(paired),
            train_idx.size,
            val_idx.size,
            source.source,
            bulk_source,
        )
        self.history = train_alignment(
            self.net,
            cfg,
            batches(train_idx, None),
            batches(val_idx, 0) if val_idx.size else None,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
            resume=resume,
            progress=progress,
            callbacks=callbacks,
        )
        self.net.eval()
        return self

    def _split(self, paired: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Hold out ``val_fraction`` of the single-cell samples, all their profiles with them."""
        cfg = self.config
        samples = np.asarray(sorted(set(paired)))
        n_val = round(cfg.val_fraction * samples.size)
        if cfg.val_fraction > 0 and n_val < 2:
            # A contrastive batch needs two samples; round a small fraction up to that.
            log.info("validation: %d samples (val_fraction rounds below 2)", 2)
            n_val = 2
        rng = np.random.default_rng([cfg.seed, 7])
        held = set(rng.permutation(samples)[:n_val].tolist()) if n_val else set()
        is_val = paired.isin(held).to_numpy()
        train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        if train_idx.size < 2 or (n_val and val_idx.size < 2):
            raise InputError(
                "val_fraction",
                f"leaves {train_idx.size} training and {val_idx.size} validation profiles; "
                "each needs at least 2",
                values=[cfg.val_fraction],
                fix="use more samples, or val_fraction=0 to train without validation",
            )
        if 0 < n_val < SMALL_VALIDATION:
            log.warning(
                "validation on %d samples: early stopping on so few is noisy (on 4 of 40 "
                "patients the loss rose from epoch 1 while held-out metrics improved); "
                "consider val_fraction=0 with a fixed max_epochs",
                n_val,
            )
        self.split = {
            "train": sorted(set(samples) - held),
            "validation": sorted(held),
        }
        return train_idx, val_idx

    # ------------------------------------------------------------------ embedding
    def _fitted(self) -> POPPYNet:
        if self.net is None:
            raise InputError("model", "is not fitted", fix="call .fit(...) or POPPY.load(path)")
        return self.net

    @torch.no_grad()
    def embed_bulk(
        self, bulk: AnnData, *, key_added: str = "X_poppy", batch_size: int = 256
    ) -> np.ndarray:
        """Bulk patient embeddings :math:`z_b`, written to ``bulk.obsm[key_added]``.

        Returns the ``(n_profiles, d)`` float32 array (unit rows) as well.
        """
        net = self._fitted().eval()
        inputs, tokens, _ = bulk_inputs(bulk, self.config, self.token_encoder)
        z = encode_bulk(net.bulk_encoder, inputs, tokens, batch_size=batch_size).numpy()
        bulk.obsm[key_added] = z
        return z

    @torch.no_grad()
    def embed_cells(
        self,
        cells: AnnData | CellStore,
        *,
        key_added: str = "X_poppy",
        max_cells: int | None = None,
        attention_key: str | None = "poppy_attention",
        seed: int = 0,
    ) -> AnnData:
        """Cell-set embeddings :math:`z_c`, one per single-cell sample.

        Parameters
        ----------
        cells
            AnnData (``obs[sample_key]``, the cell embedding) or a cell store.
        key_added
            ``obsm`` key of the embeddings in the returned AnnData.
        max_cells
            Cells per sample to pool (seeded draw); ``None`` = all cells.
        attention_key
            With an AnnData and ``max_cells=None``: ``cells.obs`` column receiving each
            cell's attention weight :math:`a_i` within its sample (Eq. 2); ``None`` = skip.
        seed
            Seed of the draw when ``max_cells`` is set.

        Returns
        -------
        anndata.AnnData
            Samples x 0 genes; ``obsm[key_added]`` (unit rows), ``obs["n_cells"]`` and the
            per-sample-constant columns of ``cells.obs`` (e.g. cohort).
        """
        net = self._fitted().eval()
        source = cell_source(cells, self.config, self.standin)
        check_cell_dim(source, net.cell_encoder.pool.score.in_features)
        rng = np.random.default_rng(seed)
        z, counts = [], []
        keep = isinstance(cells, AnnData) and max_cells is None and attention_key is not None
        attention = np.full(cells.n_obs, np.nan) if keep and isinstance(cells, AnnData) else None
        for sample in source.samples:
            x = source.draw(sample, max_cells, rng)
            z_s, alpha = net.cell_encoder(torch.from_numpy(x)[None])
            z.append(z_s[0].numpy())
            counts.append(x.shape[0])
            if attention is not None and hasattr(source, "rows"):
                attention[source.rows(sample)] = alpha[0].numpy()
        obs = pd.DataFrame({"n_cells": counts}, index=pd.Index(source.samples, name="sample"))
        if isinstance(cells, AnnData):
            obs = obs.join(_sample_constant_obs(cells, self.config.sample_key))
            if attention is not None and attention_key is not None:
                cells.obs[attention_key] = attention
        out = AnnData(obs=obs)
        out.obsm[key_added] = np.stack(z).astype(np.float32)
        out.uns["cellbridge"] = {"cell_source": source.source}
        return out

    @torch.no_grad()
    def baseline_bulk(self, bulk: AnnData) -> np.ndarray:
        """The frozen bulk encoder *without* alignment: mean-pooled tokens (POPPY's baseline).

        For gene tokens :math:`H` this is :math:`\\frac{1}{m}\\sum_g H_g`; for a
        precomputed ``bulk_key`` embedding it is that embedding.
        """
        inputs, tokens, _ = bulk_inputs(bulk, self.config, self.token_encoder)
        return mean_tokens(inputs, tokens)

    def unaligned(self) -> POPPY:
        """The same model *before* alignment: the seeded initial heads, untrained.

        Same frozen encoders, same input standardisation, the weights ``fit`` started
        from; the "without alignment" baseline for recall@k (POPPY §3.3).
        """
        net = self._fitted()
        other = POPPY(self.config, token_encoder=self.token_encoder)
        other.standin, other.sources = self.standin, dict(self.sources)
        fresh = _new_net(
            self.config,
            net.cell_encoder.pool.score.in_features,
            net.bulk_encoder.pool.score.in_features,
        )
        fresh.cell_encoder.standardize.load_state_dict(net.cell_encoder.standardize.state_dict())
        fresh.bulk_encoder.standardize.load_state_dict(net.bulk_encoder.standardize.state_dict())
        other.net = fresh.eval()
        return other

    # ------------------------------------------------------------------ stage 2
    def finetune(
        self,
        bulk: AnnData,
        atlas: AnnData,
        config: PhenotypeConfig | None = None,
        *,
        progress: bool = True,
    ) -> POPPY:
        """Stage 2: fit the phenotype head over a reference atlas (§2.2.5); returns ``self``.

        Each bulk profile's embedding :math:`z_b` queries the atlas cells:
        :math:`q = W_Q z_b`, :math:`k^{(i)} = W_K x^{(i)}`,
        :math:`\\alpha_i = \\mathrm{softmax}_i(q^\\top k^{(i)} / \\tau_{ft})`,
        :math:`v_i = W_V x^{(i)}`, :math:`\\hat y = \\sum_i \\alpha_i v_i + b`, trained with
        binary cross-entropy. The cell encoder stays frozen; the bulk encoder is a
        fine-tuned copy (``config.finetune_bulk``), so :meth:`embed_bulk` is unchanged.

        Parameters
        ----------
        bulk
            Labelled bulk profiles (log1p-CPM, like stage 1) with ``obs[label_key]`` 0/1.
        atlas
            The reference cells, with the same frozen cell embedding as stage 1
            (``obsm[cell_key]``, or expression for the PCA stand-in); their ``obs`` is kept
            for :meth:`attribute`.
        config
            Options (:class:`PhenotypeConfig`).
        progress
            Show the progress bar.
        """
        self._fitted()
        self.phenotype = finetune(self, bulk, atlas, config or PhenotypeConfig(), progress=progress)
        return self

    def _finetuned(self) -> FineTuned:
        if self.phenotype is None:
            raise InputError(
                "model", "has no phenotype head", fix="call .finetune(bulk, atlas) first"
            )
        return self.phenotype

    def predict_phenotype(
        self, bulk: AnnData, *, key_added: str | None = "poppy_phenotype"
    ) -> np.ndarray:
        """Predicted probability of phenotype 1 per profile: :math:`\\sigma(\\hat y)`.

        Written to ``bulk.obs[key_added]`` unless ``key_added`` is ``None``.
        """
        logits = self._finetuned().logits(self, bulk)
        prob = 1.0 / (1.0 + np.exp(-logits))
        if key_added is not None:
            bulk.obs[key_added] = prob
        return prob

    def phenotype_attention(self, bulk: AnnData) -> np.ndarray:
        """``(profiles, reference cells)`` attention :math:`\\alpha` (rows sum to 1)."""
        return self._finetuned().attention(self, bulk)

    def attribute(self, bulk: AnnData, *, label_key: str | None = None) -> pd.DataFrame:
        """Per-cell attribution of the bulk predictions to the reference cells (§3.5).

        Parameters
        ----------
        bulk
            Profiles whose attention is aggregated (e.g. one cohort's tumours).
        label_key
            ``obs`` column of ``bulk`` with 0/1 labels; when given, the responder score is
            computed. Default: the label key the head was trained with, when present.

        Returns
        -------
        pandas.DataFrame
            One row per reference cell (the atlas ``obs`` kept at fine-tuning) plus:
            ``value`` (:math:`v_i`), ``mean_attention`` (mean :math:`\\alpha_i` over the
            profiles) and, with labels, ``attention_1`` / ``attention_0`` (mean over the
            profiles labelled 1 / 0) and ``responder_score`` =
            ``attention_1 / (attention_1 + attention_0)``: above 0.5 when profiles of
            class 1 attend to the cell more than those of class 0 (the scale of MELD's
            likelihood, Figure 4c).
        """
        tuned = self._finetuned()
        alpha = tuned.attention(self, bulk)
        out = tuned.reference_obs.copy()
        out["value"] = tuned.head.cell_values(tuned.reference)[:, 0].numpy()
        out["mean_attention"] = alpha.mean(axis=0)
        key = label_key if label_key is not None else tuned.config.label_key
        if label_key is not None or key in bulk.obs:
            y = binary_labels(bulk, key).astype(bool)
            a1, a0 = alpha[y].mean(axis=0), alpha[~y].mean(axis=0)
            out["attention_1"], out["attention_0"] = a1, a0
            out["responder_score"] = a1 / (a1 + a0)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to the directory ``path`` (atomic)."""
        net = self._fitted()
        tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
        meta: dict[str, Any] = {
            "config": self.config.to_dict(),
            "cell_dim": net.cell_encoder.pool.score.in_features,
            "token_dim": net.bulk_encoder.pool.score.in_features,
            "sources": self.sources,
            "split": self.split,
            "history": asdict(self.history) if self.history is not None else None,
        }
        if self.standin is not None:
            meta["standin_genes"] = self.standin.genes
            tensors["standin.mean"] = torch.from_numpy(self.standin.mean)
            tensors["standin.components"] = torch.from_numpy(self.standin.components)
        if isinstance(self.token_encoder, ScaledGeneEmbeddings):
            meta["token_encoder"] = {
                "kind": "ScaledGeneEmbeddings",
                "genes": self.token_encoder.genes,
            }
            tensors["token_table"] = torch.from_numpy(np.array(self.token_encoder.table))
        elif self.token_encoder is not None:
            meta["token_encoder"] = {
                "kind": type(self.token_encoder).__name__,
                "genes": list(self.token_encoder.genes),
            }
        if self.phenotype is not None:
            meta["phenotype"], extra = self.phenotype.to_checkpoint()
            tensors.update(extra)
        return write_checkpoint(path, FORMAT, meta, tensors)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, token_encoder: GeneTokenEncoder | None = None
    ) -> POPPY:
        """Load a model written by :meth:`save`; refuses tampered or mismatched files.

        ``token_encoder`` is required when the model was trained with a custom encoder
        (its code cannot be stored); its genes must equal the recorded ones.
        """
        meta, tensors = read_checkpoint(path, FORMAT)
        try:
            config = POPPYConfig.from_dict(meta["config"], field="checkpoint config")
            model = cls(config, token_encoder=token_encoder)
            model.net = _new_net(config, int(meta["cell_dim"]), int(meta["token_dim"]))
            state = {k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")}
            model.net.load_state_dict(state, strict=True)
            model.sources = dict(meta.get("sources", {}))
            model.split = dict(meta.get("split", {}))
            if meta.get("history"):
                model.history = TrainingHistory(**meta["history"])
            if "standin.mean" in tensors:
                model.standin = PCAStandIn(
                    meta["standin_genes"],
                    tensors["standin.mean"].numpy(),
                    tensors["standin.components"].numpy(),
                )
            model.token_encoder = _restore_token_encoder(
                meta.get("token_encoder"), tensors, token_encoder
            )
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            # one line: torch's state-dict errors span several
            detail = " ".join(str(err).split())
            raise InputError("checkpoint", f"does not match its config: {detail}") from None
        model.net.eval()
        if meta.get("phenotype"):
            model.phenotype = FineTuned.from_checkpoint(meta["phenotype"], tensors, model.net)
        return model


def _new_net(cfg: POPPYConfig, cell_dim: int, token_dim: int) -> POPPYNet:
    """The initial network: a function of the config and input sizes only (seeded)."""
    torch.manual_seed(cfg.seed)
    return POPPYNet(
        cell_dim,
        token_dim,
        cfg.embedding_dim,
        hidden_dim=cfg.hidden_dim,
        dropout=cfg.dropout,
        temperature=cfg.temperature,
    )


def _restore_token_encoder(
    info: dict[str, Any] | None,
    tensors: dict[str, torch.Tensor],
    given: GeneTokenEncoder | None,
) -> GeneTokenEncoder | None:
    if info is None:
        return given
    if info["kind"] == "ScaledGeneEmbeddings" and given is None:
        table = pd.DataFrame(tensors["token_table"].numpy(), index=info["genes"])
        return ScaledGeneEmbeddings(table)
    if given is None:
        raise InputError(
            "token_encoder",
            f"the model was trained with a custom {info['kind']}; its code is not stored",
            fix="pass the same encoder: POPPY.load(path, token_encoder=...)",
        )
    if list(given.genes) != list(info["genes"]):
        raise InputError(
            "token_encoder",
            "genes differ from those the model was trained with",
            values=[len(given.genes), len(info["genes"])],
        )
    return given


def _fit_standardize(
    net: POPPYNet,
    source: CellSource,
    samples: np.ndarray,
    inputs: np.ndarray,
    tokens: Callable[[np.ndarray], np.ndarray],
    cfg: POPPYConfig,
) -> None:
    """Set both encoders' :class:`~cellbridge.nn.Standardize` from the training data.

    Statistics of the uniformly pooled frozen inputs: the mean cell embedding of each
    training sample (one seeded draw of ``max_cells``), the mean gene token of each
    training profile.
    """
    rng = np.random.default_rng([cfg.seed, 11])
    cell_means = np.stack(
        [source.draw(s, cfg.max_cells, rng).mean(axis=0) for s in sorted(set(samples))]
    )
    token_means = mean_tokens(inputs, tokens)
    net.cell_encoder.standardize.fit(torch.from_numpy(cell_means.astype(np.float32)))
    net.bulk_encoder.standardize.fit(torch.from_numpy(token_means.astype(np.float32)))


def _check_paired(paired: pd.Series, source: CellSource) -> None:
    known = set(source.samples)
    missing = sorted(set(paired) - known)
    if missing:
        raise InputError(
            "bulk.obs",
            "bulk profiles are paired with single-cell samples that have no cells",
            values=missing,
            fix="set bulk.obs[sample_key] to sample names present in the cells",
        )


def _sample_constant_obs(cells: AnnData, sample_key: str) -> pd.DataFrame:
    """Columns of ``cells.obs`` that take one value per sample, one row per sample."""
    obs = cells.obs
    grouped = obs.groupby(obs[sample_key].astype(str), observed=True, sort=False)
    constant = [c for c in obs.columns if c != sample_key and (grouped[c].nunique() <= 1).all()]
    return grouped[constant].first() if constant else pd.DataFrame(index=grouped.size().index)
