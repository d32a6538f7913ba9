"""The on-disk cell store: exact round trips, grouping, subsampling, atomicity, bounded memory."""

from __future__ import annotations

import os
import pickle
import sys
import tracemalloc
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellbridge.data._rows import read_sorted_rows
from cellbridge.data.store import CellStore
from cellbridge.data.store_format import CHUNK_BYTES, default_chunk_rows
from cellbridge.errors import InputError

Chunks = list[tuple[str, np.ndarray]]
TYPES = np.array(["T cell", "B cell", "monocyte"])


def make_chunks(n_samples: int = 6, dim: int = 8, seed: int = 0) -> Chunks:
    """Samples of 1-39 cells with values well inside the float16 range."""
    rng = np.random.default_rng(seed)
    return [
        (
            f"patient_{i}",
            rng.normal(scale=3.0, size=(int(rng.integers(1, 40)), dim)).astype(np.float32),
        )
        for i in range(n_samples)
    ]


def with_types(chunks: Chunks, seed: int = 1) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(name, emb, TYPES[rng.integers(0, 3, size=len(emb))]) for name, emb in chunks]


def interleaved_anndata(n_cells: int = 400, dim: int = 6, seed: int = 0) -> ad.AnnData:
    """Cells of 9 samples in random order (not contiguous), with an obsm embedding."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n_cells, dim)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "donor": pd.Categorical(rng.choice([f"d{i}" for i in range(9)], size=n_cells)),
            "cell_type": rng.choice(["T cell", "B cell", "NK cell"], size=n_cells),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    return ad.AnnData(X=emb * 2, obs=obs, obsm={"X_fm": emb})


def expected_groups(adata: ad.AnnData) -> dict[str, np.ndarray]:
    """The pandas grouping the store must reproduce: obs order within each sample."""
    groups = adata.obs.groupby("donor", observed=True, sort=False).indices
    return {str(k): v for k, v in groups.items()}


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "chunk_rows"), [("float16", None), ("float32", 3)])
def test_round_trip_is_exact_after_the_cast(
    tmp_path: Path, dtype: str, chunk_rows: int | None
) -> None:
    chunks = with_types(make_chunks())
    path = tmp_path / "cells.h5"
    with CellStore.create(
        path, dim=8, dtype=dtype, chunk_rows=chunk_rows, source="obsm['X_fm']"
    ) as writer:
        for name, emb, types in chunks:
            writer.append(
                name, emb, cell_types=types, obs_names=[f"{name}-{j}" for j in range(len(emb))]
            )
    with CellStore.open(path) as store:
        assert store.samples == tuple(name for name, _, _ in chunks)
        assert len(store) == len(chunks) and list(store) == list(store.samples)
        assert store.dim == 8 and store.dtype == dtype and store.source == "obsm['X_fm']"
        for i, (name, emb, types) in enumerate(chunks):
            stored = emb.astype(dtype)
            np.testing.assert_array_equal(store[name], stored.astype(np.float32))
            assert store[name].dtype == np.float32
            assert store.read(i, dtype=None).dtype == np.dtype(dtype)
            np.testing.assert_array_equal(store.read(i, dtype=None), stored)
            assert store.n_cells(name) == len(emb)
            assert list(store.cell_types(name)) == list(types)
            assert list(store.obs_names(name)) == [f"{name}-{j}" for j in range(len(emb))]
        assert store.cell_counts.to_dict() == {n: len(e) for n, e, _ in chunks}
        assert "patient_0" in store and "nobody" not in store


def test_from_chunks_streams_a_generator_and_infers_dim(tmp_path: Path) -> None:
    chunks = make_chunks(dim=5)
    store = CellStore.from_chunks((c for c in chunks), tmp_path / "c.h5")
    assert store.dim == 5 and store.dtype == "float16" and not store.has_cell_types
    for name, emb in chunks:
        np.testing.assert_array_equal(store[name], emb.astype(np.float16).astype(np.float32))
    with pytest.raises(InputError, match="has none"):
        store.cell_types(0)
    store.close()


def test_default_chunks_hold_one_to_four_megabytes(tmp_path: Path) -> None:
    for dim, dtype in [(2048, "float16"), (64, "float32"), (512, "float32")]:
        rows = default_chunk_rows(dim, dtype)
        assert 1e6 <= rows * dim * np.dtype(dtype).itemsize <= 4e6
    with CellStore.create(tmp_path / "c.h5", dim=2048) as writer:
        writer.append("a", np.zeros((3, 2048)))
    with h5py.File(tmp_path / "c.h5") as f:
        chunk = f["embeddings"].chunks
        assert chunk[0] * chunk[1] * 2 == CHUNK_BYTES


# -- from AnnData ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["h5ad path, obsm", "backed AnnData, X", "in memory, obsm"])
def test_from_anndata_groups_interleaved_samples_like_pandas(tmp_path: Path, source: str) -> None:
    adata = interleaved_anndata()
    h5ad = tmp_path / "cells.h5ad"
    adata.write_h5ad(h5ad)
    use_x = source.endswith("X")
    matrix = adata.X if use_x else adata.obsm["X_fm"]
    if source.startswith("h5ad"):
        given: ad.AnnData | Path = h5ad
    elif source.startswith("backed"):
        given = ad.read_h5ad(h5ad, backed="r")
    else:
        given = adata
    store = CellStore.from_anndata(
        given,
        tmp_path / "store.h5",
        sample_key="donor",
        obsm_key=None if use_x else "X_fm",
        cell_type_key="cell_type",
        dtype="float32",
    )
    groups = expected_groups(adata)
    assert store.samples == tuple(str(s) for s in pd.unique(adata.obs["donor"]))
    assert store.source == ("X" if use_x else "obsm['X_fm']")
    for name, rows in groups.items():
        np.testing.assert_array_equal(store[name], matrix[rows])
        assert list(store.obs_names(name)) == list(adata.obs_names[rows])
        assert list(store.cell_types(name)) == list(adata.obs["cell_type"].iloc[rows])
    store.close()
    if isinstance(given, ad.AnnData) and given.isbacked:
        given.file.close()


@pytest.mark.parametrize("backed", [False, True])
def test_from_anndata_reads_sparse_x(tmp_path: Path, backed: bool) -> None:
    adata = interleaved_anndata(n_cells=120, seed=3)
    adata.X = sp.csr_matrix(np.where(adata.X > 1, adata.X, 0).astype(np.float32))
    dense = adata.X.toarray()
    h5ad = tmp_path / "sparse.h5ad"
    adata.write_h5ad(h5ad)
    given = h5ad if backed else adata
    store = CellStore.from_anndata(given, tmp_path / "s.h5", sample_key="donor", batch_cells=50)
    for name, rows in expected_groups(adata).items():
        np.testing.assert_array_equal(
            store[name], dense[rows].astype(np.float16).astype(np.float32)
        )
    store.close()


def test_batch_size_does_not_change_the_store(tmp_path: Path) -> None:
    adata = interleaved_anndata(n_cells=300, seed=5)
    h5ad = tmp_path / "cells.h5ad"
    adata.write_h5ad(h5ad)
    kw = {"sample_key": "donor", "obsm_key": "X_fm", "cell_type_key": "cell_type"}
    small = CellStore.from_anndata(h5ad, tmp_path / "a.h5", batch_cells=7, **kw)
    large = CellStore.from_anndata(h5ad, tmp_path / "b.h5", batch_cells=10**6, **kw)
    assert small.samples == large.samples
    for name in small.samples:
        np.testing.assert_array_equal(small.read(name, dtype=None), large.read(name, dtype=None))
        assert list(small.obs_names(name)) == list(large.obs_names(name))
        assert list(small.cell_types(name)) == list(large.cell_types(name))
    small.close()
    large.close()


def test_from_anndata_refuses_bad_keys_and_unlabelled_cells(tmp_path: Path) -> None:
    adata = interleaved_anndata(n_cells=50)
    with pytest.raises(InputError, match="'patient'"):
        CellStore.from_anndata(adata, tmp_path / "s.h5", sample_key="patient")
    with pytest.raises(InputError, match="X_scGPT"):
        CellStore.from_anndata(adata, tmp_path / "s.h5", sample_key="donor", obsm_key="X_scGPT")
    h5ad = tmp_path / "cells.h5ad"
    adata.write_h5ad(h5ad)
    with pytest.raises(InputError, match="X_scGPT"):
        CellStore.from_anndata(h5ad, tmp_path / "s.h5", sample_key="donor", obsm_key="X_scGPT")
    adata.obs["donor"] = adata.obs["donor"].astype(object)
    adata.obs.loc["cell3", "donor"] = np.nan
    with pytest.raises(InputError, match="cell3"):
        CellStore.from_anndata(adata, tmp_path / "s.h5", sample_key="donor")
    adata.obsm["X_fm"][10, 2] = np.nan
    adata.obs["donor"] = "one"
    with pytest.raises(InputError, match="cell10"):
        CellStore.from_anndata(adata, tmp_path / "s.h5", sample_key="donor", obsm_key="X_fm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5ad"]


# -- subsampling and iteration ---------------------------------------------------------------


def test_subsample_is_seeded_without_replacement_and_bounded(tmp_path: Path) -> None:
    # Row j of sample "big" holds j (exact in float16), so drawn rows identify themselves.
    big = np.repeat(np.arange(1500, dtype=np.float32)[:, None], 1024, axis=1)
    chunks = [("small", np.ones((5, 1024))), ("big", big), ("after", -np.ones((3, 1024)))]
    store = CellStore.from_chunks(chunks, tmp_path / "c.h5")
    draw = store.sample("big", 200, 0)
    ids = draw[:, 0]
    assert draw.shape == (200, 1024) and draw.dtype == np.float32
    np.testing.assert_array_equal(draw, np.repeat(ids[:, None], 1024, axis=1))  # whole rows
    assert len(np.unique(ids)) == 200 and (np.diff(ids) > 0).all()  # distinct, stored order
    assert ids.min() >= 0 and ids.max() < 1500  # rows of that sample only
    np.testing.assert_array_equal(store.sample("big", 200, 0), draw)
    assert not np.array_equal(store.sample("big", 200, 1), draw)
    rng = np.random.default_rng(7)
    first, second = store.sample("big", 50, rng), store.sample("big", 50, rng)
    assert not np.array_equal(first, second)  # the generator advanced
    np.testing.assert_array_equal(store.sample("small", 200, 0), store["small"])
    assert store.sample(1, 1499, 3).shape == (1499, 1024)
    with pytest.raises(InputError, match="max_cells"):
        store.sample("big", 0, 0)
    store.close()


@pytest.mark.parametrize("span_bytes", [32 * 1024**2, 16 * 1024])
def test_sorted_row_reads_match_fancy_indexing(
    span_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cellbridge.data._rows.SPAN_BYTES", span_bytes)
    rng = np.random.default_rng(0)
    array = rng.normal(size=(3000, 1024)).astype(np.float32)  # 4 KiB rows: gaps > 16 split
    for k in [1, 5, 40, 800, 3000]:
        rows = np.sort(rng.choice(3000, size=k, replace=False)).astype(np.int64)
        np.testing.assert_array_equal(read_sorted_rows(array, rows), array[rows])
    assert read_sorted_rows(array, np.array([], dtype=np.int64)).shape == (0, 1024)


def test_iteration_order(tmp_path: Path) -> None:
    chunks = make_chunks()
    store = CellStore.from_chunks(chunks, tmp_path / "c.h5")
    assert [name for name, _ in store.iter_samples()] == [n for n, _ in chunks]
    order = ["patient_3", 0, "patient_5"]
    got = list(store.iter_samples(order=order, dtype=None))
    assert [name for name, _ in got] == ["patient_3", "patient_0", "patient_5"]
    np.testing.assert_array_equal(got[0][1], chunks[3][1].astype(np.float16))
    with pytest.raises(InputError, match="nobody"):
        store.iter_samples(order=["patient_1", "nobody"]).__next__()
    with pytest.raises(InputError, match="out of range"):
        store[len(chunks)]
    store.close()


# -- atomic writes and bad input -------------------------------------------------------------


def test_a_failed_write_leaves_the_previous_store(tmp_path: Path) -> None:
    path = tmp_path / "cells.h5"
    CellStore.from_chunks([("old", np.ones((2, 4)))], path).close()
    with pytest.raises(RuntimeError, match="crash"), CellStore.create(path, dim=4) as writer:
        writer.append("new", np.zeros((3, 4)))
        raise RuntimeError("crash while writing")
    with pytest.raises(InputError, match="'new2'"), CellStore.create(path, dim=4) as writer:
        writer.append("new1", np.zeros((3, 4)))
        writer.append("new2", np.zeros((3, 5)))
    with pytest.raises(InputError, match="none were appended"), CellStore.create(path, dim=4):
        pass
    writer = CellStore.create(path, dim=4)
    writer.append("new", np.zeros((3, 4)))
    writer.abort()
    with CellStore.open(path) as store:
        assert store.samples == ("old",)
        np.testing.assert_array_equal(store["old"], np.ones((2, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5"]


@pytest.mark.parametrize(
    ("append", "match"),
    [
        (lambda w: (w.append("s1", np.ones((2, 4))), w.append("s1", np.ones((1, 4)))), "'s1'"),
        (lambda w: w.append("s2", np.ones((2, 3))), r"'s2'.*\(cells, 4\)"),
        (lambda w: w.append("s3", np.ones(4)), "'s3'"),
        (lambda w: w.append("s4", np.array([[0, 1, np.nan, 0]])), "'s4'.*NaN"),
        (lambda w: w.append("s5", np.array([[0, 1, 7e4, 0]])), "'s5'.*float16 range"),
        (lambda w: w.append("s6", np.ones((0, 4))), "'s6'.*no cells"),
        (lambda w: w.append("s7", np.ones((2, 4)), cell_types=["T"]), "'s7'.*1 values for 2"),
        (
            lambda w: (
                w.append("a", np.ones((1, 4)), cell_types=["T"]),
                w.append("s8", np.ones((1, 4))),
            ),
            "cell_types of sample 's8'",
        ),
        (lambda w: w.append(7, np.ones((1, 4))), "non-empty strings"),
        (lambda w: w.append("s9", np.array([["a", "b", "c", "d"]])), "'s9'.*not numeric"),
    ],
)
def test_bad_input_names_the_sample(tmp_path: Path, append: object, match: str) -> None:
    with pytest.raises(InputError, match=match), CellStore.create(tmp_path / "c.h5", dim=4) as w:
        append(w)
    assert list(tmp_path.iterdir()) == []


def test_bad_writer_options() -> None:
    with pytest.raises(InputError, match="dim"):
        CellStore.create("never.h5", dim=0)
    with pytest.raises(InputError, match="dtype"):
        CellStore.create("never.h5", dim=3, dtype="int8")
    assert not Path("never.h5").exists()


def test_open_refuses_files_that_are_not_complete_stores(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        CellStore.open(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(InputError, match="cannot be read as HDF5"):
        CellStore.open(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones(3)
    with pytest.raises(InputError, match="not a cellbridge cell store"):
        CellStore.open(other)
    path = tmp_path / "cells.h5"
    CellStore.from_chunks(make_chunks(n_samples=3, dim=64), path, dtype="float32").close()
    good = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="truncated") as err:
        CellStore.open(tmp_path / "cut.h5")
    assert "rebuild" in str(err.value)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(InputError, match="version 99"):
        CellStore.open(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        f["offsets"][-1] -= 1
    with pytest.raises(InputError, match="inconsistent"):
        CellStore.open(path)


# -- processes and memory --------------------------------------------------------------------


def test_reopens_after_a_fork_and_pickles_without_its_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = make_chunks()
    path = tmp_path / "c.h5"
    store = CellStore.from_chunks(chunks, path)
    expected = store["patient_2"]
    parent_handle = store._file
    monkeypatch.setattr(os, "getpid", lambda: -12345)  # what a forked worker sees
    np.testing.assert_array_equal(store["patient_2"], expected)
    assert store._file is not parent_handle and store._pid == -12345
    assert parent_handle is not None and parent_handle.id.valid  # the parent's is untouched
    monkeypatch.undo()
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone["patient_2"], expected)
    # A worker must not silently read a different file that took the same name.
    CellStore.from_chunks([("other", np.ones((2, 8)))], path).close()
    monkeypatch.setattr(os, "getpid", lambda: -54321)
    with pytest.raises(InputError, match="replaced"):
        store["patient_2"]
    monkeypatch.undo()
    store.close()
    clone.close()
    parent_handle.close()


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_torch_dataloader_with_forked_workers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    chunks = make_chunks(n_samples=8)
    store = CellStore.from_chunks(chunks, tmp_path / "c.h5")
    store["patient_0"]  # the parent holds an open handle when the workers fork
    loader = torch.utils.data.DataLoader(
        store, batch_size=None, num_workers=2, multiprocessing_context="fork"
    )
    got = [batch.numpy() for batch in loader]
    assert len(got) == len(chunks)
    for (_, emb), batch in zip(chunks, got, strict=True):
        np.testing.assert_array_equal(batch, emb.astype(np.float16).astype(np.float32))
    store.close()


def test_iterating_holds_one_sample_in_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(500, 1500, size=200)  # ~200k cells x 64 float32 = ~51 MB on disk

    def chunks():
        for i, n in enumerate(sizes):
            yield f"s{i}", np.random.default_rng(i).normal(size=(int(n), 64)).astype(np.float32)

    store = CellStore.from_chunks(chunks(), tmp_path / "c.h5", dtype="float32")
    largest = int(sizes.max()) * 64 * 4
    tracemalloc.start()
    try:
        total = 0
        for _, cells in store.iter_samples():
            total += len(cells)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == sizes.sum() > 190_000
    assert peak < 3 * largest, (peak, largest)
    store.close()


def test_float32_reads_convert_every_float16_value_exactly(tmp_path: Path) -> None:
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    values = bits.view(np.float16)
    finite = values[np.isfinite(values)].reshape(-1, 16)  # every finite float16, 16 a row
    store = CellStore.from_chunks([("all", finite)], tmp_path / "c.h5")
    np.testing.assert_array_equal(
        store["all"].view(np.uint32), finite.astype(np.float32).view(np.uint32)
    )
    store.close()


def test_from_anndata_holds_one_batch_not_the_embedding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    n_cells = 40_000
    emb = rng.normal(size=(n_cells, 128)).astype(np.float32)  # 20 MB in obsm
    obs = pd.DataFrame(
        {"sample": rng.choice([f"s{i}" for i in range(50)], size=n_cells)},
        index=[f"c{i}" for i in range(n_cells)],
    )
    h5ad = tmp_path / "cells.h5ad"
    ad.AnnData(obs=obs, obsm={"X_fm": emb}).write_h5ad(h5ad)
    # Interleaved samples make merged reads span the whole file; shrink the span cap
    # (32 MiB) so that it sits well below the 20 MB embedding here.
    monkeypatch.setattr("cellbridge.data._rows.SPAN_BYTES", 256 * 1024)
    peaks = {}
    for batch_cells in (2_000, 10**6):
        tracemalloc.start()
        try:
            CellStore.from_anndata(
                h5ad, tmp_path / f"{batch_cells}.h5", obsm_key="X_fm", batch_cells=batch_cells
            ).close()
            peaks[batch_cells] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[2_000] < emb.nbytes / 2 < emb.nbytes < peaks[10**6], peaks
