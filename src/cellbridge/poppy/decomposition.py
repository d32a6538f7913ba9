"""Expression-space decomposition of bulk profiles over the reference atlas (stage 2).

A bulk profile's normalised expression is, up to noise, the mixture of its cells'
normalised expression, weighted by the cells' share of the mRNA. Asking the phenotype
head's attention :math:`\\alpha` to reproduce that mixture,

.. math::

    \\mathcal{L}_{dec} = \\frac{\\lVert P(\\sum_i \\alpha_i c^{(i)}) - P(c_b) \\rVert^2}{s},

(:math:`c` = expression as fractions of the profile's total over the encoder's genes,
:math:`P` = each gene scaled to unit standard deviation over the reference cells, then
an affine projection onto the leading principal components of the scaled cell
fractions, :math:`s` = the cells' mean squared distance to their centroid in that
projection) ties the attention to what each profile is made of: a profile rich in a
cell type attends to that type. This is an option of cellbridge, not a term of POPPY
§2.2.5, whose objective alone leaves *which* cells a class attends to free (see the user
guide §5). Because :math:`P` is affine and :math:`\\sum_i \\alpha_i = 1`, projecting the
mixture equals mixing the projections, so only ``(N, n_components)`` features are pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from sklearn.decomposition import PCA

from cellbridge.errors import InputError

__all__ = ["ExpressionDecomposition", "expression_decomposition"]

# cells used to fit the projection; all reference cells are then projected
_FIT_CELLS = 20_000


@dataclass
class ExpressionDecomposition:
    """Projected expression of the reference cells and of the bulk profiles.

    Attributes
    ----------
    cells
        ``(N, n_components)`` float32 :math:`P(c^{(i)})` per reference cell.
    bulk
        ``(n_profiles, n_components)`` float32 :math:`P(c_b)` per bulk profile.
    scale
        :math:`s`, the reference cells' mean squared distance to their centroid.
    """

    cells: torch.Tensor
    bulk: torch.Tensor
    scale: float

    def loss(self, pooled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:math:`\\mathcal{L}_{dec}` averaged over a batch."""
        return ((pooled - target) ** 2).sum(dim=1).mean() / self.scale


def expression_decomposition(
    atlas: AnnData,
    bulk_expression: np.ndarray,
    rows: np.ndarray,
    genes: list[str],
    *,
    n_components: int = 200,
    seed: int = 0,
) -> ExpressionDecomposition:
    """Fractions of the bulk profiles and reference cells, projected by a PCA of the cells.

    Parameters
    ----------
    atlas
        The atlas, raw counts in ``X``, with every gene of ``genes`` in ``var_names``.
    bulk_expression
        ``(n_profiles, len(genes))`` bulk expression on a linear scale (counts, CPM or
        TPM; e.g. ``expm1`` of log1p-CPM), columns in ``genes`` order.
    rows
        The atlas rows of the reference cells.
    genes
        The bulk encoder's genes.
    n_components
        Principal components kept (fewer when the data has fewer). 200 keeps the
        T-cell subsets of pbmc68k apart; 50 blurred them (guide §5).
    seed
        Seeds the cells drawn to fit the PCA and its solver.
    """
    bulk_fraction = _fractions(np.asarray(bulk_expression, dtype=np.float64), "bulk")
    index = atlas.var_names.get_indexer(genes)
    if (index < 0).any():
        missing = [g for g, i in zip(genes, index, strict=True) if i < 0]
        raise InputError(
            "atlas.var_names",
            "lacks genes of the bulk encoder, needed to decompose bulk expression",
            values=missing,
            fix="pass the atlas with raw counts for the encoder's genes, or set "
            "reconstruction_space='embedding'",
        )
    X = atlas.X[rows][:, index]
    X = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, np.float64)
    cell_fraction = _fractions(X, "atlas.X")
    # genes scaled to unit standard deviation over the cells: a linear map, so mixtures
    # stay mixtures, and low-expressed markers (that tell T-cell subsets apart) are not
    # drowned by the few most expressed genes in the PCA
    weights = _inverse_std(cell_fraction)
    cell_fraction = (
        sp.csr_matrix(cell_fraction @ sp.diags(weights))
        if sp.issparse(cell_fraction)
        else cell_fraction * weights
    )
    bulk_fraction = bulk_fraction * weights
    rng = np.random.default_rng([seed, 23])
    fit_rows = rng.choice(len(rows), min(len(rows), _FIT_CELLS), replace=False)
    fit = cell_fraction[np.sort(fit_rows)]
    dense_fit = fit.toarray() if sp.issparse(fit) else fit
    k = int(min(n_components, dense_fit.shape[0] - 1, dense_fit.shape[1]))
    if k < 1:
        raise InputError("atlas", "needs at least two reference cells to decompose bulk")
    pca = PCA(n_components=k, random_state=seed).fit(dense_fit)
    cells = np.vstack(
        [_project(pca, cell_fraction[i : i + 8192]) for i in range(0, len(rows), 8192)]
    )
    centred = cells - cells.mean(axis=0)
    scale = float((centred**2).sum(axis=1).mean())
    return ExpressionDecomposition(
        cells=torch.from_numpy(cells.astype(np.float32)),
        bulk=torch.from_numpy(_project(pca, bulk_fraction).astype(np.float32)),
        scale=scale if scale > 0 else 1.0,
    )


def _inverse_std(X: np.ndarray | sp.csr_matrix) -> np.ndarray:
    """1 / standard deviation of each column; 0 for constant columns."""
    mean = np.asarray(X.mean(axis=0)).ravel()
    squares = sp.csr_matrix(X).multiply(X) if sp.issparse(X) else np.asarray(X) ** 2
    sd = np.sqrt(np.maximum(np.asarray(squares.mean(axis=0)).ravel() - mean**2, 0.0))
    return np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 0)


def _project(pca: PCA, block: np.ndarray | sp.csr_matrix) -> np.ndarray:
    dense = sp.csr_matrix(block).toarray() if sp.issparse(block) else np.asarray(block)
    return np.asarray(pca.transform(dense))


def _fractions(X: np.ndarray | sp.csr_matrix, field: str) -> np.ndarray | sp.csr_matrix:
    """Rows divided by their totals; refuses non-finite, negative or all-zero rows."""
    data = np.asarray(X.data if sp.issparse(X) else X)
    if not np.isfinite(data).all():
        raise InputError(field, "has NaN or infinite expression", fix="remove or fix them")
    if (data < 0).any():
        raise InputError(
            field,
            "has negative expression; the decomposition needs a linear scale",
            values=[float(data.min())],
            fix="pass counts, CPM or TPM (not log or scaled values)",
        )
    totals = np.asarray(X.sum(axis=1)).ravel()
    empty = np.flatnonzero(totals <= 0)
    if empty.size:
        raise InputError(
            field,
            "has rows with no expression over the encoder's genes (row numbers)",
            values=empty[:10].tolist(),
            fix="drop them before fine-tuning",
        )
    if sp.issparse(X):
        return sp.csr_matrix(sp.diags(1.0 / totals) @ X)
    return X / totals[:, None]
