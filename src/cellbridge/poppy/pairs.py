"""Training pairs of POPPY stage 1: a bulk profile and the cells of its single-cell sample.

Every training item is one bulk-like profile (a pseudobulk, an in-silico bulk, a real
bulk with matched single-cell data) paired with the cells of one single-cell sample. A
batch of ``B`` items gives the rows of ``Z_b`` (bulk encoder) and ``Z_c`` (cell encoder)
and the ``B x B`` block of the similarity ``S`` (POPPY §2.2.3), in the order of the
cross-cohort sampler (§2.2.4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch.utils.data import Dataset, Sampler

from cellbridge._checks import require_unique
from cellbridge._lightning import Shard
from cellbridge.errors import InputError
from cellbridge.nn import pad_sets
from cellbridge.poppy.sampler import CrossCohortSampler

__all__ = ["ArrayCells", "CellSource", "PairBatches", "StoreCells", "expand_similarity"]


class CellSource(Protocol):
    """Frozen cell embeddings grouped by single-cell sample."""

    @property
    def samples(self) -> Sequence[str]: ...

    @property
    def dim(self) -> int: ...

    @property
    def source(self) -> str: ...

    def draw(self, sample: str, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
        """``(n, dim)`` float32: at most ``max_cells`` cells, uniform without replacement."""
        ...


class ArrayCells:
    """An in-memory :class:`CellSource`: one embedding row per cell and its sample label."""

    def __init__(
        self, embedding: np.ndarray, samples: Sequence[str] | np.ndarray, source: str
    ) -> None:
        labels = np.asarray(samples, dtype=object).astype(str)
        if embedding.ndim != 2 or embedding.shape[0] != labels.shape[0]:
            raise InputError(
                "cells",
                "embedding rows and sample labels differ in number",
                values=[embedding.shape, labels.shape],
            )
        self._embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        codes, names = pd.factorize(pd.Series(labels), sort=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        self._rows = {str(n): order[bounds[i] : bounds[i + 1]] for i, n in enumerate(names)}
        self._source = source

    @property
    def samples(self) -> list[str]:
        """Sample names in order of first appearance."""
        return list(self._rows)

    @property
    def dim(self) -> int:
        """Size of a cell embedding."""
        return int(self._embedding.shape[1])

    @property
    def embedding(self) -> np.ndarray:
        """``(cells, dim)`` float32 embedding, in the order of the input cells."""
        return self._embedding

    @property
    def source(self) -> str:
        """Where the embedding came from."""
        return self._source

    def rows(self, sample: str) -> np.ndarray:
        """Row indices of ``sample``'s cells, in stored order."""
        return self._rows[sample]

    def draw(self, sample: str, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
        """At most ``max_cells`` cells of ``sample`` (all when ``None`` or fewer)."""
        rows = self._rows[sample]
        if max_cells is not None and rows.size > max_cells:
            rows = np.sort(rng.choice(rows, size=max_cells, replace=False))
        return self._embedding[rows]


class StoreCells:
    """A :class:`CellSource` that streams from an on-disk :class:`cellbridge.data.CellStore`."""

    def __init__(self, store: Any) -> None:
        self._store = store

    @property
    def samples(self) -> list[str]:
        """Sample names in stored order."""
        return list(self._store.samples)

    @property
    def dim(self) -> int:
        """Size of a cell embedding."""
        return int(self._store.dim)

    @property
    def source(self) -> str:
        """Where the store's embeddings came from."""
        return str(self._store.source)

    def draw(self, sample: str, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
        """At most ``max_cells`` cells of ``sample``, read from disk."""
        if max_cells is None:
            return np.asarray(self._store.read(sample, dtype="float32"))
        return np.asarray(self._store.sample(sample, max_cells, rng, dtype="float32"))


def expand_similarity(
    similarity: AnnData, items: pd.Index, paired: pd.Series, *, key: str = "similarity"
) -> sp.csr_matrix:
    """The item x item similarity from a similarity AnnData.

    ``similarity.obs_names`` may name the items themselves (each bulk profile has its own
    composition, e.g. in-silico bulk built from other proportions) or the single-cell
    samples (every profile paired with a sample takes that sample's row and column).

    Raises
    ------
    InputError
        ``obsp[key]`` missing, or names that match neither the items nor their samples.
    """
    if key not in similarity.obsp:
        raise InputError(
            "similarity.obsp",
            f"has no {key!r}",
            values=list(similarity.obsp.keys()),
            fix="pass the output of cellbridge.poppy.sample_similarity",
        )
    names = similarity.obs_names.astype(str)
    require_unique(names, "similarity.obs_names", what="sample names")
    position = pd.Series(np.arange(len(names)), index=names)
    if items.isin(names).all():
        index = position.reindex(items).to_numpy()
    else:
        missing = sorted(set(paired) - set(names))
        if missing:
            raise InputError(
                "similarity.obs_names",
                "name neither every bulk profile nor every paired single-cell sample; missing",
                values=missing,
                fix="compute the similarity over the same samples as the training data",
            )
        index = position.reindex(paired.to_numpy()).to_numpy()
    S = sp.csr_matrix(similarity.obsp[key]).astype(np.float64)
    return sp.csr_matrix(S[index][:, index])


@dataclass
class PairBatch:
    """One training batch: padded cells, bulk tokens and the similarity block.

    Under data parallelism ``cells``, ``mask`` and ``tokens`` hold this process's share of
    the items (:class:`~cellbridge._lightning.Shard`) and ``S`` the whole batch's block.
    """

    cells: torch.Tensor
    mask: torch.Tensor
    tokens: torch.Tensor
    S: torch.Tensor


class PairBatches(Dataset[PairBatch]):
    """Batches keyed by ``(epoch, batch number, item indices)``.

    The cell draws of a batch are seeded by ``[seed, epoch, batch number]`` only, so a run
    resumed at an epoch boundary sees exactly the draws of an uninterrupted run, in any
    number of worker processes.

    ``shard`` (set by the trainer in a multi-process fit, else ``None``): the items of
    this process only; the cells of every item are still drawn, in order, so each item
    gets the cells a single process would draw, and padded to the whole batch's longest
    set; ``S`` stays the whole batch's block (the loss is computed on the gathered batch).
    """

    def __init__(
        self,
        cells: CellSource,
        paired: Sequence[str],
        bulk_inputs: np.ndarray,
        tokens: Callable[[np.ndarray], np.ndarray],
        S: sp.csr_matrix,
        *,
        max_cells: int | None,
        seed: int,
    ) -> None:
        self.cells = cells
        self.paired = list(paired)
        self.bulk_inputs = bulk_inputs
        self.tokens = tokens
        self.S = S
        self.max_cells = max_cells
        self.seed = seed
        self.shard: Shard | None = None

    def __len__(self) -> int:
        return len(self.paired)

    def __getitem__(self, key: tuple[int, int, tuple[int, ...]]) -> PairBatch:
        epoch, number, items = key
        rng = np.random.default_rng([self.seed, epoch, number])
        sets = [
            torch.from_numpy(self.cells.draw(self.paired[i], self.max_cells, rng)) for i in items
        ]
        idx = np.asarray(items)
        block = self.S[idx][:, idx].toarray().astype(np.float32)
        if self.shard is not None:
            longest = max(s.shape[0] for s in sets)
            sets, idx = self.shard.take(sets), np.asarray(self.shard.take(items))
        cells, mask = pad_sets(sets)
        if self.shard is not None and cells.shape[1] < longest:
            # the single-process padding, so every row is computed on the same input
            extra = longest - cells.shape[1]
            cells = torch.nn.functional.pad(cells, (0, 0, 0, extra))
            mask = torch.nn.functional.pad(mask, (0, extra), value=False)
        tokens = self.tokens(self.bulk_inputs[idx])
        return PairBatch(cells, mask, torch.from_numpy(tokens), torch.from_numpy(block))


class NumberedBatches(Sampler[tuple[int, int, tuple[int, ...]]]):
    """Wraps :class:`CrossCohortSampler`, numbering its batches within the epoch."""

    def __init__(self, sampler: CrossCohortSampler, *, fixed_epoch: int | None = None) -> None:
        super().__init__()
        self.sampler = sampler
        self.fixed_epoch = fixed_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (ignored for a fixed validation sampler)."""
        if self.fixed_epoch is None:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int, tuple[int, ...]]]:
        if self.fixed_epoch is not None:
            self.sampler.set_epoch(self.fixed_epoch)
        epoch = self.sampler.epoch
        for number, batch in enumerate(self.sampler):
            yield epoch, number, tuple(batch)
