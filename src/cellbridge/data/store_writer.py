"""Write a cell store: per-sample cell embeddings in one HDF5 file, written atomically.

The layout is described in :mod:`cellbridge.data.store_format`. Samples are appended one
at a time, so memory is bounded by one sample (or one part of it).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import uuid
from collections.abc import Iterable, Sequence, Sized
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py
import numpy as np
import numpy.typing as npt
import pandas as pd

from cellbridge._io import atomic_path
from cellbridge._progress import progress_bar
from cellbridge._version import __version__
from cellbridge.data.store_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    StoreDtype,
    default_chunk_rows,
)
from cellbridge.errors import InputError

__all__ = ["CellStoreWriter", "write_chunks"]

logger = logging.getLogger(__name__)

_LABEL_CHUNK = 65_536


@dataclass(frozen=True)
class _Block:
    """Cells of one sample, checked and cast to the store's dtype."""

    embeddings: npt.NDArray[Any]
    cell_types: pd.Categorical | None
    obs_names: npt.NDArray[np.object_] | None


class CellStoreWriter:
    """Appends samples to a new cell store; the file takes its final name only on close.

    Made by :meth:`cellbridge.data.CellStore.create`; use it as a context manager. An
    exception inside the ``with`` block (or :meth:`abort`) removes the temporary file and
    leaves any previous file at ``path`` untouched.

    Parameters
    ----------
    path
        Final file name.
    dim
        Embedding dimension; every appended array has this many columns.
    dtype
        Stored dtype. float16 halves the file; values beyond ±65504 are refused.
    chunk_rows
        Rows per HDF5 chunk; default about 2 MiB per chunk.
    source
        Where the embeddings come from, e.g. ``"obsm['X_scGPT']"``.
    provenance
        Free text kept in the file (how the data were made).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dim: int,
        dtype: StoreDtype = "float16",
        chunk_rows: int | None = None,
        source: str = "",
        provenance: str = "",
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise InputError("dim", "must be a positive integer", values=[dim])
        if dtype not in ("float16", "float32"):
            raise InputError("dtype", "unsupported", values=[dtype], fix="use float16 or float32")
        if chunk_rows is not None and (
            not isinstance(chunk_rows, int | np.integer) or chunk_rows < 1
        ):
            raise InputError("chunk_rows", "must be a positive integer", values=[chunk_rows])
        self.path = Path(path)
        self.dim = int(dim)
        self.dtype: StoreDtype = dtype
        self.chunk_rows = int(chunk_rows or default_chunk_rows(self.dim, dtype))
        self._attrs = {"source": str(source), "provenance": str(provenance)}
        self._names: list[str] = []
        self._seen: set[str] = set()
        self._offsets = [0]
        self._n_cells = 0
        # Rows wait here until they fill a whole chunk: HDF5 then writes each chunk once,
        # instead of reading back and rewriting the chunk two samples share (~2x faster).
        self._pending = np.empty((self.chunk_rows, self.dim), dtype=dtype)
        self._n_pending = 0
        self._categories: dict[str, int] = {}
        self._with_cell_types: bool | None = None
        self._with_obs_names: bool | None = None
        self._current: str | None = None
        self._state: Literal["open", "closed", "aborted"] = "open"
        self._atomic: AbstractContextManager[Path] = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._file = h5py.File(tmp, "w")
            self._emb = self._file.create_dataset(
                "embeddings",
                shape=(0, self.dim),
                maxshape=(None, self.dim),
                dtype=dtype,
                chunks=(self.chunk_rows, self.dim),
            )
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise

    @property
    def n_samples(self) -> int:
        """Samples appended so far."""
        return len(self._names)

    @property
    def n_cells(self) -> int:
        """Cells appended so far."""
        return self._n_cells

    def append(
        self,
        sample: str,
        embeddings: npt.ArrayLike,
        *,
        cell_types: Sequence[object] | npt.ArrayLike | None = None,
        obs_names: Sequence[object] | npt.ArrayLike | None = None,
    ) -> None:
        """Add one sample: all its cells (rows of ``embeddings``) at once.

        ``cell_types`` and ``obs_names`` (one per cell) are optional, but given for every
        sample or for none. Everything is checked before anything is written.
        """
        self._check_name(sample)
        block = self._check_block(sample, embeddings, cell_types, obs_names)
        if len(block.embeddings) == 0:
            raise InputError(
                f"embeddings of sample {sample!r}",
                "no cells",
                fix="leave the sample out or give it at least one cell",
            )
        self._begin(sample)
        self._extend(block)
        self._end()

    def _begin(self, sample: str) -> None:
        """Start a sample whose cells come in several parts (:meth:`_extend`)."""
        self._check_name(sample)
        if self._current is not None:
            raise InputError("sample", f"sample {self._current!r} is still being written")
        self._current = sample

    def _extend(self, block: _Block) -> None:
        start, stop = self._n_cells, self._n_cells + len(block.embeddings)
        if stop == start:
            return
        self._write_rows(block.embeddings)
        if block.cell_types is not None:
            self._write_labels("cell_type/codes", self._codes(block.cell_types), np.int32, stop)
        if block.obs_names is not None:
            self._write_labels("obs_names", block.obs_names, h5py.string_dtype(), stop)
        self._with_cell_types = block.cell_types is not None
        self._with_obs_names = block.obs_names is not None
        self._n_cells = stop

    def _write_rows(self, rows: npt.NDArray[Any]) -> None:
        size, n, i = self.chunk_rows, len(rows), 0
        if self._n_pending:
            i = min(size - self._n_pending, n)
            self._pending[self._n_pending : self._n_pending + i] = rows[:i]
            self._n_pending += i
            if self._n_pending == size:
                self._write_chunks(self._pending)
                self._n_pending = 0
        whole = (n - i) // size * size
        if whole:
            self._write_chunks(rows[i : i + whole])
            i += whole
        if i < n:
            self._pending[: n - i] = rows[i:]
            self._n_pending = n - i

    def _write_chunks(self, rows: npt.NDArray[Any]) -> None:
        start = self._emb.shape[0]
        self._emb.resize(start + len(rows), axis=0)
        self._emb[start:] = rows

    def _end(self) -> None:
        assert self._current is not None
        if self._n_cells == self._offsets[-1]:
            raise InputError(
                f"embeddings of sample {self._current!r}",
                "no cells",
                fix="leave the sample out or give it at least one cell",
            )
        self._names.append(self._current)
        self._seen.add(self._current)
        self._offsets.append(self._n_cells)
        self._current = None

    def _check_name(self, sample: object) -> None:
        if self._state != "open":
            raise InputError("CellStoreWriter", f"already {self._state}", fix="create a new writer")
        if not isinstance(sample, str) or not sample:
            raise InputError(
                "sample", "names must be non-empty strings", values=[sample], fix="pass str(name)"
            )
        if sample in self._seen:
            raise InputError(
                "sample",
                "appended twice",
                values=[sample],
                fix="append all cells of a sample in one call; give each sample a unique name",
            )

    def _check_block(
        self,
        sample: str,
        embeddings: npt.ArrayLike,
        cell_types: Sequence[object] | npt.ArrayLike | None,
        obs_names: Sequence[object] | npt.ArrayLike | None,
    ) -> _Block:
        field = f"embeddings of sample {sample!r}"
        arr = np.asarray(embeddings)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InputError(
                field,
                f"shape {arr.shape} is not (cells, {self.dim})",
                fix=f"give a 2-D array with {self.dim} columns, one row per cell",
            )
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InputError(field, f"dtype {arr.dtype} is not numeric", fix="pass float values")
        n = arr.shape[0]
        names = None
        if obs_names is not None:
            names = np.asarray([str(x) for x in np.asarray(obs_names).ravel()], dtype=object)
            self._check_length(f"obs_names of sample {sample!r}", len(names), n)
        cats = None
        if cell_types is not None:
            cats = (
                cell_types
                if isinstance(cell_types, pd.Categorical)
                else pd.Categorical(np.asarray(cell_types).ravel())
            )
            self._check_length(f"cell_types of sample {sample!r}", len(cats), n)
        for what, given, before in (
            ("cell_types", cats is not None, self._with_cell_types),
            ("obs_names", names is not None, self._with_obs_names),
        ):
            if before is not None and given != before:
                raise InputError(
                    f"{what} of sample {sample!r}",
                    f"{'given' if given else 'missing'}, unlike the samples before it",
                    fix=f"give {what} for every sample or for none",
                )
        with np.errstate(over="ignore"):
            cast = arr.astype(self.dtype, copy=False)
        if not _all_finite(cast):
            bad = np.flatnonzero(~np.isfinite(cast).all(axis=1))
            shown = names[bad].tolist() if names is not None else bad.tolist()
            if np.isfinite(arr[bad]).all():
                problem, fix = (
                    f"{len(bad)} cells have values beyond the float16 range (|x| > 65504)",
                    "store as dtype='float32', or rescale the embeddings",
                )
            else:
                problem, fix = (
                    f"{len(bad)} cells have NaN or infinite values",
                    "fix or remove those cells before storing them",
                )
            raise InputError(field, problem, values=shown, fix=fix)
        return _Block(cast, cats, names)

    @staticmethod
    def _check_length(field: str, got: int, n: int) -> None:
        if got != n:
            raise InputError(field, f"{got} values for {n} cells", fix="give one value per cell")

    def _codes(self, cats: pd.Categorical) -> npt.NDArray[np.int32]:
        """Map this block's categories to the store's codes; -1 (missing) stays -1."""
        local = [
            self._categories.setdefault(str(c), len(self._categories)) for c in cats.categories
        ]
        lookup = np.asarray([*local, -1], dtype=np.int32)
        return lookup[np.asarray(cats.codes)]

    def _write_labels(self, name: str, values: npt.NDArray[Any], dtype: Any, stop: int) -> None:
        if name not in self._file:
            self._file.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(_LABEL_CHUNK,)
            )
        ds = self._file[name]
        ds.resize((stop,))
        ds[stop - len(values) : stop] = values

    def close(self) -> Path:
        """Write the index, close the file and rename it to ``path``; returns ``path``."""
        if self._state == "closed":
            return self.path
        try:
            if self._state == "aborted":
                raise InputError("CellStoreWriter", "aborted", fix="create a new writer")
            if self._current is not None:
                raise InputError("sample", f"sample {self._current!r} was begun but not ended")
            if not self._names:
                raise InputError("samples", "none were appended", fix="append at least one")
            self._write_chunks(self._pending[: self._n_pending])
            self._write_index()
            self._file.close()
        except BaseException as err:
            self._abort(err)
            raise
        self._state = "closed"
        self._atomic.__exit__(None, None, None)
        logger.info(
            "wrote cell store %s: %d samples, %d cells x %d (%s)",
            self.path,
            len(self._names),
            self._n_cells,
            self.dim,
            self.dtype,
        )
        return self.path

    def abort(self) -> None:
        """Discard everything written; an existing file at ``path`` stays as it was."""
        self._abort(None)

    def _abort(self, err: BaseException | None) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        with contextlib.suppress(Exception):
            self._file.close()
        err = err if err is not None else InputError("CellStoreWriter", "aborted")
        self._atomic.__exit__(type(err), err, err.__traceback__)

    def _write_index(self) -> None:
        f = self._file
        f.create_dataset("offsets", data=np.asarray(self._offsets, dtype=np.int64))
        strings = h5py.string_dtype()
        f.create_dataset("samples", data=np.asarray(self._names, dtype=object), dtype=strings)
        if self._with_cell_types:
            categories = np.asarray(list(self._categories), dtype=object)
            f.create_dataset("cell_type/categories", data=categories, dtype=strings)
        attrs = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "dtype": self.dtype,
            "chunk_rows": self.chunk_rows,
            **self._attrs,
            "created_by": f"cellbridge {__version__}",
            # Lets a reader that reopens the path (after a fork) notice a replaced file.
            "store_id": uuid.uuid4().hex,
            "n_samples": len(self._names),
            "n_cells": self._n_cells,
        }
        f.attrs.update(attrs)

    def __enter__(self) -> CellStoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._abort(exc)


def _all_finite(array: npt.NDArray[Any]) -> bool:
    if array.dtype == np.float16:
        # numpy's isfinite is not vectorised for float16 (4 ms per 3.4 M values); inf and
        # NaN are the values whose 5 exponent bits are all ones (0.8 ms).
        exponents = array.view(np.uint16) & np.uint16(0x7C00)
        return bool(exponents.max(initial=0) != 0x7C00)
    return bool(np.isfinite(array).all())


def write_chunks(
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
) -> Path:
    """Write ``(sample, embeddings[, cell_types])`` items, one sample each, to ``path``.

    ``dim`` defaults to the column count of the first item; ``n_samples`` only sizes the
    progress bar (default ``len(chunks)`` when it has one).
    """
    items = iter(chunks)
    first = next(items, None)
    if first is None:
        raise InputError("chunks", "no samples", fix="give at least one (sample, embeddings)")
    if dim is None:
        shape = np.shape(_unpack(first)[1])
        if len(shape) != 2:
            raise InputError(
                f"embeddings of sample {first[0]!r}", f"shape {shape} is not (cells, dim)"
            )
        dim = int(shape[1])
    if n_samples is None:
        n_samples = len(chunks) if isinstance(chunks, Sized) else 0
    writer = CellStoreWriter(
        path, dim=dim, dtype=dtype, chunk_rows=chunk_rows, source=source, provenance=provenance
    )
    with writer, progress_bar("cell store", total=n_samples, enabled=progress) as advance:
        for item in itertools.chain([first], items):
            sample, embeddings, cell_types = _unpack(item)
            writer.append(sample, embeddings, cell_types=cell_types)
            advance(1)
    return writer.path


def _unpack(item: tuple[Any, ...]) -> tuple[str, Any, Any]:
    if not isinstance(item, tuple | list) or len(item) not in (2, 3):
        raise InputError(
            "chunks",
            "each item must be (sample, embeddings) or (sample, embeddings, cell_types)",
            values=[type(item).__name__],
        )
    return item[0], item[1], item[2] if len(item) == 3 else None
