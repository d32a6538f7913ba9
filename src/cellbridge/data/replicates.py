"""Pseudo-bulk replicates per (drug, cell line): means of cells drawn with replacement.

BiRD A.1: for each drug treatment in each cell line, drop low-quality cells (total counts
below a threshold), then draw 500 cells with replacement and average their expression;
repeat 50 times. The replicates are the samples the BiRD aligner trains and is tested on.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from cellbridge._checks import expression_matrix, obs_labels, require_finite, require_unique
from cellbridge._progress import progress_bar
from cellbridge.errors import InputError

__all__ = ["pseudobulk_replicates"]

log = logging.getLogger(__name__)


def _matrix(adata: AnnData, layer: str | None, field: str) -> sp.csr_matrix | np.ndarray:
    X = expression_matrix(adata, layer, field=field)
    return sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)


def pseudobulk_replicates(
    adata: AnnData,
    *,
    drug_key: str = "drug",
    cell_line_key: str = "cell_line",
    n_cells: int = 500,
    n_replicates: int = 50,
    min_counts: float | None = None,
    layer: str | None = None,
    counts_layer: str | None = None,
    drop_empty: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> AnnData:
    r"""Pseudo-bulk replicates: means of ``n_cells`` cells drawn with replacement (BiRD A.1).

    For condition :math:`k` = (drug, cell line) with cells :math:`C_k` left after the
    count filter, replicate :math:`r` is

    .. math:: \bar x_{kr} = \frac{1}{n} \sum_{j=1}^{n} x_{c_{krj}}, \qquad
              c_{krj} \sim \mathrm{Uniform}(C_k) \text{ i.i.d.},\quad n = \texttt{n\_cells}.

    Random draws, in this order (so an independent implementation can reproduce them):
    ``rng = numpy.random.default_rng(seed)``; conditions in sorted order of
    (drug, cell line) as strings, skipping conditions dropped as empty; for each,
    ``rng.integers(0, len(C_k), size=(n_replicates, n_cells))``, which index the kept
    cells of the condition in their row order in ``adata``. Rows are summed with a sparse
    averaging matrix, one condition at a time: a CSR input is never densified whole.

    Parameters
    ----------
    adata
        Cells; ``obs`` holds ``drug_key`` and ``cell_line_key``. Every value of
        ``drug_key`` is a condition, controls (e.g. ``"DMSO"``) included; subset first
        to leave them out.
    drug_key, cell_line_key
        The ``obs`` columns that define a condition.
    n_cells
        Cells drawn (with replacement) per replicate; 500 in BiRD A.1. A condition with
        fewer cells is still sampled (with replacement); ``n_source_cells`` shows it.
    n_replicates
        Replicates per condition; 50 in BiRD A.1.
    min_counts
        Drop cells whose total count (row sum of ``counts_layer``) is below this. The
        cells dropped per condition are logged and stored in ``uns``. ``None``: keep all.
    layer
        Average this layer instead of ``X``.
    counts_layer
        Layer of raw counts for ``min_counts``; default the averaged matrix.
    drop_empty
        A condition left with no cells after the filter raises an :class:`InputError`
        naming it, unless this is set; then it is dropped, logged and recorded in ``uns``.
    seed
        Seed of the draws; same seed, same replicates.
    progress
        Show a progress bar over the conditions (stderr).

    Returns
    -------
    anndata.AnnData
        Replicates x genes, dense (float32 for float32 input, else float64), in sorted
        condition order, replicate by replicate; obs names ``"{drug}|{cell_line}|{r}"``.
        ``obs``: ``drug``, ``cell_line``, ``replicate`` (0-based), ``n_source_cells`` (cells
        of the condition after the filter), and every other ``obs`` column that is
        constant within each condition (e.g. ``control``, ``atc``; ``plate`` is not) and
        is not named like one of the four.
        ``uns["cellbridge"]``: parameters, inherited ``provenance`` and ``conditions``, a
        table per condition of ``n_cells_total``, ``n_cells_dropped``, ``n_cells_kept``
        and ``kept``.
    """
    for name, value in (("n_cells", n_cells), ("n_replicates", n_replicates)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError(name, "must be a positive integer", values=[value])
    if min_counts is not None and not (np.isfinite(min_counts) and min_counts >= 0):
        raise InputError("min_counts", "must be a non-negative number or None", values=[min_counts])
    require_unique(
        adata.obs_names,
        "adata.obs_names",
        what="cell names",
        fix="call adata.obs_names_make_unique()",
    )
    drugs = obs_labels(adata, drug_key, field="drug_key").astype(str).to_numpy()
    lines = obs_labels(adata, cell_line_key, field="cell_line_key").astype(str).to_numpy()
    X = _matrix(adata, layer, "layer")
    require_finite(X, "layer" if layer else "X")

    keep = np.ones(adata.n_obs, dtype=bool)
    if min_counts is not None:
        counts = X if counts_layer is None else _matrix(adata, counts_layer, "counts_layer")
        require_finite(
            counts,
            counts_layer or layer or "X",
            non_negative=True,
            negative_fix="pass raw counts as counts_layer (or layer)",
        )
        keep = np.asarray(counts.sum(axis=1)).ravel() >= min_counts

    codes, uniques = pd.factorize(pd.MultiIndex.from_arrays([drugs, lines]), sort=True)
    table = pd.DataFrame(list(uniques), columns=["drug", "cell_line"])
    table["n_cells_total"] = np.bincount(codes, minlength=len(table))
    table["n_cells_kept"] = np.bincount(codes[keep], minlength=len(table))
    table["n_cells_dropped"] = table["n_cells_total"] - table["n_cells_kept"]
    table["kept"] = table["n_cells_kept"] > 0
    _report_filter(table, min_counts, drop_empty)

    # Kept rows grouped by condition, each group in the row order of adata.
    rows = np.flatnonzero(keep)
    rows = rows[np.argsort(codes[rows], kind="stable")]
    bounds = np.r_[0, np.cumsum(table["n_cells_kept"].to_numpy())]
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    kept = np.flatnonzero(table["kept"].to_numpy())
    out = np.empty((len(kept) * n_replicates, adata.n_vars), dtype=dtype)
    rng = np.random.default_rng(seed)
    which = np.repeat(np.arange(n_replicates), n_cells)
    with progress_bar("pseudo-bulk replicates", total=len(kept), enabled=progress) as advance:
        for i, k in enumerate(kept):
            source = rows[bounds[k] : bounds[k + 1]]
            draws = rng.integers(0, len(source), size=(n_replicates, n_cells))
            # Duplicate (replicate, cell) entries are summed: a cell drawn twice counts twice.
            weights = sp.csr_matrix(
                (np.ones(which.size), (which, draws.ravel())), shape=(n_replicates, len(source))
            )
            block = weights @ X[source]
            block = block.toarray() if sp.issparse(block) else np.asarray(block)
            out[i * n_replicates : (i + 1) * n_replicates] = block / n_cells
            advance(1)

    cond = table.iloc[kept].reset_index(drop=True)
    obs = pd.DataFrame(
        {
            "drug": np.repeat(cond["drug"].to_numpy(), n_replicates),
            "cell_line": np.repeat(cond["cell_line"].to_numpy(), n_replicates),
            "replicate": np.tile(np.arange(n_replicates), len(cond)),
            "n_source_cells": np.repeat(cond["n_cells_kept"].to_numpy(), n_replicates),
        }
    )
    obs.index = obs["drug"] + "|" + obs["cell_line"] + "|" + obs["replicate"].astype(str)
    require_unique(
        obs.index,
        "drug_key/cell_line_key",
        what="replicate names",
        fix="rename drugs or cell lines so that '|' does not make names collide",
    )
    skip = {drug_key, cell_line_key, *obs.columns}
    for column, values in _constant_columns(adata.obs, codes, keep, kept, skip):
        obs[column] = values.repeat(n_replicates).set_axis(obs.index)
    for column in ("drug", "cell_line"):
        obs[column] = obs[column].astype("category")
    result = AnnData(X=out, obs=obs, var=adata.var.copy())
    params: dict[str, object] = {
        "construction": "pseudo-bulk replicates: mean of n_cells cells drawn with replacement "
        "per (drug, cell line), BiRD A.1",
        "provenance": adata.uns.get("cellbridge", {}).get("provenance", ""),
        "n_cells": n_cells,
        "n_replicates": n_replicates,
        "layer": layer or "X",
        "seed": seed,
        "conditions": table,
    }
    if min_counts is not None:
        params["min_counts"] = float(min_counts)
        params["counts_layer"] = counts_layer or layer or "X"
    result.uns["cellbridge"] = params
    return result


def _report_filter(table: pd.DataFrame, min_counts: float | None, drop_empty: bool) -> None:
    dropped = int(table["n_cells_dropped"].sum())
    if dropped:
        hit = table[table["n_cells_dropped"] > 0]
        log.info(
            "pseudobulk_replicates: dropped %d of %d cells with total counts below %g, "
            "in %d conditions: %s",
            dropped,
            int(table["n_cells_total"].sum()),
            min_counts,
            len(hit),
            _describe(hit, "n_cells_dropped"),
        )
    empty = table[~table["kept"]]
    if len(empty) == 0:
        return
    if not drop_empty:
        raise InputError(
            "min_counts",
            f"{len(empty)} conditions have no cell with total counts >= {min_counts}",
            values=[f"{d}|{c}" for d, c in zip(empty["drug"], empty["cell_line"], strict=True)],
            fix="lower min_counts, or pass drop_empty=True to leave those conditions out",
        )
    log.warning(
        "pseudobulk_replicates: dropped %d conditions with no cells left: %s",
        len(empty),
        _describe(empty, "n_cells_total"),
    )


def _describe(rows: pd.DataFrame, column: str, limit: int = 5) -> str:
    items = [
        f"{d}|{c} ({n})"
        for d, c, n in zip(rows["drug"], rows["cell_line"], rows[column], strict=True)
    ]
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _constant_columns(
    obs: pd.DataFrame, codes: np.ndarray, keep: np.ndarray, kept: np.ndarray, skip: set[str]
) -> list[tuple[str, pd.Series]]:
    """obs columns with one value per kept condition (over its kept cells), in order."""
    sub = obs.loc[keep, [c for c in obs.columns if c not in skip]]
    grouped = sub.groupby(codes[keep], sort=True)
    unique = grouped.nunique(dropna=False)
    first = grouped.first().reindex(kept)
    out = []
    for column in sub.columns:
        if (unique[column] <= 1).all():
            values = first[column]
            if isinstance(sub[column].dtype, pd.CategoricalDtype):
                values = values.astype(sub[column].dtype)
            out.append((str(column), values.reset_index(drop=True)))
    return out
