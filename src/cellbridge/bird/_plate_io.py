"""Read what DE signatures need of an .h5ad plate file, and nothing else.

Per-plate files of a screen (Tahoe-100M ships one .h5ad per plate, millions of cells each)
are opened with h5py: the four ``obs`` key columns are read (not the rest of ``obs``, nor
``obsm``/``layers``/``uns``, which ``anndata.read_h5ad(backed="r")`` would load), the cells
are chosen from them, and only the chosen rows of ``X`` (or of one layer) are read.

Rows are read as slices of the CSR ``data``/``indices`` arrays: consecutive chosen rows,
and chosen rows separated by fewer than :data:`GAP_ENTRIES` stored entries, are read as
one slice (one h5py call costs about as much as reading 64 KiB), and no slice spans more
than :data:`SPAN_ENTRIES` entries. The rows in a gap are dropped from the slice at once;
the result holds only the chosen rows, allocated once at its final size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from cellbridge.data._rows import read_sorted_rows, spans
from cellbridge.errors import InputError

__all__ = [
    "GAP_ENTRIES",
    "SPAN_ENTRIES",
    "expression_block",
    "in_memory_rows",
    "open_plate",
    "read_obs_columns",
    "read_rows",
    "read_var_names",
]

#: chosen rows closer than this many stored entries are read in one slice with the gap
GAP_ENTRIES = 8192
#: most stored entries read in one slice (with float32 data and int32 indices, 32 MiB)
SPAN_ENTRIES = 1 << 22
#: h5py chunk cache per dataset: a compressed chunk is decompressed once while the rows
#: in it are read, however many slices read them
CHUNK_CACHE_BYTES = 64 * 1024**2


@contextmanager
def open_plate(path: str | Path, *, field: str = "paths") -> Iterator[Any]:
    """Open an .h5ad file read-only with h5py; a missing, unreadable or non-AnnData file
    is an :class:`InputError` naming ``field``."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(field, "no such file", values=[str(path)])
    try:
        handle = h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=10_007)
    except OSError as exc:
        raise InputError(
            field,
            f"{str(path)!r} is not a readable .h5ad file ({exc})",
            fix="check the file is complete (not truncated) and was written by anndata",
        ) from exc
    with handle:
        if "obs" not in handle or "var" not in handle:
            raise InputError(
                field, f"{path.name} has no obs/var: not an .h5ad file", values=[str(path)]
            )
        yield handle


def read_obs_columns(handle: Any, keys: Sequence[str], *, where: str) -> pd.DataFrame:
    """The ``obs`` columns ``keys`` of an open .h5ad file (index: the row numbers), or an
    :class:`InputError` naming the file and the missing columns."""
    from anndata.io import read_elem

    group = handle["obs"]
    index_name = group.attrs.get("_index", "_index")
    present = [str(k) for k in group.attrs.get("column-order", [])] or [
        k for k in group if k != index_name
    ]
    missing = [k for k in keys if k not in present or k not in group]
    if missing:
        raise InputError(
            f"obs of {where}",
            f"has no column(s) {missing}",
            values=present,
            fix="name the plate's columns with drug_key, control_key, plate_key and cell_line_key",
        )
    columns = {key: read_elem(group[key]) for key in dict.fromkeys(keys)}
    return pd.DataFrame(columns, index=pd.RangeIndex(len(next(iter(columns.values())))))


def read_var_names(handle: Any) -> pd.Index:
    """The gene names (``var`` index) of an open .h5ad file, as strings."""
    from anndata.io import read_elem

    group = handle["var"]
    return pd.Index(read_elem(group[group.attrs.get("_index", "_index")])).astype(str)


def has_log1p_mark(handle: Any) -> bool:
    """Whether ``uns["log1p"]`` (scanpy's mark of log-normalised data) is in the file."""
    return "uns" in handle and "log1p" in handle["uns"]


