"""From user objects (AnnData, CellStore) to the arrays POPPY trains and embeds on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from cellbridge._checks import looks_log_transformed, obs_labels, require_unique
from cellbridge.data import CellStore
from cellbridge.encoders import (
    GeneTokenEncoder,
    PCAStandIn,
    ScaledGeneEmbeddings,
    align_genes,
    bulk_embeddings,
    cell_embeddings,
)
from cellbridge.errors import InputError
from cellbridge.nn import BulkTokenEncoder
from cellbridge.poppy.config import POPPYConfig
from cellbridge.poppy.pairs import ArrayCells, CellSource, StoreCells

__all__ = [
    "bulk_inputs",
    "cell_source",
    "check_cell_dim",
    "encode_bulk",
    "mean_tokens",
    "paired_samples",
    "sampler_groups",
]


def cell_source(
    cells: AnnData | CellStore, config: POPPYConfig, standin: PCAStandIn | None
) -> CellSource:
    """Frozen cell embeddings grouped by sample, from an AnnData or a cell store.

    With ``config.cell_key = None`` the cells of an AnnData go through ``standin`` (the
    PCA fitted on the training cells), so new cells land in the same space.
    """
    if isinstance(cells, CellStore):
        return StoreCells(cells)
    if not isinstance(cells, AnnData):
        raise InputError(
            "cells",
            f"must be an AnnData or a cellbridge.data.CellStore, got {type(cells).__name__}",
        )
    if cells.n_obs == 0:
        raise InputError("cells", "has no cells")
    samples = obs_labels(cells, config.sample_key, field="sample_key").astype(str)
    if config.cell_key is not None:
        embedding, source = cell_embeddings(cells, obsm_key=config.cell_key)
    else:
        if standin is None:
            raise InputError(
                "cell_key",
                "is None (PCA stand-in) but the model has no fitted stand-in",
                fix="fit the model first, or set cell_key to an obsm embedding",
            )
        embedding, source = standin.transform(cells), standin.source
    return ArrayCells(embedding, samples.to_numpy(), source)


def check_cell_dim(source: CellSource, expected: int) -> None:
    """Refuse cell embeddings of another width than the cell encoder was trained on."""
    if source.dim != expected:
        raise InputError(
            "cells",
            f"{source.source} has {source.dim} dimensions; the cell encoder was trained on "
            f"{expected}",
            values=[source.dim],
            fix="pass the same frozen cell embedding (obsm[cell_key]) as at training",
        )


def paired_samples(bulk: AnnData, config: POPPYConfig) -> pd.Series:
    """The single-cell sample each bulk profile is paired with (by name).

    ``bulk.obs[sample_key]`` when present, else the profile's own name.
    """
    if config.sample_key in bulk.obs:
        paired = obs_labels(bulk, config.sample_key, field="sample_key").astype(str)
    else:
        paired = pd.Series(bulk.obs_names.astype(str), index=bulk.obs_names)
    return pd.Series(paired.to_numpy(), index=bulk.obs_names.astype(str), name="sample")


def sampler_groups(bulk: AnnData, config: POPPYConfig) -> np.ndarray:
    """Cohort (x assay when ``assay_key`` is set) of every bulk profile, for the sampler."""
    groups = obs_labels(bulk, config.cohort_key, field="cohort_key").astype(str).to_numpy()
    if config.assay_key is not None:
        assays = obs_labels(bulk, config.assay_key, field="assay_key").astype(str).to_numpy()
        groups = np.asarray([f"{c} | {a}" for c, a in zip(groups, assays, strict=True)])
    return groups


def bulk_inputs(
    bulk: AnnData, config: POPPYConfig, encoder: GeneTokenEncoder | None
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], str]:
    """Per-profile inputs of the bulk encoder and the frozen map from them to tokens.

    Returns
    -------
    inputs
        ``(n, genes)`` expression aligned to ``encoder.genes``, or ``(n, d)`` precomputed
        embeddings when ``config.bulk_key`` is set.
    tokens
        Maps a block of ``inputs`` to ``(n, tokens, d_b)`` float32 tokens (frozen).
    source
        What the bulk encoder is, for reports.
    """
    if not isinstance(bulk, AnnData):
        raise InputError("bulk", f"must be an AnnData, got {type(bulk).__name__}")
    if bulk.n_obs == 0:
        raise InputError("bulk", "has no profiles")
    require_unique(bulk.obs_names, "bulk.obs_names", what="profile names")
    if config.bulk_key is not None:
        embedding, source = bulk_embeddings(bulk, obsm_key=config.bulk_key)
        return np.asarray(embedding, dtype=np.float32), _single_token, source
    if encoder is None:
        raise InputError(
            "token_encoder",
            "no gene-token encoder",
            fix="fit on cells given as AnnData (tokens learned from them), pass token_encoder=, "
            "or set bulk_key",
        )
    matrix, _ = align_genes(bulk, encoder)
    if isinstance(encoder, ScaledGeneEmbeddings) and not looks_log_transformed(
        matrix, log1p_marked="log1p" in bulk.uns
    ):
        raise InputError(
            "bulk.X",
            "looks like counts (integers, or values above 50); the gene tokens expect "
            "log1p-CPM, max value",
            values=[float(matrix.max())],
            fix="normalise first: cellbridge.data.log1p_cpm(bulk)",
        )
    return matrix.astype(np.float32), _Tokens(encoder), f"gene tokens: {type(encoder).__name__}"


def _single_token(x: np.ndarray) -> np.ndarray:
    """A precomputed bulk embedding as one token: pooling over one token is the identity."""
    return np.ascontiguousarray(x[:, None, :], dtype=np.float32)


class _Tokens:
    """Picklable ``encoder.tokens`` as float32 (DataLoader workers pickle the dataset)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.encoder.tokens(x), dtype=np.float32)


@torch.no_grad()
def encode_bulk(
    encoder: BulkTokenEncoder,
    inputs: np.ndarray,
    tokens: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """:math:`z_b` of every profile, the frozen tokens built ``batch_size`` profiles at a
    time (so the ``(profiles, genes, d_b)`` token tensor is never whole)."""
    encoder.eval()
    parts = [
        encoder(torch.from_numpy(tokens(inputs[i : i + batch_size])))[0]
        for i in range(0, inputs.shape[0], batch_size)
    ]
    return torch.cat(parts)


def mean_tokens(
    inputs: np.ndarray, tokens: Callable[[np.ndarray], np.ndarray], *, batch_size: int = 256
) -> np.ndarray:
    """Each profile's mean frozen token (uniform pooling), ``batch_size`` profiles at a time."""
    return np.concatenate(
        [tokens(inputs[i : i + batch_size]).mean(axis=1) for i in range(0, len(inputs), batch_size)]
    )
