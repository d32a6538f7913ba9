"""An on-disk store of per-sample cell embeddings, read one sample at a time.

POPPY's cell encoder (paper §2.2.1, Eq. 2) pools a *set* of frozen cell embeddings per
sample; the 3CA training atlas holds 2.7 M cells from 1,631 samples (§A.3.1), 11 GB at
2,048-d float16. A :class:`CellStore` keeps them in one HDF5 file (layout and the choice
of HDF5 in :mod:`cellbridge.data.store_format`) so that a training loop reads one sample,
or a random subset of ``max_cells`` of its cells, with memory bounded by that sample.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "cells.h5")
>>> rng = np.random.default_rng(0)
>>> with CellStore.create(path, dim=4) as w:
...     w.append("p1", rng.normal(size=(3, 4)))
...     w.append("p2", rng.normal(size=(5, 4)))
>>> with CellStore.open(path) as store:
...     print(len(store), store.n_cells("p2"), store["p2"].shape, store.sample("p2", 2, 0).shape)
2 5 (5, 4) (2, 4)
>>> tmp.cleanup()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import numpy.typing as npt
import pandas as pd
from anndata import AnnData

from cellbridge.data._rows import read_sorted_rows
from cellbridge.data.store_anndata import write_anndata
from cellbridge.data.store_format import Header, StoreDtype, open_file, read_header
from cellbridge.data.store_writer import CellStoreWriter, write_chunks
from cellbridge.errors import InputError, format_values

__all__ = ["CellStore"]

logger = logging.getLogger(__name__)

ReadDtype = Literal["float16", "float32", "float64"]


class CellStore:
    """Read-only access to a cell store file; build one with :meth:`create` or ``from_*``.

    Safe to hand to a ``torch.utils.data.DataLoader`` with several workers: the file is
    opened lazily in each process (an h5py handle must not cross a fork) and the store
    pickles without its handle. ``store[i]`` accepts a position as well as a name, so
    ``DataLoader(store, batch_size=None, num_workers=4)`` yields one sample at a time.

    Parameters
    ----------
    path
        The store file.
    header
        Its header, as read by :meth:`open` (which is how a store is opened: the
        constructor is not called directly).
    """

    def __init__(self, path: Path, header: Header) -> None:
        self.path = path
        self._header = header
        self._positions = {name: i for i, name in enumerate(header.samples)}
        self._file: h5py.File | None = None
        self._emb: h5py.Dataset | None = None  # looked up once: a lookup costs ~0.1 ms
        self._pid: int | None = None
        # Direct reads of uncompressed chunks (see _read_rows), set up once per process.
        self._raw: _RawRows | None = None
        self._raw_pid: int | None = None

    # -- building ------------------------------------------------------------------------

    @staticmethod
    def create(
        path: str | os.PathLike[str],
        *,
        dim: int,
        dtype: StoreDtype = "float16",
        chunk_rows: int | None = None,
        source: str = "",
        provenance: str = "",
    ) -> CellStoreWriter:
        """A writer that appends samples to a new store at ``path`` (atomically).

        Use it as a context manager: ``with CellStore.create(p, dim=512) as w:
        w.append(name, emb)``. See :class:`~cellbridge.data.store_writer.CellStoreWriter`.
        """
        return CellStoreWriter(
            path, dim=dim, dtype=dtype, chunk_rows=chunk_rows, source=source, provenance=provenance
        )

    @classmethod
    def from_chunks(
        cls,
        chunks: Iterable[tuple[Any, ...]],
        path: str | os.PathLike[str],
        *,
        dim: int | None = None,
        dtype: StoreDtype = "float16",
        chunk_rows: int | None = None,
        source: str = "",
        provenance: str = "",
        progress: bool = False,
        n_samples: int | None = None,
    ) -> CellStore:
        """Write ``(sample, embeddings[, cell_types])`` items (e.g. a generator) and open.

        The writer holds one item at a time. ``dim`` defaults to the first item's column
        count; ``n_samples`` sizes the progress bar.
        """
        written = write_chunks(
            chunks,
            path,
            dim=dim,
            dtype=dtype,
            chunk_rows=chunk_rows,
            source=source,
            provenance=provenance,
            progress=progress,
            n_samples=n_samples,
        )
        return cls.open(written)

    @classmethod
    def from_anndata(
        cls,
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
    ) -> CellStore:
        """Write the cells of an AnnData, grouped by ``obs[sample_key]``, and open the store.

        Parameters
        ----------
        adata
            In memory, backed (``anndata.read_h5ad(p, backed="r")``) or an .h5ad path.
            Pass the path when the embedding is in ``obsm`` and larger than memory:
            anndata's backed mode keeps only ``X`` on disk, a path streams ``obsm`` too.
        path
            The store file to write (atomically).
        sample_key
            ``obs`` column naming each cell's sample. Samples need not be contiguous;
            they are stored in order of first appearance, their cells in ``obs`` order.
        obsm_key
            The frozen embedding, e.g. ``"X_scGPT"``; ``None`` uses ``X``.
        cell_type_key
            Optional ``obs`` column stored as per-cell codes. ``obs_names`` are stored.
        batch_cells
            Rows read at once. Memory is about ``batch_cells * dim`` values of the
            source dtype, plus one read slice (at most 32 MiB) and the ``obs`` columns
            needed. The store written does not depend on it.
        dtype
            Stored dtype (float16 halves the file; values beyond ±65504 are refused).
        chunk_rows
            Rows per HDF5 chunk; default about 2 MiB per chunk.
        progress
            Show a progress bar over cells.
        """
        written = write_anndata(
            adata,
            path,
            sample_key=sample_key,
            obsm_key=obsm_key,
            cell_type_key=cell_type_key,
            batch_cells=batch_cells,
            dtype=dtype,
            chunk_rows=chunk_rows,
            progress=progress,
        )
        return cls.open(written)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> CellStore:
        """Open a store read-only; refuses files that are not complete cell stores."""
        path = Path(path)
        file = open_file(path)
        try:
            header = read_header(file, path)
        except BaseException:
            file.close()
            raise
        store = cls(path, header)
        store._file, store._emb, store._pid = file, file["embeddings"], os.getpid()
        return store

    # -- metadata ------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._header.dim

    @property
    def dtype(self) -> StoreDtype:
        """The dtype stored on disk."""
        return self._header.dtype

    @property
    def samples(self) -> tuple[str, ...]:
        """Sample names in stored order."""
        return self._header.samples

    @property
    def source(self) -> str:
        """Where the embeddings came from (e.g. ``"obsm['X_scGPT']"``)."""
        return self._header.source

    @property
    def provenance(self) -> str:
        """How the store was made."""
        return self._header.provenance

    @property
    def cell_counts(self) -> pd.Series:
        """Cells per sample, indexed by sample name."""
        counts = np.diff(self._header.offsets)
        return pd.Series(counts, index=pd.Index(self.samples, name="sample"), name="n_cells")

    @property
    def has_cell_types(self) -> bool:
        """Whether per-cell types are stored."""
        return self._header.categories is not None

    @property
    def has_obs_names(self) -> bool:
        """Whether per-cell names are stored."""
        return self._header.has_obs_names

    def n_cells(self, sample: str | int) -> int:
        """Number of cells of one sample."""
        lo, hi = self._bounds(sample)
        return hi - lo

    def __len__(self) -> int:
        return len(self._header.samples)

    def __iter__(self) -> Iterator[str]:
        return iter(self._header.samples)

    def __contains__(self, sample: object) -> bool:
        return sample in self._positions

    def __repr__(self) -> str:
        n_cells = int(self._header.offsets[-1])
        return (
            f"CellStore({str(self.path)!r}: {len(self)} samples, {n_cells} cells x "
            f"{self.dim} {self.dtype})"
        )

    # -- reading -------------------------------------------------------------------------

    def __getitem__(self, sample: str | int) -> npt.NDArray[Any]:
        """All cells of one sample (by name or position), as float32."""
        return self.read(sample)

    def read(self, sample: str | int, *, dtype: ReadDtype | None = "float32") -> npt.NDArray[Any]:
        """All cells of one sample, ``(n_cells, dim)``; ``dtype=None`` keeps the stored dtype.

        float16 -> float32 conversion on the CPU costs about as much as reading a cached
        sample; ``dtype=None`` and converting on the accelerator avoids it.
        """
        lo, hi = self._bounds(sample)
        return _as(self._slice(lo, hi), dtype)

    def sample(
        self,
        sample: str | int,
        max_cells: int,
        rng: np.random.Generator | int,
        *,
        dtype: ReadDtype | None = "float32",
    ) -> npt.NDArray[Any]:
        """At most ``max_cells`` cells of one sample, drawn uniformly without replacement.

        A sample with ``max_cells`` cells or fewer is returned whole. The rows come in
        stored order (the draw is sorted before reading). ``rng`` is a seed or a
        ``numpy.random.Generator`` (advanced by the draw).
        """
        if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
            raise InputError("max_cells", "must be a positive integer", values=[max_cells])
        lo, hi = self._bounds(sample)
        if hi - lo <= max_cells:
            return _as(self._slice(lo, hi), dtype)
        gen = np.random.default_rng(rng)
        rows = np.sort(gen.choice(hi - lo, size=max_cells, replace=False)) + lo
        return _as(self._read_rows(rows.astype(np.int64)), dtype)

    def iter_samples(
        self, *, order: Iterable[str | int] | None = None, dtype: ReadDtype | None = "float32"
    ) -> Iterator[tuple[str, npt.NDArray[Any]]]:
        """Yield ``(name, cells)`` one sample at a time, in ``order`` (default: stored)."""
        positions = range(len(self)) if order is None else [self._position(s) for s in order]
        for i in positions:
            yield self._header.samples[i], self.read(i, dtype=dtype)

    def cell_types(self, sample: str | int) -> pd.Categorical[str]:
        """Per-cell types of one sample (missing labels are NaN)."""
        if self._header.categories is None:
            raise InputError(
                "cell_types", "this store has none", fix="build it with cell_type_key=..."
            )
        lo, hi = self._bounds(sample)
        codes = np.asarray(self._h5()["cell_type/codes"][lo:hi], dtype=np.int32)
        return pd.Categorical.from_codes(codes, categories=pd.Index(self._header.categories))

    def obs_names(self, sample: str | int) -> npt.NDArray[np.object_]:
        """Per-cell names of one sample."""
        if not self._header.has_obs_names:
            raise InputError("obs_names", "this store has none", fix="pass obs_names=...")
        lo, hi = self._bounds(sample)
        return np.asarray(self._h5()["obs_names"].asstr()[lo:hi], dtype=object)

    # -- file handle ---------------------------------------------------------------------

    def close(self) -> None:
        """Release this process's file handle; a later read opens the file again."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        if self._raw is not None and self._raw_pid == os.getpid():
            self._raw.close()
        self._file, self._emb, self._pid = None, None, None
        self._raw, self._raw_pid = None, None

    def __enter__(self) -> CellStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_emb"], state["_pid"] = None, None, None
        state["_raw"], state["_raw_pid"] = None, None
        return state

    def _h5(self) -> h5py.File:
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            # A handle inherited through fork belongs to the parent's HDF5 library state;
            # this process opens its own (and leaves the inherited one alone).
            file = open_file(self.path)
            if file.attrs.get("store_id") != self._header.store_id:
                file.close()
                raise InputError(
                    "path",
                    "the file was replaced after the store was opened",
                    values=[str(self.path)],
                    fix="open it again with CellStore.open",
                )
            self._file, self._emb, self._pid = file, file["embeddings"], pid
            logger.debug("opened cell store %s in process %d", self.path, pid)
        return self._file

    def _embeddings(self) -> h5py.Dataset:
        self._h5()
        assert self._emb is not None
        return self._emb

    def _slice(self, lo: int, hi: int) -> npt.NDArray[Any]:
        emb = self._embeddings()
        out = np.empty((hi - lo, self.dim), dtype=emb.dtype)
        emb.read_direct(out, np.s_[lo:hi])  # no intermediate copy, unlike emb[lo:hi]
        return out

    def _read_rows(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        """Rows ``rows`` (sorted, unique) of the embeddings, in the stored dtype.

        An uncompressed store is read with ``os.preadv`` straight from the file, one call
        per run of consecutive rows within a chunk: a scattered draw then reads only its
        own rows (~2 us a row), where HDF5 reads the merged slices around them (a draw
        of 256 of 1,650 rows at 2,048-d reads the whole sample, ~7 MB). Other layouts
        (filters, partial-width chunks) go through h5py.
        """
        pid = os.getpid()
        if self._raw_pid != pid:
            self._raw, self._raw_pid = _RawRows.open(self.path, self._embeddings()), pid
        if self._raw is None:
            return read_sorted_rows(self._embeddings(), rows)
        return self._raw.read(rows)

    def _position(self, sample: str | int) -> int:
        if isinstance(sample, int | np.integer) and not isinstance(sample, bool):
            if 0 <= sample < len(self):
                return int(sample)
            raise InputError(
                "sample", f"position out of range for {len(self)} samples", values=[sample]
            )
        position = self._positions.get(sample) if isinstance(sample, str) else None
        if position is None:
            raise InputError(
                "sample",
                "not in the store",
                values=[sample],
                fix=f"use a name from store.samples ({format_values(self.samples)})",
            )
        return position

    def _bounds(self, sample: str | int) -> tuple[int, int]:
        i = self._position(sample)
        offsets = self._header.offsets
        return int(offsets[i]), int(offsets[i + 1])


def _as(array: npt.NDArray[Any], dtype: ReadDtype | None) -> npt.NDArray[Any]:
    if dtype is None or array.dtype == dtype:
        return array
    if array.dtype == np.float16 and dtype == "float32":
        # numpy converts float16 element by element (~1.5 ns a value, 8x the read of a
        # cached sample); torch uses the CPU's F16C instructions, ~10x faster, same values.
        import torch

        out = np.empty(array.shape, dtype=np.float32)
        torch.from_numpy(out).copy_(torch.from_numpy(array))
        return out
    return array.astype(dtype)


class _RawRows:
    """Rows of an uncompressed HDF5 dataset read with ``os.preadv`` at their file offsets.

    Built from the chunk index (one ``chunk_iter`` pass at open); only for datasets whose
    chunks span whole rows with no filter, all allocated. Holds its own descriptor.
    """

    def __init__(self, fd: int, dtype: np.dtype[Any], dim: int, chunk_rows: int, offsets: Any):
        self.fd = fd
        self.dtype = dtype
        self.dim = dim
        self.row_bytes = dim * dtype.itemsize
        self.chunk_rows = chunk_rows
        self.offsets = offsets  # file byte offset of chunk k (rows k*chunk_rows ...)

    @classmethod
    def open(cls, path: Path, emb: h5py.Dataset) -> _RawRows | None:
        """The reader, or ``None`` when the layout needs HDF5 (filters, partial chunks)."""
        n_rows, dim = emb.shape
        if emb.chunks is None or emb.chunks[1] != dim or n_rows == 0:
            return None
        if emb.id.get_create_plist().get_nfilters() != 0 or emb.dtype.kind != "f":
            return None
        chunk_rows = int(emb.chunks[0])
        n_chunks = -(-n_rows // chunk_rows)
        offsets = np.full(n_chunks, -1, dtype=np.int64)

        def visit(info: Any) -> None:
            k = info.chunk_offset[0] // chunk_rows
            if info.chunk_offset[1] == 0 and info.filter_mask == 0 and k < n_chunks:
                offsets[k] = info.byte_offset

        try:
            emb.id.chunk_iter(visit)
        except (AttributeError, RuntimeError, OSError):  # older HDF5 / h5py
            return None
        if (offsets < 0).any():  # an unallocated chunk reads as the fill value
            return None
        return cls(os.open(path, os.O_RDONLY), emb.dtype, dim, chunk_rows, offsets)

    def read(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        if len(rows) == 0:
            return out
        chunk = rows // self.chunk_rows
        # a run: consecutive rows in one chunk, contiguous in the file
        breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(chunk) != 0)) + 1
        starts = np.concatenate([[0], breaks]).tolist()
        stops = np.concatenate([breaks, [len(rows)]]).tolist()
        pos = (self.offsets[chunk] + (rows % self.chunk_rows) * self.row_bytes).tolist()
        flat = out.data.cast("B")
        rb = self.row_bytes
        for start, stop in zip(starts, stops, strict=True):
            want = (stop - start) * rb
            if os.preadv(self.fd, [flat[start * rb : stop * rb]], pos[start]) != want:
                raise OSError(f"short read from the cell store at byte {pos[start]}")
        return out

    def close(self) -> None:
        os.close(self.fd)
