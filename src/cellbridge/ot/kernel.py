"""kNN diffusion kernel with adaptive bandwidths — POPPY appendix A.2, Eq. 6."""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp

from cellbridge.errors import InputError
from cellbridge.ot.knn_emd import NeighbourDistances

__all__ = ["diffusion_kernel"]

log = logging.getLogger(__name__)


def _check_distances(D: np.ndarray) -> np.ndarray:
    D = np.asarray(D)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise InputError("D", f"must be a square distance matrix, got shape {D.shape}")
    if D.shape[0] == 0:
        raise InputError("D", "has no samples (a 0 x 0 matrix)", fix="pass at least one sample")
    if not np.issubdtype(D.dtype, np.number) or np.issubdtype(D.dtype, np.complexfloating):
        raise InputError("D", f"must be numeric, got dtype {D.dtype}")
    D = np.asarray(D, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(D))
    if bad.size:
        raise InputError("D", "contains NaN or infinite distances at", values=bad[:5].tolist())
    neg = np.argwhere(D < 0)
    if neg.size:
        raise InputError("D", "contains negative distances at", values=neg[:5].tolist())
    if not np.allclose(D, D.T, rtol=1e-10, atol=1e-12):
        i, j = np.unravel_index(np.argmax(np.abs(D - D.T)), D.shape)
        raise InputError(
            "D",
            f"is not symmetric (D[{i},{j}]={float(D[i, j])!r}, D[{j},{i}]={float(D[j, i])!r})",
            fix="pass the output of pairwise_graph_emd, which is symmetric",
        )
    diag = np.flatnonzero(np.diag(D) != 0)
    if diag.size:
        raise InputError("D", "has a non-zero diagonal at rows", values=diag.tolist())
    return D


