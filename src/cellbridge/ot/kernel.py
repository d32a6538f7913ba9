"""kNN diffusion kernel with adaptive bandwidths — POPPY appendix A.2, Eq. 6."""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp

from cellbridge.errors import InputError

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
    D: np.ndarray,
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
        :func:`cellbridge.ot.pairwise_graph_emd`).
    k
        Number of nearest neighbours (paper: 100).
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
    D = _check_distances(D)
    n = D.shape[0]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError("k", f"must be a positive integer, got {k!r}")
    if symmetrize not in ("union", "intersection"):
        raise InputError("symmetrize", f"must be 'union' or 'intersection', got {symmetrize!r}")
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
    d, si, sj = D[i, j], sigma[i], sigma[j]
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
