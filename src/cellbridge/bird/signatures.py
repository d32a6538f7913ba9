"""BiRD differential-response signatures (BiRD §2, Algorithm 1 stage 1).

Per reference cell line and drug: treated cells against the control cells of the same
plates, one test per gene (Wilcoxon rank-sum by default, or Welch's t-test), log2 fold
changes and Benjamini–Hochberg q-values; the signature is the top-``K`` genes by
``|logFC|`` among those with ``q <= alpha``.

The statistics are those of scanpy's ``rank_genes_groups(..., reference=control)``
(``method="wilcoxon"`` without tie correction, or ``method="t-test"``), written out here
so that one comparison costs one ranking of ``treated + control`` cells, one line's cells
are held at a time, and the result is a tidy table rather than a recarray per group.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from numba import njit, prange
from scipy import stats

from cellbridge._progress import progress_bar
from cellbridge.bird._controls import check_control_drug, control_flags
from cellbridge.bird._wilcoxon import grouped_u, value_summary
from cellbridge.distributed import check_client
from cellbridge.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from distributed import Client

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_TOP_K",
    "Signatures",
    "compare_groups",
    "compare_many",
    "compare_rows",
    "differential_response",
    "mann_whitney_u",
]

log = logging.getLogger(__name__)

#: q-value cut-off (BiRD's alpha; the paper does not give a value: the usual 5% FDR).
DEFAULT_ALPHA = 0.05
#: Signature size (BiRD's K / M; not given in the paper).
DEFAULT_TOP_K = 100

Method = Literal["wilcoxon", "t-test"]


def compare_groups(
    treated: np.ndarray | sp.spmatrix,
    control: np.ndarray | sp.spmatrix,
    *,
    method: Method = "wilcoxon",
    chunk_genes: int = 1024,
) -> pd.DataFrame:
    """Per-gene test of ``treated`` against ``control`` cells (log-normalised rows).

    Parameters
    ----------
    treated, control
        ``(cells, genes)`` log1p-normalised expression, dense or sparse. Sparse input is
        never densified for the Wilcoxon test on non-negative values; otherwise it is
        densified ``chunk_genes`` genes at a time, so memory is bounded by
        ``(treated + control cells) x chunk_genes``.
    method
        ``"wilcoxon"``: rank-sum z-score with the normal approximation, no tie
        correction, two-sided p-value (scanpy's default Wilcoxon); ``"t-test"``: Welch's
        t-test from means and unbiased variances (scanpy's ``"t-test"``).
    chunk_genes
        Genes per dense block.

    Returns
    -------
    pandas.DataFrame
        Columns ``score``, ``pval``, ``qval`` (Benjamini–Hochberg over the genes),
        ``logfc`` = :math:`\\log_2` of ``(expm1(mean_treated) + 1e-9) /
        (expm1(mean_control) + 1e-9)`` (scanpy's definition), one row per gene. On data
        with negative values (scaled expression) the scores and p-values are exact, but
        this ratio can be negative: ``logfc`` is then NaN for those genes, as in scanpy,
        and numpy warns. :func:`differential_response` refuses such data.
    """
    return compare_many([treated], control, method=method, chunk_genes=chunk_genes)[0]


def compare_many(
    treated: Sequence[np.ndarray | sp.spmatrix],
    control: np.ndarray | sp.spmatrix,
    *,
    method: Method = "wilcoxon",
    chunk_genes: int = 1024,
) -> list[pd.DataFrame]:
    """:func:`compare_groups` of several treated groups against one control group.

    Sparse non-negative input with the Wilcoxon test goes through :func:`compare_rows`'s
    kernel (never densified). Otherwise each block of ``chunk_genes`` genes of the
    controls is densified (and, for the Wilcoxon test, sorted) once and shared by every
    treated group, as drugs of one plate share its controls.

    Parameters
    ----------
    treated
        The treated groups: each ``(cells, genes)`` log1p-normalised, dense or sparse.
    control
        ``(cells, genes)`` control cells, the same genes.
    method, chunk_genes
        As for :func:`compare_groups`.

    Returns
    -------
    list of pandas.DataFrame
        One :func:`compare_groups` table per treated group, in order.
    """
    m = control.shape[0]
    sizes = [t.shape[0] for t in treated]
    if m < 2 or any(n < 2 for n in sizes):
        raise InputError(
            "cells",
            "each group needs at least 2 cells (treated sizes, control size)",
            values=[*sizes, m],
            fix="pool more cells",
        )
    if method not in ("wilcoxon", "t-test"):
        raise InputError("method", "must be 'wilcoxon' or 't-test'", values=[method])
    if any(t.shape[1] != control.shape[1] for t in treated):
        raise InputError(
            "genes",
            "treated and control differ",
            values=[*(t.shape for t in treated), control.shape],
        )
    lows = [*_require_finite(treated, "treated"), *_require_finite([control], "control")]
    if method == "wilcoxon" and _sparse_non_negative([*treated, control], lows):
        frames = _compare_sparse(treated, control)
        assert frames is not None  # checked finite and non-negative above
        return frames
    # column blocks are cut from CSC (cheap) rather than CSR (a scan of every row)
    treated = [sp.csc_matrix(t) if sp.issparse(t) else t for t in treated]
    control = sp.csc_matrix(control) if sp.issparse(control) else control
    n_genes = control.shape[1]
    score = np.zeros((len(treated), n_genes))
    pval = np.ones((len(treated), n_genes))
    mean_t = np.zeros((len(treated), n_genes))
    mean_c = np.zeros(n_genes)
    for left in range(0, n_genes, chunk_genes):
        right = min(left + chunk_genes, n_genes)
        c = _dense(control[:, left:right])
        mean_c[left:right] = c.mean(axis=0)
        reference = np.sort(c, axis=0) if method == "wilcoxon" else c
        for g, group in enumerate(treated):
            t = _dense(group[:, left:right])
            mean_t[g, left:right] = t.mean(axis=0)
            score[g, left:right], pval[g, left:right] = _test(t, reference, method)
    return _frames(score, pval, mean_t, mean_c)


def compare_rows(
    X: np.ndarray | sp.spmatrix,
    treated: Sequence[np.ndarray],
    control: np.ndarray,
    *,
    method: Method = "wilcoxon",
) -> list[pd.DataFrame]:
    """:func:`compare_many` of row subsets of one matrix, e.g. one plate's drugs and controls.

    Parameters
    ----------
    X
        ``(cells, genes)`` log1p-normalised expression, dense or sparse.
    treated
        Row indices of each treated group; the groups must not share rows.
    control
        Row indices of the control cells, disjoint from every treated group.
    method
        As in :func:`compare_groups`.

    Returns
    -------
    list of pandas.DataFrame
        One table per treated group, as :func:`compare_groups`.

    Notes
    -----
    On sparse non-negative input the Wilcoxon test reads the rows in place (no copy per
    group): each gene's positive values of all compared cells are sorted once and shared
    by every group.
    """
    fused = method == "wilcoxon" and sp.issparse(X) and X.dtype in (np.float32, np.float64)
    if not fused:  # the sparse Wilcoxon kernel checks its input in its own first read
        _require_finite([X], "X")
    n_rows = X.shape[0]
    groups = [np.asarray(t, dtype=np.int64).ravel() for t in treated]
    control = np.asarray(control, dtype=np.int64).ravel()
    code = np.full(n_rows, -1, dtype=np.int32)
    for g, rows in enumerate([control, *groups]):
        if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
            raise InputError(
                "rows", f"must index the {n_rows} rows of X", values=[rows.min(), rows.max()]
            )
        taken = rows[code[rows] >= 0]
        if taken.size or np.unique(rows).size != rows.size:
            raise InputError(
                "rows",
                "a row is in more than one group (or twice in one)",
                values=(taken if taken.size else rows)[:10].tolist(),
                fix="pass disjoint treated and control row sets",
            )
        code[rows] = g
    sizes = [t.size for t in groups]
    if control.size < 2 or any(n < 2 for n in sizes):
        raise InputError(
            "cells",
            "each group needs at least 2 cells (treated sizes, control size)",
            values=[*sizes, control.size],
            fix="pool more cells",
        )
    if fused:
        frames = _grouped_wilcoxon(X, code, len(groups), field="X")
        if frames is not None:
            return frames
    return compare_many([X[t] for t in groups], X[control], method=method)


def _frames(
    score: np.ndarray, pval: np.ndarray, mean_t: np.ndarray, mean_c: np.ndarray
) -> list[pd.DataFrame]:
    qval = stats.false_discovery_control(pval, method="bh", axis=-1)
    logfc = np.log2((np.expm1(mean_t) + 1e-9) / (np.expm1(mean_c) + 1e-9))
    return [
        pd.DataFrame({"score": score[g], "pval": pval[g], "qval": qval[g], "logfc": logfc[g]})
        for g in range(score.shape[0])
    ]


def _require_finite(blocks: Sequence[np.ndarray | sp.spmatrix], field: str) -> list[float]:
    """Refuse non-numeric, NaN or infinite expression (the tests would score it
    silently); returns each block's smallest stored value (``inf`` when empty), read in
    the same pass."""
    lows = []
    for block in blocks:
        values = np.asarray(block.data if sp.issparse(block) else block)
        if not np.issubdtype(values.dtype, np.number):
            raise InputError(field, f"expression must be numeric, got dtype {values.dtype}")
        n_bad, low = value_summary(values)
        if n_bad:
            raise InputError(
                field,
                f"{n_bad} NaN or infinite values",
                fix="fix the matrix upstream; cellbridge does not impute",
            )
        lows.append(low)
    return lows


def _sparse_non_negative(blocks: Sequence[np.ndarray | sp.spmatrix], lows: list[float]) -> bool:
    return all(sp.issparse(b) for b in blocks) and all(low >= 0 for low in lows)


def _compare_sparse(
    treated: Sequence[sp.spmatrix], control: sp.spmatrix
) -> list[pd.DataFrame] | None:
    """Wilcoxon of each treated block against the controls, sparse non-negative input."""
    stacked = sp.vstack([*treated, control], format="csr")
    sizes = [t.shape[0] for t in treated]
    # treated blocks are groups 1..n, the controls (stacked last) group 0
    code = np.repeat(np.r_[1 : len(treated) + 1, 0].astype(np.int32), [*sizes, control.shape[0]])
    return _grouped_wilcoxon(stacked, code, len(treated), field="treated")


def _grouped_wilcoxon(
    X: sp.csr_matrix, code: np.ndarray, n_groups: int, *, field: str
) -> list[pd.DataFrame] | None:
    """Wilcoxon of groups ``1..n_groups`` of the rows of ``X`` against group ``0``
    (``code`` gives each row's group, ``-1`` = not compared); the kernel is
    :func:`cellbridge.bird._wilcoxon.grouped_u`. NaN or infinite values are refused
    (``field`` names the input); ``None`` when a value is negative, where the kernel's
    zero-based shortcut does not apply (the caller then takes the dense path)."""
    if X.format != "csr":
        X = X.tocsr()  # the same object otherwise: scipy caches its sorted-indices check
    if not X.has_sorted_indices:  # the gene blocks walk each row's indices in order
        X = X.sorted_indices()
    if X.data.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if n_groups >= np.iinfo(np.int16).max:
        raise InputError(
            "treated",
            "too many groups against one control",
            values=[n_groups],
            fix=f"compare at most {np.iinfo(np.int16).max - 1} groups per call",
        )
    code = np.asarray(code, dtype=np.int16)
    u, sums, n_bad, low = grouped_u(X, code, n_groups)
    if n_bad:
        raise InputError(
            field,
            f"{n_bad} NaN or infinite values",
            fix="fix the matrix upstream; cellbridge does not impute",
        )
    if low < 0:
        return None
    n = np.bincount(code[code > 0], minlength=n_groups + 1)[1:].astype(np.float64)[:, None]
    m = int((code == 0).sum())
    score = (u - n * m / 2.0) / np.sqrt(n * m * (n + m + 1) / 12.0)
    pval = 2 * stats.norm.sf(np.abs(score))
    return _frames(score, pval, sums[1:] / n, sums[0] / m)


def _dense(block: np.ndarray | sp.spmatrix) -> np.ndarray:
    if sp.issparse(block):
        return np.asarray(block.toarray(), dtype=np.float64)  # type: ignore[union-attr]
    return np.asarray(block, dtype=np.float64)


def _test(t: np.ndarray, c: np.ndarray, method: Method) -> tuple[np.ndarray, np.ndarray]:
    """Scores and two-sided p-values of one dense block of genes (``c`` column-sorted for
    the Wilcoxon test)."""
    n, m = t.shape[0], c.shape[0]
    if method == "wilcoxon":
        u = _sorted_u(t, c)
        std = np.sqrt(n * m * (n + m + 1) / 12.0)
        # rank sum of the treated = U + n(n+1)/2 (average ranks for ties), so the z-score of
        # scanpy's rank sum, (R - n(n+m+1)/2) / std, is (U - nm/2) / std
        score = (u - n * m / 2.0) / std
        score[np.isnan(score)] = 0.0
        return score, 2 * stats.norm.sf(np.abs(score))
    with np.errstate(invalid="ignore", divide="ignore"):
        score, pval = stats.ttest_ind_from_stats(
            t.mean(axis=0),
            np.sqrt(t.var(axis=0, ddof=1)),
            n,
            c.mean(axis=0),
            np.sqrt(c.var(axis=0, ddof=1)),
            m,
            equal_var=False,
        )
    return np.where(np.isnan(score), 0.0, score), np.where(np.isnan(pval), 1.0, pval)


@dataclass
class Signatures:
    """Differential-response signatures of every (reference line, drug).

    Attributes
    ----------
    genes
        ``{(cell_line, drug): [genes]}``: the signature :math:`\\mathcal G_{c,d}`, ordered
        by decreasing ``|logFC|`` (may be shorter than ``top_k``, or empty).
    table
        The signature genes' statistics: ``cell_line``, ``drug``, ``gene``, ``logfc``,
        ``score``, ``pval``, ``qval``, ``rank``.
    n_significant
        ``cell_line`` x ``drug`` counts of genes with ``q <= alpha`` (before the top-K cut).
    params
        ``method``, ``alpha``, ``top_k`` and the keys used.
    """

    genes: dict[tuple[str, str], list[str]]
    table: pd.DataFrame
    n_significant: pd.DataFrame
    params: dict[str, object]

    def for_line(self, cell_line: str) -> dict[str, list[str]]:
        """``{drug: genes}`` of one reference line (the input of Jaccard, Eq. 1)."""
        out = {d: g for (c, d), g in self.genes.items() if c == cell_line}
        if not out:
            lines = sorted({c for c, _ in self.genes})
            raise InputError(
                "cell_line", "has no signatures", values=[cell_line], fix=f"use one of {lines}"
            )
        return out


def differential_response(
    adata: AnnData,
    *,
    reference_lines: Sequence[str],
    drug_key: str = "drug",
    control_key: str = "control",
    control_drug: str | None = None,
    plate_key: str = "plate",
    cell_line_key: str = "cell_line",
    method: Method = "wilcoxon",
    alpha: float = DEFAULT_ALPHA,
    top_k: int = DEFAULT_TOP_K,
    layer: str | None = None,
    by: Literal["line", "plate"] = "line",
    client: Client | Literal["local"] | None = None,
    progress: bool = False,
) -> Signatures:
    """DE signatures of every drug in every reference line (Algorithm 1, lines 1–5).

    For reference line :math:`c` and drug :math:`d`: the treated cells are the line's
    cells with ``obs[drug_key] == d``; the controls are the line's control cells
    (``obs[control_key]`` true) **on the plates where d was applied**, so every drug is
    compared with same-plate controls (§2). Genes with ``q <= alpha`` are kept, then the
    ``top_k`` by ``|logFC|``; a drug with fewer significant genes keeps those it has, and
    drugs with none are warned about (their Jaccard rows are then 0, Eq. 1).

    Expression is log-normalised first when ``adata`` holds counts
    (:func:`cellbridge.encoders.log_normalised`: 1e4 per cell, log1p), as scanpy's
    statistics expect. One cell line's cells are held at a time (sparse stays sparse; each
    comparison densifies its cells ``chunk_genes`` genes at a time).

    Parameters
    ----------
    adata
        Cells with ``obs`` columns ``drug_key``, ``control_key`` (bool), ``plate_key`` and
        ``cell_line_key``.
    drug_key, control_key, plate_key, cell_line_key
        The ``obs`` columns with each cell's drug, control flag, plate and cell line.
    control_drug
        Mark the controls by their drug instead of a flag column: the cells with
        ``obs[drug_key] == control_drug`` (e.g. ``"DMSO_TF"`` in Tahoe-100M) are the
        controls, and ``control_key`` is not read. Default ``None``: use ``control_key``.
    reference_lines
        The reference cell lines :math:`\\mathcal C_{ref}` (BiRD: A549, AN3 CA, SK-MEL-2,
        SNU-1, A-172). They must then be left out of every evaluation
        (:func:`cellbridge.data.split_by_group` refuses them when told).
    method, alpha, top_k
        Test, q-value cut-off, signature size.
    layer
        Expression layer instead of ``X``.
    by
        What is read and held at a time: ``"line"`` — one reference line's cells (a drug
        applied on several plates is compared with the pooled controls of those plates);
        ``"plate"`` — one plate's cells of the reference lines, read from a backed
        (``backed="r"``) AnnData plate by plate, so memory is bounded by one plate. Needs
        every (line, drug) on a single plate, as in Tahoe-100M; refused otherwise.
        Per-plate *files* are read by :func:`signatures_from_plates`.
    client
        Run the blocks (lines, or plates with ``by="plate"``) on a Dask cluster: a
        :class:`dask.distributed.Client` (left open), ``"local"`` (a two-worker
        :class:`~dask.distributed.LocalCluster` on loopback, started and closed for this
        call) or ``None`` (this process; default). Each block is sent only its rows (of a
        backed AnnData, only the file name and row numbers: the worker reads them); each
        worker returns its signatures, which are merged here. The result is identical to
        ``client=None`` (every comparison's sums are added in row order, whatever the
        worker's threads). See ``docs/cluster.md``.
    progress
        Show a progress bar over (line, drug) comparisons.

    Returns
    -------
    Signatures
        The signatures, their genes' statistics and the significant-gene counts.

    Raises
    ------
    InputError
        Missing or non-boolean ``obs`` columns, unknown reference lines, bad ``alpha``,
        ``top_k``, ``by`` or ``client``, a ``control_drug`` that no cell has, a drug with
        fewer than 2 same-plate controls.
    """
    obs = _check_obs(adata, drug_key, control_key, plate_key, cell_line_key, control_drug)
    if not reference_lines:
        raise InputError("reference_lines", "is empty", fix="name at least one cell line")
    missing = sorted(set(reference_lines) - set(obs[cell_line_key]))
    if missing:
        raise InputError(
            "reference_lines",
            "not found in obs",
            values=missing,
            fix=f"use lines of obs[{cell_line_key!r}]",
        )
    params = _Params.checked(
        reference_lines=reference_lines,
        keys=(drug_key, control_key, plate_key, cell_line_key),
        method=method,
        alpha=alpha,
        top_k=top_k,
        layer=layer,
        control_drug=control_drug,
    )
    check_client(client)
    genes_index = adata.var_names.astype(str)
    masks = list(_blocks(obs, reference_lines, by, drug_key, control_key, plate_key, cell_line_key))
    # (line, drug) comparisons per block: the progress bar's steps
    weights = [
        sum(1 for _ in _comparisons(obs[m], reference_lines, drug_key, control_key, cell_line_key))
        for m in masks
    ]
    if client is None:
        parts = []
        with progress_bar("DE signatures", total=sum(weights), enabled=progress) as advance:
            for mask in masks:
                block = adata[mask]
                block = block.to_memory() if block.isbacked else block
                parts.append(_block_signatures(block, obs[mask], genes_index, params, advance))
                del block
        return _assemble(parts, params, stacklevel=3)
    from cellbridge.distributed import dask_client, map_chunks

    units = [_unit(adata, mask, obs[mask], layer) for mask in masks]
    with dask_client(client) as dask:
        assert dask is not None  # client is not None here
        parts = map_chunks(
            dask,
            _unit_signatures,
            # fresh keys (hash=False): a repeated call must not re-scatter keys that the
            # previous call is still releasing
            dask.scatter(units, hash=False),
            shared=[genes_index, params],
            weights=weights,
            progress=progress,
            description="DE signatures",
        )
    return _assemble(parts, params, stacklevel=3)


@dataclass(frozen=True)
class _Params:
    """The options of one run of signatures, as sent to every block (and worker)."""

    reference_lines: tuple[str, ...]
    keys: tuple[str, str, str, str]  # drug, control, plate, cell line
    method: Method
    alpha: float
    top_k: int
    layer: str | None
    #: the drug that marks the controls, when they are not marked by the control column
    control_drug: str | None = None

    @classmethod
    def checked(
        cls,
        *,
        reference_lines: Sequence[str],
        keys: tuple[str, str, str, str],
        method: str,
        alpha: float,
        top_k: int,
        layer: str | None,
        control_drug: str | None = None,
    ) -> _Params:
        if method not in ("wilcoxon", "t-test"):
            raise InputError("method", "must be 'wilcoxon' or 't-test'", values=[method])
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 1:
            raise InputError("alpha", "must be in (0, 1]", values=[alpha])
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InputError("top_k", "must be a positive integer", values=[top_k])
        check_control_drug(control_drug)
        return cls(
            tuple(reference_lines),
            keys,
            method,  # type: ignore[arg-type]
            float(alpha),
            top_k,
            layer,
            control_drug,
        )

    def as_dict(self) -> dict[str, object]:
        """The ``params`` of :class:`Signatures`."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            "top_k": self.top_k,
            "reference_lines": list(self.reference_lines),
            "keys": list(self.keys),
            "control_drug": self.control_drug,
        }


@dataclass
class _Part:
    """The signatures of one block of cells (a line, or a plate's reference lines)."""

    genes: dict[tuple[str, str], list[str]]
    tables: list[pd.DataFrame]
    counts: dict[tuple[str, str], int]


def _block_signatures(
    block: AnnData,
    block_obs: pd.DataFrame,
    genes_index: pd.Index,
    params: _Params,
    advance: Callable[[int], None] | None = None,
) -> _Part:
    """Signatures of the (reference line, drug) pairs of one block of cells held in memory.

    The one code path of every caller (in memory, per plate file, on a Dask worker):
    per reference line of the block, the line's rows are log-normalised, drugs sharing
    their controls are tested together (:func:`compare_rows`), then BH-filtered at
    ``alpha`` and cut to the ``top_k`` genes by ``|logFC|`` (Algorithm 1, lines 2–4).
    ``block_obs`` holds the four key columns as strings (:func:`_check_obs`).
    """
    from cellbridge.encoders import log_normalised

    drug_key, control_key, plate_key, cell_line_key = params.keys
    part = _Part({}, [], {})
    lines_of = block_obs[cell_line_key].to_numpy()
    for line in [c for c in params.reference_lines if (lines_of == c).any()]:
        in_line = lines_of == line
        # one line normalised at a time: the float64 copies are one line's, not the block's
        normalised = log_normalised(block[in_line], layer=params.layer)
        # sparse stays sparse: compare_many never densifies the Wilcoxon path
        X = sp.csr_matrix(normalised) if sp.issparse(normalised) else np.asarray(normalised)
        del normalised
        line_obs = block_obs[in_line]
        shared: dict[bytes, tuple[np.ndarray, list[tuple[str, np.ndarray]]]] = {}
        for drug, treated, control in _line_jobs(line_obs, drug_key, control_key, plate_key):
            shared.setdefault(control.tobytes(), (control, []))[1].append((drug, treated))
        results: list[tuple[str, pd.DataFrame]] = []
        for control, groups in shared.values():
            found = compare_rows(X, [t for _, t in groups], control, method=params.method)
            results += [(d, st) for (d, _), st in zip(groups, found, strict=True)]
        del X
        for drug, stat in sorted(results, key=lambda item: item[0]):
            stat.index = genes_index
            significant = stat[stat["qval"] <= params.alpha]
            part.counts[(line, drug)] = len(significant)
            order = significant["logfc"].abs().sort_values(ascending=False, kind="stable")
            chosen = list(order.index[: params.top_k])
            part.genes[(line, drug)] = chosen
            top = stat.loc[chosen].reset_index(names="gene")
            top.insert(0, "drug", drug)
            top.insert(0, "cell_line", line)
            top["rank"] = np.arange(1, len(top) + 1)
            part.tables.append(top)
            if advance is not None:
                advance(1)
    return part


def _assemble(parts: Sequence[_Part], params: _Params, *, stacklevel: int) -> Signatures:
    """Merge the blocks' signatures into one :class:`Signatures`, the same whatever the
    blocks and their order; warns (once, at ``stacklevel``) about empty signatures."""
    genes: dict[tuple[str, str], list[str]] = {}
    counts: dict[tuple[str, str], int] = {}
    tables: list[pd.DataFrame] = []
    for part in parts:
        genes.update(part.genes)
        counts.update(part.counts)
        tables += part.tables
    genes = dict(sorted(genes.items()))
    empty = sorted(f"{c}/{d}" for (c, d), g in genes.items() if not g)
    if empty:
        warnings.warn(
            f"{len(empty)} (line, drug) pairs have no gene with q <= {params.alpha}: their "
            f"signatures are empty and their Jaccard similarities 0: {', '.join(empty[:20])}",
            UserWarning,
            stacklevel=stacklevel,
        )
    n_sig = pd.Series(dict(sorted(counts.items()))).unstack(fill_value=0) if counts else None
    table = (
        pd.concat(tables, ignore_index=True)
        .sort_values(["cell_line", "drug", "rank"], kind="stable")
        .reset_index(drop=True)
        if tables
        else pd.DataFrame()
    )
    return Signatures(
        genes, table, n_sig if n_sig is not None else pd.DataFrame(), params.as_dict()
    )


def _unit(
    adata: AnnData, mask: np.ndarray, block_obs: pd.DataFrame, layer: str | None
) -> tuple[object, ...]:
    """What a Dask worker needs for one block: of a backed file, its name and the block's
    row numbers (the worker reads them); otherwise the block's rows themselves."""
    from cellbridge.bird._plate_io import expression_block

    log1p = "log1p" in adata.uns
    if adata.isbacked and not adata.is_view and adata.filename is not None:
        return ("file", str(adata.filename), np.flatnonzero(mask), block_obs, layer, log1p)
    view = adata[mask]
    matrix = view.X if layer is None else view.layers[layer]
    if hasattr(matrix, "to_memory"):  # a backed view: read the rows here
        matrix = matrix.to_memory()
    block = expression_block(
        matrix, layer=layer, cells=block_obs.index, genes=adata.var_names, log1p=log1p
    )
    return ("memory", block, block_obs)


def _unit_signatures(unit: tuple[Any, ...], genes_index: pd.Index, params: _Params) -> _Part:
    """:func:`_block_signatures` of one unit made by :func:`_unit`, on a worker."""
    if unit[0] == "memory":
        return _block_signatures(unit[1], unit[2], genes_index, params)
    from cellbridge.bird._plate_io import in_memory_rows

    _, path, rows, block_obs, layer, log1p = unit
    block = in_memory_rows(path, rows, layer=layer, obs=block_obs, log1p=log1p)
    return _block_signatures(block, block_obs, genes_index, params)


def _check_obs(
    adata: AnnData,
    drug_key: str,
    control_key: str,
    plate_key: str,
    cell_line_key: str,
    control_drug: str | None = None,
) -> pd.DataFrame:
    """The four key columns (drug, plate and line as strings, the control flag as bool;
    derived from the drug when ``control_drug`` is given), or an :class:`InputError`."""
    for key in (drug_key, plate_key, cell_line_key):
        if key not in adata.obs:
            raise InputError(
                "obs", f"has no column {key!r}", values=list(adata.obs.columns), fix="name it"
            )
    is_control = control_flags(
        adata.obs, drug_key=drug_key, control_key=control_key, control_drug=control_drug
    )
    obs = adata.obs[list(dict.fromkeys([drug_key, plate_key, cell_line_key]))].copy()
    for key in (drug_key, plate_key, cell_line_key):
        if obs[key].isna().any():
            raise InputError(
                f"obs[{key!r}]",
                "has missing values for cells",
                values=list(obs.index[obs[key].isna()]),
            )
        obs[key] = obs[key].astype(str)
    obs[control_key] = is_control
    return obs[[drug_key, control_key, plate_key, cell_line_key]]


def _line_jobs(
    obs: pd.DataFrame, drug_key: str, control_key: str, plate_key: str
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(drug, treated rows, same-plate control rows) within one line's cells."""
    is_control = obs[control_key].to_numpy()
    plates = obs[plate_key].to_numpy()
    drugs = obs[drug_key].to_numpy()
    for drug in sorted(set(drugs[~is_control])):
        treated = np.flatnonzero((drugs == drug) & ~is_control)
        on = np.unique(plates[treated])
        control = np.flatnonzero(is_control & np.isin(plates, on))
        if control.size < 2:
            raise InputError(
                "controls",
                f"drug {drug!r} has fewer than 2 control cells on its plates",
                values=list(on),
                fix="every plate needs control cells of each line",
            )
        yield drug, treated, control


def _comparisons(
    obs: pd.DataFrame, lines: Sequence[str], drug_key: str, control_key: str, cell_line_key: str
) -> Iterator[tuple[str, str]]:
    for line in lines:
        sub = obs[(obs[cell_line_key] == line) & ~obs[control_key]]
        for drug in sorted(set(sub[drug_key])):
            yield line, drug


def mann_whitney_u(treated: np.ndarray, control_sorted: np.ndarray) -> np.ndarray:
    """Per-gene Mann–Whitney U of ``treated`` against column-sorted ``control`` values.

    :math:`U_j = \\sum_i \\#\\{c < t_{ij}\\} + \\tfrac12 \\#\\{c = t_{ij}\\}`. The treated
    values are sorted per gene and merged with the sorted controls in one pass,
    :math:`O(n + m)` per gene after the sort, without ranking the pooled cells (the controls
    are sorted once and reused for every drug that shares them). Written by hand (numba)
    because scipy's ``mannwhitneyu`` ranks the pooled sample per call and per gene.

    Parameters
    ----------
    treated
        ``(n, genes)`` treated values.
    control_sorted
        ``(m, genes)`` control values, each column sorted ascending.

    Returns
    -------
    numpy.ndarray
        ``(genes,)`` float64: :math:`U_j`.

    Raises
    ------
    InputError
        Inputs that are not 2-D with the same genes, hold NaN or infinite values, or
        controls whose columns are not sorted (the merge would count them wrongly).
    """
    t = np.asarray(treated, dtype=np.float64)
    c = np.asarray(control_sorted, dtype=np.float64)
    if t.ndim != 2 or c.ndim != 2 or t.shape[1] != c.shape[1]:
        raise InputError(
            "treated, control_sorted",
            "must be (cells, genes) matrices with the same genes",
            values=[t.shape, c.shape],
        )
    for name, values in (("treated", t), ("control_sorted", c)):
        if not np.isfinite(values).all():
            raise InputError(name, "has NaN or infinite values", fix="remove or fix them")
    unsorted = np.flatnonzero((c[1:] < c[:-1]).any(axis=0))
    if unsorted.size:
        raise InputError(
            "control_sorted",
            "columns are not sorted ascending (genes)",
            values=unsorted[:10].tolist(),
            fix="pass np.sort(control, axis=0)",
        )
    return _sorted_u(t, c)


def _sorted_u(treated: np.ndarray, control_sorted: np.ndarray) -> np.ndarray:
    """:func:`mann_whitney_u` without the checks (the callers sorted the controls)."""
    t = np.sort(np.asarray(treated, dtype=np.float64), axis=0)
    return _u_kernel(np.asfortranarray(t), np.asfortranarray(control_sorted, dtype=np.float64))


@njit(cache=True, parallel=True)
def _u_kernel(t: np.ndarray, c: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Both inputs column-sorted: walk the controls once per gene."""
    n, genes = t.shape
    m = c.shape[0]
    out = np.zeros(genes)
    for j in prange(genes):
        below = 0  # controls strictly below the current treated value
        total = 0.0
        i = 0
        while i < n:
            x = t[i, j]
            while below < m and c[below, j] < x:
                below += 1
            equal = 0
            while below + equal < m and c[below + equal, j] == x:
                equal += 1
            run = 1  # treated values equal to x share the counts
            while i + run < n and t[i + run, j] == x:
                run += 1
            total += run * (below + 0.5 * equal)
            i += run
        out[j] = total
    return out


def _blocks(
    obs: pd.DataFrame,
    lines: Sequence[str],
    by: str,
    drug_key: str,
    control_key: str,
    plate_key: str,
    cell_line_key: str,
) -> Iterator[np.ndarray]:
    """Row masks of the cells to hold at a time: per reference line, or per plate."""
    in_lines = obs[cell_line_key].isin(list(lines)).to_numpy()
    if by == "line":
        for line in lines:
            yield (obs[cell_line_key] == line).to_numpy()
        return
    if by != "plate":
        raise InputError("by", "must be 'line' or 'plate'", values=[by])
    treated = obs[in_lines & ~obs[control_key].to_numpy()]
    plates = treated.groupby([cell_line_key, drug_key], observed=True)[plate_key].nunique()
    spread = plates[plates > 1]
    if len(spread):
        raise InputError(
            "by",
            "'plate' needs every (line, drug) on one plate; on several",
            values=[f"{c}/{d}" for c, d in spread.index],
            fix="use by='line' (pools the controls of the drug's plates)",
        )
    for plate in sorted(set(obs.loc[in_lines, plate_key])):
        yield in_lines & (obs[plate_key] == plate).to_numpy()