def diffusion_kernel(
    D: np.ndarray | NeighbourDistances,
    *,
    k: int = 100,
    symmetrize: Literal["union", "intersection"] = "union",
) -> sp.csr_matrix:
    r"""Sparse similarity from distances: adaptive Gaussian on the kNN graph (POPPY Eq. 6).

    .. math::

        K_{ij} = \exp\!\left(-\frac{d_{ij}^2}{\sigma_i \sigma_j}\right)
        \quad \text{for } (i, j) \text{ joined in the kNN graph, else } 0,

    with :math:`\sigma_i` the distance from :math:`i` to its :math:`k`-th nearest neighbour
    (Coifman & Lafon 2006). The result is the soft-label matrix :math:`S` of POPPY §2.2.3.

    Choices where the paper is silent, all explicit:

    - **Neighbours** of :math:`i` are the other samples with :math:`d_{ij} \le \sigma_i`.
      Samples tied with the :math:`k`-th distance are all kept, so the graph does not
      depend on row order; a row can thus have more than ``k`` neighbours.
    - **Symmetrisation**: the kNN relation is not symmetric. ``"union"`` (default) joins
      :math:`i, j` when either is among the other's neighbours; ``"intersection"`` when
      both are. The formula is symmetric in :math:`i, j`, so the value is the same from
      either side and :math:`K` is symmetric.
    - **Diagonal**: :math:`K_{ii} = 1` (a sample is its own closest match; in POPPY the
      matched single-cell / bulk pair is the same sample).
    - **Zero bandwidth** (:math:`\sigma_i = 0`, when ``k`` or more other samples are at
      distance 0): the kernel is the limit of the formula, 1 where :math:`d_{ij} = 0` and
      0 where :math:`d_{ij} > 0`; no division by zero, no NaN.
    - **k >= N**: every other sample is a neighbour; ``k`` is set to ``N - 1`` with a
      warning (not silently).

    Parameters
    ----------
    D
        ``(N, N)`` symmetric distances with a zero diagonal (e.g. from
        :func:`cellbridge.ot.pairwise_graph_emd`), or only each sample's nearest ones
        (:func:`cellbridge.ot.knn_graph_emd`, for large ``N``): the kernel is the same.
    k
        Number of nearest neighbours (paper: 100). With :class:`NeighbourDistances` it
        must be the ``k`` they were found for.
    symmetrize
        How the asymmetric kNN relation becomes an undirected graph.

    Returns
    -------
    scipy.sparse.csr_matrix
        Symmetric, values in ``[0, 1]``, ones on the diagonal. Entries that evaluate to
        exactly 0 are not stored.

    Examples
    --------
    >>> import numpy as np
    >>> from cellbridge.ot import diffusion_kernel
    >>> D = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    >>> diffusion_kernel(D, k=1).toarray().round(3)
    array([[1.   , 0.368, 0.   ],
           [0.368, 1.   , 0.135],
           [0.   , 0.135, 1.   ]])
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError("k", f"must be a positive integer, got {k!r}")
    if symmetrize not in ("union", "intersection"):
        raise InputError("symmetrize", f"must be 'union' or 'intersection', got {symmetrize!r}")
    if isinstance(D, NeighbourDistances):
        return _kernel_from_neighbours(D, k=k, symmetrize=symmetrize)
    D = _check_distances(D)
    n = D.shape[0]
    if n == 1:
        return sp.csr_matrix(np.ones((1, 1)))
    if k >= n:
        msg = f"k={k} >= number of samples {n}: using k={n - 1} (every other sample)"
        warnings.warn(msg, UserWarning, stacklevel=2)
        log.warning(msg)
        k = n - 1
    off = D.copy()
    np.fill_diagonal(off, np.inf)
    sigma = np.partition(off, k - 1, axis=1)[:, k - 1]
    knn = off <= sigma[:, None]
    adjacency = knn | knn.T if symmetrize == "union" else knn & knn.T
    i, j = np.nonzero(adjacency)
    return _kernel(i, j, D[i, j], sigma, n)


def _kernel_from_neighbours(
    nn: NeighbourDistances, *, k: int, symmetrize: Literal["union", "intersection"]
) -> sp.csr_matrix:
    """Eq. 6 from each sample's neighbour distances: the same matrix as the dense path."""
    n = nn.n_samples
    if n == 1:
        return sp.csr_matrix(np.ones((1, 1)))
    if min(k, n - 1) != nn.k:
        raise InputError(
            "k",
            f"is {k}, but the neighbour distances were found for k={nn.k}",
            fix=f"pass k={nn.k}, or search again with knn_graph_emd(..., k={k})",
        )
    dist = nn.distances.tocsr()
    rows = np.repeat(np.arange(n), np.diff(dist.indptr))
    cols = dist.indices.astype(np.int64)
    # the kNN relation as a pattern (explicit zero distances included)
    knn = sp.csr_matrix((np.ones(cols.size, dtype=bool), (rows, cols)), shape=(n, n))
    adjacency = (knn + knn.T) if symmetrize == "union" else knn.multiply(knn.T)
    i, j = (a.astype(np.int64) for a in sp.triu(adjacency, k=0).nonzero())
    i, j = np.concatenate([i, j]), np.concatenate([j, i])
    # d_ij is stored in row i or row j (the same bits when in both: one orientation solved)
    keys = np.concatenate([rows * n + cols, cols * n + rows])
    values = np.concatenate([dist.data, dist.data])
    keys, first = np.unique(keys, return_index=True)
    d = values[first][np.searchsorted(keys, i * n + j)]
    return _kernel(i, j, d, nn.sigma, n)


def _kernel(
    i: np.ndarray, j: np.ndarray, d: np.ndarray, sigma: np.ndarray, n: int
) -> sp.csr_matrix:
    """Eq. 6 on the joined pairs ``(i, j)`` with distances ``d``, plus ones on the diagonal."""
    si, sj = sigma[i], sigma[j]
    vals = np.zeros_like(d)
    pos = (si > 0) & (sj > 0)
    # (d / si) * (d / sj), not d**2 / (si * sj): squares and products of tiny or huge
    # distances would under- or overflow and make K depend on the unit of D. An overflow
    # here is a ratio beyond 1e308, for which exp(-inf) = 0 is the right value.
    with np.errstate(over="ignore"):
        vals[pos] = np.exp(-(d[pos] / si[pos]) * (d[pos] / sj[pos]))
    vals[~pos & (d == 0)] = 1.0  # the sigma -> 0 limit; d > 0 stays 0
    K = sp.coo_matrix((vals, (i, j)), shape=(n, n)).tocsr()
    K = K + sp.identity(n, format="csr")
    K.eliminate_zeros()
    return K.tocsr()
