"""Read selections of cells from Tahoe-100M per-plate .h5ad files (Zhang et al. 2025).

Tahoe-100M ships one .h5ad per plate (e.g.
``plate1_filt_Vevo_Tahoe100M_WServicesFrom_ParseGigalab.h5ad``, millions of cells each,
``X`` = sparse raw counts). A plate is opened backed: only ``obs`` is loaded to choose the
cells, then only the chosen rows of ``X`` are read, in chunks. The parquet shards of the
same data are read by :mod:`cellbridge.data.readers_tahoe_parquet`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cellbridge.data._rows import read_sorted_rows
from cellbridge.data.readers import (
    Filters,
    PathLike,
    build_filters,
    read_h5ad,
    require_columns,
    require_positive,
)
from cellbridge.errors import InputError, format_values

__all__ = ["iter_tahoe_plates", "read_tahoe_plate"]

logger = logging.getLogger(__name__)


def read_tahoe_plate(
    path: PathLike,
    *,
    cell_lines: str | Collection[str] | None = None,
    drugs: str | Collection[str] | None = None,
    plates: str | Collection[str] | None = None,
    drug_key: str = "drug",
    cell_line_key: str = "cell_line",
    plate_key: str = "plate",
    chunk_size: int = 100_000,
) -> anndata.AnnData:
    """Read the cells of one Tahoe-100M plate file that pass the ``obs`` filters.

    The file is opened with ``anndata.read_h5ad(path, backed="r")``; the whole ``X`` of the
    plate is never loaded: the selected rows are read ``chunk_size`` at a time and
    stacked, so memory holds the selection plus one chunk.

    Parameters
    ----------
    path
        A per-plate .h5ad file whose ``X`` is CSR (or dense) on disk.
    cell_lines, drugs, plates
        Values to keep (one name or several; ``None`` keeps all). Values are compared as
        strings, so ``plates=["1"]`` matches an integer plate column.
    drug_key, cell_line_key, plate_key
        ``obs`` columns the filters apply to (the real plate files call the cell line
        ``cell_line_id`` or ``cell_name``).
    chunk_size
        Rows of ``X`` read at a time.

    Returns
    -------
    anndata.AnnData
        In memory: the selected rows of ``X`` (dtype as stored), of ``obs`` (unused
        categories removed), all of ``var`` and ``uns``; ``uns["cellbridge"]`` records the
        selection. ``obsm``, ``layers`` and ``raw`` are not read (logged when present).
        An empty selection gives 0 cells (logged as a warning).

    Raises
    ------
    InputError
        For an unreadable file, a filter column that is not in ``obs``, a requested value
        that does not occur in the plate (listed with some that do), or a CSC ``X``
        (rows cannot be read from it without loading it all).
    """
    require_positive(chunk_size, "chunk_size")
    filters = build_filters(
        {
            "drugs": (drug_key, drugs),
            "cell_lines": (cell_line_key, cell_lines),
            "plates": (plate_key, plates),
        }
    )
    return _read_plate(Path(path), filters, chunk_size=chunk_size, strict=True)


def iter_tahoe_plates(
    paths: Sequence[PathLike],
    *,
    cell_lines: str | Collection[str] | None = None,
    drugs: str | Collection[str] | None = None,
    plates: str | Collection[str] | None = None,
    drug_key: str = "drug",
    cell_line_key: str = "cell_line",
    plate_key: str = "plate",
    chunk_size: int = 100_000,
) -> Iterator[anndata.AnnData]:
    """Yield the selection of each plate file in turn, one in memory at a time.

    Takes the options of :func:`read_tahoe_plate`. A plate need not hold every requested
    value (each Tahoe-100M plate has its own drugs), but each value must occur in some
    plate: the plates' ``obs`` are checked before the first one is yielded. Plates with an
    empty selection are skipped (logged).

    Parameters
    ----------
    paths
        Per-plate .h5ad files, read in this order.
    cell_lines, drugs, plates
        Values to keep (one name or several; ``None`` keeps all), compared as strings.
    drug_key, cell_line_key, plate_key
        ``obs`` columns the filters apply to.
    chunk_size
        Rows of ``X`` read at a time.

    Yields
    ------
    anndata.AnnData
        One plate's selection, as :func:`read_tahoe_plate` returns it.
    """
    require_positive(chunk_size, "chunk_size")
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("paths", "is empty", fix="pass at least one plate file")
    filters = build_filters(
        {
            "drugs": (drug_key, drugs),
            "cell_lines": (cell_line_key, cell_lines),
            "plates": (plate_key, plates),
        }
    )
    if filters:
        _check_values_occur(files, filters)
    return _iterate(files, filters, chunk_size)


def _iterate(files: list[Path], filters: Filters, chunk_size: int) -> Iterator[anndata.AnnData]:
    for path in files:
        part = _read_plate(path, filters, chunk_size=chunk_size, strict=False)
        if part.n_obs:
            yield part
        else:
            logger.info("%s: no cell passes the filters, skipped", path.name)


def _matches(column: pd.Series, wanted: list[str]) -> tuple[np.ndarray, set[str]]:
    """Rows whose value (as a string) is wanted, and the values present in the column."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        # compare the few categories, not millions of strings
        codes = column.cat.codes.to_numpy()
        names = column.cat.categories.astype(str)
        hit = np.isin(names, wanted)
        used = np.unique(codes[codes >= 0])
        return (codes >= 0) & hit[np.maximum(codes, 0)], set(names[used])
    text = column.astype(str).where(column.notna())
    return text.isin(wanted).to_numpy(), set(text.dropna().unique())