def read_rows(handle: Any, rows: np.ndarray, *, layer: str | None, where: str) -> sp.csr_matrix:
    """Rows ``rows`` (sorted, unique) of ``X`` (or ``layers[layer]``) of an open .h5ad file.

    Returns a CSR matrix of the stored dtypes. Memory: the result (its entries times the
    stored data and index sizes, plus 8 bytes per row), the file's row pointers (8 bytes
    per row of the file) and one slice of at most :data:`SPAN_ENTRIES` entries.
    """
    if layer is None:
        if "X" not in handle:
            raise InputError("paths", f"{where} has no X", fix="give plate files with counts")
        elem, name = handle["X"], "X"
    else:
        if "layers" not in handle or layer not in handle["layers"]:
            present = list(handle["layers"]) if "layers" in handle else []
            raise InputError("layer", f"not in the layers of {where}", values=present)
        elem, name = handle["layers"][layer], f"layers[{layer!r}]"
    import h5py

    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(elem, h5py.Dataset):  # a dense matrix
        return sp.csr_matrix(read_sorted_rows(elem, rows))
    encoding = elem.attrs.get("encoding-type", "")
    if encoding != "csr_matrix":
        raise InputError(
            "paths",
            f"{name} of {where} is stored as {encoding or 'an unknown group'}; rows cannot be "
            "read without loading it all",
            fix="rewrite the plate with a CSR matrix",
        )
    n_cols = int(elem.attrs["shape"][1])
    indptr = np.asarray(elem["indptr"][:], dtype=np.int64)
    data_ds, index_ds = elem["data"], elem["indices"]
    starts, stops = indptr[rows], indptr[rows + 1]
    del indptr
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(stops - starts, out=out_ptr[1:])
    data = np.empty(int(out_ptr[-1]), dtype=data_ds.dtype)
    indices = np.empty(int(out_ptr[-1]), dtype=index_ds.dtype)
    for first, last in spans(starts, stops, max_gap=GAP_ENTRIES, max_span=SPAN_ENTRIES):
        lo, hi = int(starts[first]), int(stops[last - 1])
        if hi == lo:
            continue
        out_lo, out_hi = int(out_ptr[first]), int(out_ptr[last])
        if out_hi - out_lo == hi - lo:  # adjacent rows: the slice is the result
            data[out_lo:out_hi] = data_ds[lo:hi]
            indices[out_lo:out_hi] = index_ds[lo:hi]
            continue
        # position in the slice of every kept entry: each row's entries shifted by its gap
        lengths = stops[first:last] - starts[first:last]
        shift = np.repeat(starts[first:last] - lo - (out_ptr[first:last] - out_lo), lengths)
        take = np.arange(out_hi - out_lo, dtype=np.int64) + shift
        data[out_lo:out_hi] = np.asarray(data_ds[lo:hi])[take]
        indices[out_lo:out_hi] = np.asarray(index_ds[lo:hi])[take]
    return sp.csr_matrix((data, indices, out_ptr), shape=(len(rows), n_cols))


def in_memory_rows(
    path: str | Path,
    rows: np.ndarray,
    *,
    layer: str | None,
    obs: pd.DataFrame,
    log1p: bool,
) -> AnnData:
    """An in-memory AnnData of rows ``rows`` of a file's ``X`` (or ``layers[layer]``),
    with ``obs`` as given, the file's gene names and its ``log1p`` mark."""
    with open_plate(path, field="path") as handle:
        matrix = read_rows(handle, rows, layer=layer, where=Path(path).name)
        genes = read_var_names(handle)
    return expression_block(matrix, layer=layer, cells=obs.index, genes=genes, log1p=log1p)


def expression_block(
    matrix: Any, *, layer: str | None, cells: pd.Index, genes: pd.Index, log1p: bool
) -> AnnData:
    """The AnnData that the DE of a block of cells reads: ``matrix`` as ``X`` (or as
    ``layers[layer]``), the cells' and genes' names, and scanpy's ``log1p`` mark when the
    expression is log-normalised already."""
    return AnnData(
        X=matrix if layer is None else None,
        layers=None if layer is None else {layer: matrix},
        obs=pd.DataFrame(index=cells),
        var=pd.DataFrame(index=genes),
        uns={"log1p": {}} if log1p else None,
    )
