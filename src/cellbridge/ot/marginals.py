r"""BiRD's OT marginals (§3): :math:`a_i = 1/N` per cell, :math:`b_k = N_k / N` per drug."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from cellbridge._checks import require_unique
from cellbridge.errors import InputError

__all__ = ["LabelMarginals", "marginals_from_counts", "marginals_from_labels"]


def describe(x: object) -> str:
    """Type, shape and dtype of an argument, for error messages."""
    if isinstance(x, torch.Tensor | np.ndarray):
        return f"{type(x).__name__} of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def marginals_from_counts(
    counts: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The marginals of BiRD §3 from the number of cells of each drug in the batch.

    :math:`a_i = 1/N` for each of the :math:`N = \sum_\ell N_\ell` cells and
    :math:`b_k = N_k / N`. A drug with no cells gets :math:`b_k = 0` (no mass in the plan).

    Parameters
    ----------
    counts
        Cells of each drug in the batch: whole numbers >= 0, not all 0.
    dtype
        dtype of the marginals.
    device
        Device of the marginals (default: torch's current default).

    Returns
    -------
    tuple of torch.Tensor
        ``a`` of shape ``(N,)`` and ``b`` of shape ``(K,)``.

    Examples
    --------
    >>> from cellbridge.ot import marginals_from_counts
    >>> a, b = marginals_from_counts([3, 1])
    >>> a.tolist(), b.tolist()
    ([0.25, 0.25, 0.25, 0.25], [0.75, 0.25])
    """
    values = np.asarray(counts.detach().cpu() if isinstance(counts, torch.Tensor) else counts)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
        raise InputError("counts", f"must be a 1-D array of numbers, got {describe(counts)}")
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        raise InputError(
            "counts",
            "must be whole numbers >= 0 (cells per drug), got",
            values=values[bad][:5].tolist(),
        )
    n = int(values.sum())
    if n == 0:
        raise InputError("counts", "sum to 0: no cells", fix="give at least one cell")
    b = torch.as_tensor(values, dtype=dtype, device=device) / n
    return torch.full((n,), 1.0 / n, dtype=dtype, device=device), b


class LabelMarginals(NamedTuple):
    """What :func:`marginals_from_labels` returns.

    Attributes
    ----------
    a
        ``(N,)`` cell marginal, :math:`1/N`.
    b
        ``(K,)`` drug marginal, :math:`N_k / N`, in the order of ``drugs``.
    labels
        ``(N,)`` int64: the column :math:`k(i)` of each cell's drug.
    drugs
        The drug of each column.
    """

    a: torch.Tensor
    b: torch.Tensor
    labels: torch.Tensor
    drugs: list[object]


def marginals_from_labels(
    labels: Sequence[object] | np.ndarray | pd.Series,
    *,
    drugs: Sequence[object] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> LabelMarginals:
    r"""Marginals and cell -> drug columns from each cell's drug (BiRD §3, Eq. 3's :math:`k(i)`).

    Parameters
    ----------
    labels
        The drug of every cell in the batch (e.g. ``adata.obs["drug"]``).
    drugs
        The drug of every cost column, in column order; default: the distinct labels,
        sorted. Drugs without cells get :math:`b_k = 0`.
    dtype
        dtype of the marginals.
    device
        Device of the marginals and ``labels`` (default: torch's current default).

    Examples
    --------
    >>> from cellbridge.ot import marginals_from_labels
    >>> m = marginals_from_labels(["b", "a", "b", "b"])
    >>> m.drugs, m.b.tolist(), m.labels.tolist()
    (['a', 'b'], [0.25, 0.75], [1, 0, 1, 1])
    """
    values = pd.Series(np.asarray(labels, dtype=object))
    if values.ndim != 1 or values.empty:
        raise InputError("labels", "must be a non-empty 1-D sequence of drug names")
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        raise InputError(
            "labels", "cells without a drug at positions", values=missing.tolist(), fix="label them"
        )
    if drugs is None:
        names = sorted(values.unique().tolist())
    else:
        names = list(drugs)
        require_unique(names, "drugs", what="drugs", fix="list each cost column's drug once")
    codes = pd.Index(names).get_indexer(values)
    unknown = values[codes < 0].unique().tolist()
    if unknown:
        raise InputError(
            "labels", "drugs not in `drugs`", values=unknown, fix="add them to `drugs`"
        )
    a, b = marginals_from_counts(
        np.bincount(codes, minlength=len(names)), dtype=dtype, device=device
    )
    index = torch.as_tensor(codes, dtype=torch.int64, device=device)
    return LabelMarginals(a=a, b=b, labels=index, drugs=names)