def _check_values_occur(files: list[Path], filters: Filters) -> None:
    seen: dict[str, set[str]] = {key: set() for key in filters}
    for path in files:
        adata = read_h5ad(path, field="paths", backed=True)
        try:
            require_columns(adata.obs, list(filters), field="obs", where=path.name)
            for key, (_, wanted) in filters.items():
                seen[key] |= _matches(adata.obs[key], wanted)[1] & set(wanted)
        finally:
            adata.file.close()
    for key, (option, wanted) in filters.items():
        unknown = [v for v in wanted if v not in seen[key]]
        if unknown:
            raise InputError(
                option,
                f"values in obs[{key!r}] of none of the {len(files)} plates",
                values=unknown,
                fix="check the spelling and the key; each plate's values are in its obs",
            )


def _read_plate(path: Path, filters: Filters, *, chunk_size: int, strict: bool) -> anndata.AnnData:
    adata = read_h5ad(path, field="path", backed=True)
    try:
        obs = adata.obs
        require_columns(obs, list(filters), field="obs", where=path.name)
        mask = np.ones(adata.n_obs, dtype=bool)
        for key, (option, wanted) in filters.items():
            hit, present = _matches(obs[key], wanted)
            unknown = [v for v in wanted if v not in present]
            if strict and unknown:
                raise InputError(
                    option,
                    f"values not in obs[{key!r}] of plate {path.name}",
                    values=unknown,
                    fix=f"choose among the {len(present)} present, e.g. "
                    f"{format_values(sorted(present), limit=8)}",
                )
            mask &= hit
        rows = np.flatnonzero(mask)
        if adata.X is None:
            raise InputError("path", f"{path.name} has no X", fix="give a plate file with counts")
        fmt = getattr(adata.X, "format", "dense")
        if fmt not in ("csr", "dense"):
            raise InputError(
                "path",
                f"X of {path.name} is stored as {fmt}; rows cannot be read without loading it all",
                fix="rewrite the plate with a CSR X",
            )
        parts = [
            _read_rows(adata.X, rows[i : i + chunk_size], adata.n_obs)
            for i in range(0, len(rows), chunk_size)
        ]
        X = (
            sp.vstack(parts, format="csr")
            if parts
            else sp.csr_matrix((0, adata.n_vars), dtype=adata.X.dtype)
        )
        picked = obs.iloc[rows].copy()
        for name in picked.columns:
            if isinstance(picked[name].dtype, pd.CategoricalDtype):
                picked[name] = picked[name].cat.remove_unused_categories()
        var, uns = adata.var.copy(), copy.deepcopy(dict(adata.uns))
        unread = [f"obsm[{k!r}]" for k in adata.obsm] + [f"layers[{k!r}]" for k in adata.layers]
        if adata.raw is not None:
            unread.append("raw")
        n_plate = adata.n_obs
    finally:
        adata.file.close()
    if unread:
        logger.info("%s: not read: %s", path.name, ", ".join(unread))
    if not len(rows) and strict:
        logger.warning("%s: no cell passes the filters %s", path.name, _describe(filters))
    logger.info("%s: read %d of %d cells", path.name, len(rows), n_plate)
    uns["cellbridge"] = {
        "provenance": f"Tahoe-100M plate h5ad: {path} (selection {_describe(filters)})",
        "n_cells_in_plate": n_plate,
    }
    return anndata.AnnData(X=X, obs=picked, var=var, uns=uns)


def _read_rows(X: Any, rows: np.ndarray, n_obs: int) -> sp.csr_matrix:
    """Read the given (increasing) rows of a backed ``X`` into memory."""
    if getattr(X, "format", None) == "csr":
        # a boolean mask lets anndata read runs of adjacent rows as one slice
        mask = np.zeros(n_obs, dtype=bool)
        mask[rows] = True
        return sp.csr_matrix(X[mask])
    # dense X (an h5py dataset): merged contiguous slices beat h5py's point selection
    return sp.csr_matrix(read_sorted_rows(X, rows.astype(np.int64)))


def _describe(filters: Filters) -> str:
    if not filters:
        return "all cells"
    return "; ".join(f"{key} in {format_values(wanted)}" for key, (_, wanted) in filters.items())
