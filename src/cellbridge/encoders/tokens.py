"""Frozen gene-token encoders for bulk profiles: the matrix H of POPPY §2.2.2.

A bulk profile :math:`x_b \\in \\mathbb{R}^{m_b}` becomes gene tokens
:math:`H \\in \\mathbb{R}^{m_b \\times d_b}` that :class:`cellbridge.nn.BulkTokenEncoder`
pools with Eq. 2. Any model with gene-level outputs (BulkFormer, TranscriptFormer in the
paper, §3.2) plugs in through :class:`GeneTokenEncoder`; :class:`ScaledGeneEmbeddings` is
the dependency-free default.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from sklearn.decomposition import PCA

from cellbridge._checks import require_finite, require_unique
from cellbridge.encoders.embeddings import log_normalised
from cellbridge.errors import InputError

__all__ = ["GeneTokenEncoder", "ScaledGeneEmbeddings", "align_genes"]

log = logging.getLogger(__name__)


@runtime_checkable
class GeneTokenEncoder(Protocol):
    """What the bulk side of POPPY needs from a frozen pretrained gene-level model.

    Attributes
    ----------
    genes
        The genes the encoder embeds, in the column order ``tokens`` expects.
    dim
        ``d_b``, the size of one gene token.
    """

    @property
    def genes(self) -> Sequence[str]: ...

    @property
    def dim(self) -> int: ...

    def tokens(self, expression: np.ndarray) -> np.ndarray:
        """Map ``(samples, len(genes))`` expression to ``(samples, len(genes), dim)`` tokens."""
        ...


class ScaledGeneEmbeddings:
    r"""Gene tokens as frozen gene embeddings scaled by expression: :math:`H_g = x_g e_g`.

    The default :class:`GeneTokenEncoder`. With uniform attention, pooling these tokens
    gives :math:`\frac{1}{m_b}\sum_g x_g e_g`, a linear projection of the profile onto the
    gene table; Eq. 2's learned attention re-weights genes before that projection.

    Parameters
    ----------
    gene_table
        Genes (index, unique names) x ``dim`` (columns) of finite numbers. Stored as float32.

    Notes
    -----
    ``expression`` passed to :meth:`tokens` is meant to be log1p-CPM of the bulk profile
    (``cellbridge.data.pseudobulk(..., normalize="log1p_cpm")`` or
    ``np.log1p(counts / counts.sum(1, keepdims=True) * 1e6)``), computed over all measured
    genes *before* :func:`align_genes` subsets them; raw counts would let a few highly
    expressed genes dominate every token.
    """

    def __init__(self, gene_table: pd.DataFrame) -> None:
        if not isinstance(gene_table, pd.DataFrame):
            raise InputError(
                "gene_table",
                f"must be a pandas DataFrame (genes x dim), got {type(gene_table).__name__}",
            )
        if gene_table.shape[0] == 0 or gene_table.shape[1] == 0:
            raise InputError("gene_table", f"is empty (shape {gene_table.shape})")
        require_unique(gene_table.index, "gene_table.index", what="gene names")
        self._genes = [str(g) for g in gene_table.index]
        require_unique(self._genes, "gene_table.index", what="gene names (as strings)")
        values = gene_table.to_numpy()
        require_finite(values, "gene_table")
        self._table = np.ascontiguousarray(values, dtype=np.float32)

    @property
    def genes(self) -> list[str]:
        """Gene names, in the column order :meth:`tokens` expects."""
        return list(self._genes)

    @property
    def dim(self) -> int:
        """Token size ``d_b``."""
        return int(self._table.shape[1])

    @property
    def table(self) -> np.ndarray:
        """The frozen ``(genes, dim)`` gene embeddings (a read-only view)."""
        view = self._table.view()
        view.flags.writeable = False
        return view

    def tokens(self, expression: np.ndarray) -> np.ndarray:
        """Gene tokens ``H[s, g] = expression[s, g] * table[g]`` (POPPY §2.2.2).

        Parameters
        ----------
        expression
            ``(samples, len(genes))`` log1p-CPM, columns aligned to :attr:`genes`
            (see :func:`align_genes`).

        Returns
        -------
        ``(samples, len(genes), dim)`` float32 array.
        """
        X = np.asarray(expression)
        if X.ndim != 2 or X.shape[1] != len(self._genes):
            raise InputError(
                "expression",
                f"must have shape (samples, {len(self._genes)}) aligned to encoder.genes, "
                f"got {X.shape}",
                fix="align it with cellbridge.encoders.align_genes(bulk, encoder)",
            )
        require_finite(X, "expression")
        return X.astype(np.float32)[:, :, None] * self._table[None, :, :]

    @classmethod
    def from_reference(
        cls,
        cells_adata: AnnData,
        *,
        n_components: int = 64,
        layer: str | None = None,
        seed: int = 0,
    ) -> ScaledGeneEmbeddings:
        """Learn the gene table once from a single-cell reference, as PCA loadings.

        Gene ``g`` is embedded as its row of the loadings ``V`` (genes x components) of a
        PCA of the reference's log-normalised expression (see
        :func:`cellbridge.encoders.log_normalised`). Then the uniformly pooled token,
        :math:`\\frac{1}{m}\\sum_g x_g V_g = \\frac{1}{m} x V`, is the bulk profile
        projected onto the single-cell axes of variation (uncentred), so bulk tokens start
        in a space shaped by cell types, the signal POPPY aligns. It is a stand-in for a
        foundation model's gene embeddings, with no dependency and no download.

        Parameters
        ----------
        cells_adata
            Cells x genes reference (counts or log-normalised).
        n_components
            ``d_b``; must be below ``min(n_cells, n_genes)``.
        layer
            Expression layer instead of ``X``.
        seed
            Seed of the ARPACK start vector.
        """
        require_unique(cells_adata.var_names, "cells_adata.var_names", what="gene names")
        limit = min(cells_adata.n_obs, cells_adata.n_vars)
        if (
            isinstance(n_components, bool)
            or not isinstance(n_components, int)
            or not 1 <= n_components < limit
        ):
            raise InputError(
                "n_components",
                f"must be an integer in [1, min(n_cells, n_genes) = {limit})",
                values=[n_components],
                fix="lower n_components",
            )
        X = log_normalised(cells_adata, layer=layer)
        pca = PCA(n_components=n_components, svd_solver="arpack", random_state=seed)
        pca.fit(X)
        table = pd.DataFrame(
            pca.components_.T,
            index=cells_adata.var_names.astype(str),
            columns=[f"PC{i + 1}" for i in range(n_components)],
        )
        return cls(table)


def align_genes(
    bulk_adata: AnnData,
    encoder: GeneTokenEncoder,
    *,
    layer: str | None = None,
    fill_missing: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Bulk expression with its columns matched by name to ``encoder.genes``.

    Parameters
    ----------
    bulk_adata
        Samples x genes (log1p-CPM for :class:`ScaledGeneEmbeddings`).
    encoder
        The frozen gene-token encoder.
    layer
        Expression layer instead of ``X``.
    fill_missing
        Encoder genes that the bulk data does not measure are refused by default, since a
        zero there would be read as "not expressed". With ``True`` they are filled with 0 and
        their count is logged; use the returned ``kept_genes`` to mask them out of the
        attention pooling.

    Returns
    -------
    matrix
        ``(n_samples, len(encoder.genes))`` float array, columns in ``encoder.genes`` order.
    kept_genes
        The encoder genes the bulk data measures, in ``encoder.genes`` order.

    Notes
    -----
    Bulk genes the encoder has no embedding for cannot become tokens; they are left out and
    their count is logged.
    """
    require_unique(bulk_adata.var_names, "bulk_adata.var_names", what="gene names")
    genes = pd.Index([str(g) for g in encoder.genes])
    require_unique(genes, "encoder.genes", what="gene names")
    bulk_genes = bulk_adata.var_names.astype(str)
    position = bulk_genes.get_indexer(genes)
    present = position >= 0
    if not present.any():
        raise InputError(
            "bulk_adata.var_names",
            "no gene in common with the encoder, e.g. bulk has",
            values=bulk_genes[:5].tolist(),
            fix=f"use the encoder's gene naming (e.g. {genes[:3].tolist()}); map symbols/IDs first",
        )
    missing = genes[~present]
    if missing.size and not fill_missing:
        raise InputError(
            "bulk_adata.var_names",
            f"{missing.size} of {genes.size} encoder genes are not measured, e.g.",
            values=missing.tolist(),
            fix="pass fill_missing=True to fill them with 0 and mask them with kept_genes",
        )
    if missing.size:
        log.info("align_genes: %d of %d encoder genes filled with 0", missing.size, genes.size)
    extra = int(bulk_genes.size - present.sum())
    if extra:
        log.info("align_genes: %d bulk genes have no encoder embedding and are left out", extra)
    field = "bulk_adata.X" if layer is None else f"bulk_adata.layers[{layer!r}]"
    if layer is not None and layer not in bulk_adata.layers:
        raise InputError(
            "layer", "not in bulk_adata.layers", values=[layer], fix="use layer=None for X"
        )
    X = bulk_adata.X if layer is None else bulk_adata.layers[layer]
    subset = X[:, position[present]]
    values = subset.toarray() if sp.issparse(subset) else np.asarray(subset)
    require_finite(values, field)
    matrix = np.zeros((bulk_adata.n_obs, genes.size), dtype=np.float64)
    matrix[:, present] = values
    return matrix, genes[present].tolist()
