"""The PCA stand-in as a fitted, reusable frozen encoder.

:func:`cellbridge.encoders.cell_embeddings` computes a one-off PCA; a trained model needs
the *same* projection for new cells, so :class:`PCAStandIn` keeps the fitted genes, mean
and components and applies them by gene name. scikit-learn does the fitting; this class
only stores its arrays so that a checkpoint can hold them as safetensors, not a pickle.
"""

from __future__ import annotations

import logging

import numpy as np
from anndata import AnnData
from sklearn.decomposition import PCA

from cellbridge._checks import require_finite, require_unique
from cellbridge.encoders.embeddings import log_normalised
from cellbridge.errors import InputError

__all__ = ["PCAStandIn"]

log = logging.getLogger(__name__)


class PCAStandIn:
    """PCA of log-normalised expression, fitted once and applied to any cells by gene name.

    Parameters
    ----------
    genes
        Gene names the PCA was fitted on (unique).
    mean
        ``(genes,)`` per-gene mean subtracted before projecting.
    components
        ``(n_pcs, genes)`` principal axes.

    Notes
    -----
    A stand-in for a foundation-model cell embedding (see
    :func:`cellbridge.encoders.cell_embeddings`); :attr:`source` says so, and every
    output built on it repeats it.
    """

    def __init__(self, genes: list[str], mean: np.ndarray, components: np.ndarray) -> None:
        require_unique(genes, "genes", what="gene names")
        mean = np.asarray(mean, dtype=np.float32)
        components = np.asarray(components, dtype=np.float32)
        if mean.shape != (len(genes),) or components.ndim != 2 or components.shape[1] != len(genes):
            raise InputError(
                "components",
                f"shapes do not match {len(genes)} genes",
                values=[mean.shape, components.shape],
            )
        require_finite(mean, "mean")
        require_finite(components, "components")
        self.genes = [str(g) for g in genes]
        self.mean = mean
        self.components = components

    @property
    def dim(self) -> int:
        """Number of components."""
        return int(self.components.shape[0])

    @property
    def source(self) -> str:
        """What the embedding is, for reports."""
        return (
            f"PCA stand-in ({self.dim} PCs of log-normalised expression), "
            "not a foundation-model embedding"
        )

    @classmethod
    def fit(
        cls, adata: AnnData, *, n_pcs: int = 50, layer: str | None = None, seed: int = 0
    ) -> PCAStandIn:
        """Fit scikit-learn ``PCA(n_pcs, svd_solver="arpack")`` on ``adata``'s cells.

        The input goes through :func:`cellbridge.encoders.log_normalised` (counts are
        normalised to 1e4 per cell and log1p-transformed; log-normalised input is kept).
        """
        require_unique(adata.var_names, "adata.var_names", what="gene names")
        limit = min(adata.n_obs, adata.n_vars)
        if isinstance(n_pcs, bool) or not isinstance(n_pcs, int) or not 1 <= n_pcs < limit:
            raise InputError(
                "n_pcs",
                f"must be an integer in [1, min(n_obs, n_vars) = {limit})",
                values=[n_pcs],
                fix="lower n_pcs, or pass a foundation-model embedding as an obsm key",
            )
        X = log_normalised(adata, layer=layer)
        pca = PCA(n_components=n_pcs, svd_solver="arpack", random_state=seed).fit(X)
        log.info("PCA stand-in fitted: %d PCs on %d cells", n_pcs, adata.n_obs)
        return cls(list(adata.var_names.astype(str)), pca.mean_, pca.components_)

    def transform(self, adata: AnnData, *, layer: str | None = None) -> np.ndarray:
        """Project ``adata``'s cells; its genes must include every fitted gene.

        Raises
        ------
        InputError
            Fitted genes missing from ``adata.var_names`` (the first are listed).
        """
        names = adata.var_names.astype(str)
        require_unique(names, "adata.var_names", what="gene names")
        position = {g: i for i, g in enumerate(names)}
        missing = [g for g in self.genes if g not in position]
        if missing:
            raise InputError(
                "adata.var_names",
                f"{len(missing)} of the {len(self.genes)} genes the PCA stand-in was fitted "
                "on are missing",
                values=missing,
                fix="pass cells measured on the same genes as the training cells",
            )
        # Normalise over all measured genes first, then select: library sizes must not
        # depend on which genes the PCA happens to use.
        X = log_normalised(adata, layer=layer)[:, [position[g] for g in self.genes]]
        dense = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
        return ((dense - self.mean) @ self.components.T).astype(np.float32)
