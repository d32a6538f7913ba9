"""Frozen embedding sources: an ``obsm`` key from a foundation model, or the PCA stand-in.

POPPY (§2.2.1, §3.2) pools *frozen* pretrained cell embeddings (TranscriptFormer in the
paper). Any foundation model that writes its embedding into ``obsm`` plugs in here; where
none is present, a documented stand-in (PCA of log-normalised expression) is used and its
source string says so, so that reports never pass the stand-in off as an FM embedding.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from sklearn.decomposition import PCA

from cellbridge._checks import expression_matrix, is_integer, looks_log_transformed, require_finite
from cellbridge.errors import InputError

__all__ = ["bulk_embeddings", "cell_embeddings", "log_normalised"]

log = logging.getLogger(__name__)

# scanpy's customary normalise_total target for single-cell counts.
_TARGET_SUM = 1e4


def log_normalised(adata: AnnData, *, layer: str | None = None) -> sp.csr_matrix | np.ndarray:
    r"""Log-normalised expression of ``adata``, computed only when it holds counts.

    - Integer values (raw counts): :math:`\log(1 + 10^4 \, x_{ig} / \sum_g x_{ig})`, i.e.
      scanpy's ``normalize_total(target_sum=1e4)`` then ``log1p``.
    - ``uns["log1p"]`` set (scanpy's mark), or non-integer values all below 50: already
      log-normalised, returned as they are.
    - Anything else (negative, e.g. scaled data; non-integer values above 50, e.g. TPM or
      CPM without log) is refused: guessing its transform would be silent.

    Parameters
    ----------
    adata
        Cells (or samples) x genes.
    layer
        Layer to read instead of ``adata.X``.

    Returns
    -------
    CSR matrix when the input is sparse, else a dense float array.
    """
    field = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    X = expression_matrix(adata, layer)
    values = require_finite(
        X,
        field,
        non_negative=True,
        negative_fix="pass counts or log-normalised expression, not scaled/centred data",
    )
    if looks_log_transformed(values, log1p_marked="log1p" in adata.uns):
        return X
    if not is_integer(values):
        raise InputError(
            field,
            f"non-integer values up to {float(values.max()):.3g} are neither counts nor "
            "log-normalised",
            fix="pass raw counts (e.g. layer='counts') or log1p-normalised expression",
        )
    Xf = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, np.float64)
    totals = np.asarray(Xf.sum(axis=1)).ravel()
    empty = np.flatnonzero(totals == 0)
    if empty.size:
        raise InputError(
            field,
            f"{empty.size} rows with zero total counts cannot be normalised, e.g.",
            values=adata.obs_names[empty].tolist(),
            fix="remove empty cells first (e.g. scanpy.pp.filter_cells(adata, min_counts=1))",
        )
    scale = _TARGET_SUM / totals
    if sp.issparse(Xf):
        out = sp.csr_matrix(sp.diags(scale) @ Xf)
        out.data = np.log1p(out.data)
        return out
    return np.log1p(Xf * scale[:, None])


def _obsm_array(adata: AnnData, obsm_key: str, *, hint: str = "") -> np.ndarray:
    if obsm_key not in adata.obsm:
        raise InputError(
            "obsm_key",
            "not in adata.obsm",
            values=[obsm_key],
            fix=f"use one of {list(adata.obsm.keys())}{hint}",
        )
    raw = adata.obsm[obsm_key]
    if sp.issparse(raw):
        raise InputError(
            f"adata.obsm[{obsm_key!r}]",
            "is sparse; embeddings are dense",
            fix="store the embedding as a dense array",
        )
    array = np.asarray(raw.to_numpy() if hasattr(raw, "to_numpy") else raw)
    field = f"adata.obsm[{obsm_key!r}]"
    if array.ndim != 2 or array.shape[1] == 0:
        raise InputError(field, f"must be 2-D (n_obs x dim), got shape {array.shape}")
    require_finite(array, field)
    return array


def cell_embeddings(
    adata: AnnData,
    *,
    obsm_key: str | None = None,
    n_pcs: int = 50,
    layer: str | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """The frozen per-cell embedding :math:`x_c^{(i)}` that POPPY pools (Eq. 2, §2.2.1).

    Parameters
    ----------
    adata
        Cells x genes.
    obsm_key
        Key of a foundation-model embedding in ``adata.obsm`` (scGPT ``X_scGPT``,
        TranscriptFormer ``embeddings``, BMFM ``X_bmfm``, scVI ``X_scVI``). The array is
        returned exactly as stored.
    n_pcs
        Components of the stand-in, used only when ``obsm_key`` is None.
    layer
        Expression layer for the stand-in (default ``adata.X``); see :func:`log_normalised`
        for how counts and log-normalised input are told apart.
    seed
        Seed of the stand-in's ARPACK start vector.

    Returns
    -------
    embedding
        ``(n_obs, dim)`` array.
    source
        What the embedding is, to print next to any result built on it.

    Notes
    -----
    The stand-in is scikit-learn ``PCA(n_pcs, svd_solver="arpack", random_state=seed)`` of
    the log-normalised expression (centred per gene, not scaled). It keeps the pipeline
    runnable without a foundation model; it is **not** one, and the source string says so.
    """
    if obsm_key is not None:
        array = _obsm_array(adata, obsm_key, hint=" (or obsm_key=None for the PCA stand-in)")
        return array, f"obsm[{obsm_key!r}]"
    X = log_normalised(adata, layer=layer)
    limit = min(adata.n_obs, adata.n_vars)
    if isinstance(n_pcs, bool) or not isinstance(n_pcs, int) or not 1 <= n_pcs < limit:
        raise InputError(
            "n_pcs",
            f"must be an integer in [1, min(n_obs, n_vars) = {limit})",
            values=[n_pcs],
            fix="lower n_pcs, or pass a foundation-model embedding via obsm_key",
        )
    pca = PCA(n_components=n_pcs, svd_solver="arpack", random_state=seed)
    embedding = np.asarray(pca.fit_transform(X))
    log.info("cell embedding: PCA stand-in with %d components (no obsm_key given)", n_pcs)
    source = (
        f"PCA stand-in ({n_pcs} PCs of log-normalised expression), not a foundation-model embedding"
    )
    return embedding, source


def bulk_embeddings(adata: AnnData, *, obsm_key: str) -> tuple[np.ndarray, str]:
    """A precomputed per-sample bulk embedding from ``adata.obsm`` (POPPY §2.2.2, §3.2).

    For a bulk foundation model (e.g. BulkFormer) that already pools its gene tokens into
    one vector per sample. Such a vector skips the gene-token attention of Eq. 2; use a
    :class:`~cellbridge.encoders.GeneTokenEncoder` to keep it.

    Parameters
    ----------
    adata
        Samples x genes.
    obsm_key
        Key of the embedding in ``adata.obsm``.

    Returns
    -------
    embedding
        ``(n_obs, dim)`` array, exactly as stored.
    source
        ``"obsm['<key>']"``.
    """
    return _obsm_array(adata, obsm_key), f"obsm[{obsm_key!r}]"
