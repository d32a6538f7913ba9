"""Build a cell store from an AnnData (in memory, backed, or an .h5ad path), batch by batch.

Cells are grouped by sample without loading them all: the sample column is read, each
sample's rows are sorted, and the rows are read in batches of at most ``batch_cells``
(sorted, as h5py and anndata's backed arrays need), then written sample by sample.
Samples are stored in the order they first appear in ``obs``; the cells of a sample keep
their ``obs`` order. Memory: one batch, one read slice (:mod:`cellbridge.data._rows`) and
the ``obs`` columns needed.

Atlases written sample after sample (the usual case) are read once, in long contiguous
slices. When samples are interleaved at random, the rows of each batch are spread over
the whole source: merged slices then read the rows in between too, and the time grows with
the number of batches, capped (by the gap rule of :mod:`cellbridge.data._rows`) at about
twice that of one read call per cell.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

try:
    from anndata.io import read_elem, sparse_dataset
except ImportError:  # anndata < 0.11
    from anndata.experimental import read_elem, sparse_dataset

from cellbridge._checks import require_unique
from cellbridge._progress import progress_bar
from cellbridge.data._rows import read_sorted_rows
from cellbridge.data.readers import require_columns
from cellbridge.data.store_format import StoreDtype
from cellbridge.data.store_writer import CellStoreWriter
from cellbridge.errors import InputError, format_values

__all__ = ["write_anndata"]


@dataclass(frozen=True)
class _Source:
    """Where the cells come from: the matrix to read rows of, and the obs columns needed."""

    matrix: Any  # numpy, scipy sparse, h5py.Dataset or anndata's backed sparse dataset
    obs: pd.DataFrame  # the needed columns, indexed by obs_names
    embedding: str  # "X" or "obsm['key']"
    where: str  # the file, or "in-memory AnnData"


def write_anndata(
    adata: AnnData | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    sample_key: str = "sample",
    obsm_key: str | None = None,
    cell_type_key: str | None = None,
    batch_cells: int = 200_000,
    dtype: StoreDtype = "float16",
    chunk_rows: int | None = None,
    progress: bool = False,
) -> Path:
    """Write the cells of ``adata`` to a cell store at ``path``; see ``CellStore.from_anndata``."""
    if isinstance(batch_cells, bool) or not isinstance(batch_cells, int) or batch_cells < 1:
        raise InputError("batch_cells", "must be a positive integer", values=[batch_cells])
    keys = [sample_key] if cell_type_key is None else [sample_key, cell_type_key]
    with _open(adata, obsm_key, keys) as src:
        if len(src.matrix.shape) != 2 or src.matrix.shape[0] != len(src.obs):
            raise InputError(
                src.embedding,
                f"shape {src.matrix.shape} does not have one row per cell ({len(src.obs)})",
            )
        labels = src.obs[sample_key]
        codes, uniques = pd.factorize(labels)
        if (codes < 0).any():
            missing = src.obs.index[codes < 0]
            raise InputError(
                f"obs[{sample_key!r}]",
                f"no sample label for {len(missing)} cells",
                values=missing.tolist(),
                fix="label every cell, or subset the AnnData to labelled cells first",
            )
        names = [str(u) for u in uniques]
        require_unique(names, f"obs[{sample_key!r}]", what="sample names as text")
        order = np.argsort(codes, kind="stable")  # grouped by sample, obs order within
        ends = np.cumsum(np.bincount(codes, minlength=len(names)))
        cell_types = None if cell_type_key is None else pd.Categorical(src.obs[cell_type_key])
        obs_names = np.asarray(src.obs.index.astype(str), dtype=object)
        provenance = (
            f"CellStore.from_anndata({src.where}, sample_key={sample_key!r}, "
            f"cell_type_key={cell_type_key!r})"
        )
        writer = CellStoreWriter(
            path,
            dim=int(src.matrix.shape[1]),
            dtype=dtype,
            chunk_rows=chunk_rows,
            source=src.embedding,
            provenance=provenance,
        )
        total = len(order)
        with writer, progress_bar("cell store", total=total, enabled=progress) as advance:
            current = -1
            for start in range(0, total, batch_cells):
                stop = min(start + batch_cells, total)
                rows = np.sort(order[start:stop])
                block = _read_rows(src.matrix, rows)
                first = int(np.searchsorted(ends, start, side="right"))
                last = int(np.searchsorted(ends, stop - 1, side="right"))
                for s in range(first, last + 1):
                    if s != current:  # a sample may continue from the previous batch
                        if current >= 0:
                            writer._end()
                        writer._begin(names[s])
                        current = s
                    lo = max(start, int(ends[s - 1]) if s else 0)
                    picked = order[lo : min(stop, int(ends[s]))]
                    emb = block[np.searchsorted(rows, picked)]
                    cats = None if cell_types is None else cell_types[picked]
                    writer._extend(writer._check_block(names[s], emb, cats, obs_names[picked]))
                advance(stop - start)
                del block  # before the next batch is read: one batch in memory, not two
            writer._end()
    return writer.path


@contextlib.contextmanager
def _open(
    adata: AnnData | str | os.PathLike[str], obsm_key: str | None, keys: list[str]
) -> Iterator[_Source]:
    if isinstance(adata, AnnData):
        require_columns(adata.obs, keys, field="obs key", where="adata.obs")
        matrix = adata.X if obsm_key is None else _obsm(adata.obsm, obsm_key, "adata")
        if isinstance(matrix, pd.DataFrame):
            matrix = matrix.to_numpy()
        where = f"backed AnnData {adata.filename}" if adata.isbacked else "in-memory AnnData"
        yield _Source(matrix, adata.obs[keys], _describe(obsm_key), where)
        return
    path = Path(adata)
    if not path.is_file():
        raise InputError("adata", f"no such file: {str(path)!r}")
    # Not anndata.read_h5ad(backed="r"): backed mode loads every obsm array into memory,
    # and the embedding is usually in obsm. h5py reads it row range by row range instead.
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(
            "adata",
            f"{str(path)!r} is not a readable .h5ad file ({err})",
            fix="check the file is complete (not truncated) and was written by anndata",
        ) from err
    with f:
        obs = f["obs"]
        columns = [str(c) for c in obs.attrs.get("column-order", [])]
        require_columns(pd.DataFrame(columns=columns), keys, field="obs key", where=str(path))
        index = np.asarray(read_elem(obs[obs.attrs["_index"]]))
        frame = pd.DataFrame({k: read_elem(obs[k]) for k in keys}, index=pd.Index(index))
        obsm = f.get("obsm", {})
        element = f["X"] if obsm_key is None else _obsm(obsm, obsm_key, str(path))
        matrix = element if isinstance(element, h5py.Dataset) else sparse_dataset(element)
        yield _Source(matrix, frame, _describe(obsm_key), str(path))


def _obsm(obsm: Any, key: str, where: str) -> Any:
    if key not in obsm:
        raise InputError(
            "obsm_key",
            f"no obsm key {key!r} in {where}",
            values=[key],
            fix=f"choose one of the obsm keys: {format_values(list(obsm), limit=20)}",
        )
    return obsm[key]


def _describe(obsm_key: str | None) -> str:
    return "X" if obsm_key is None else f"obsm[{obsm_key!r}]"


def _read_rows(matrix: Any, rows: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Dense rows ``rows`` (sorted) of any matrix an AnnData may hold."""
    if isinstance(matrix, h5py.Dataset):
        return read_sorted_rows(matrix, rows)
    if isinstance(matrix, np.ndarray):
        return matrix[rows]
    if sp.issparse(matrix):
        return np.asarray(matrix[rows].toarray())
    # anndata's backed sparse dataset reads runs of adjacent rows as one slice when given a
    # boolean mask, and one row at a time when given integer positions.
    mask = np.zeros(matrix.shape[0], dtype=bool)
    mask[rows] = True
    return np.asarray(matrix[mask].toarray())
