"""BiRD DE signatures streamed from per-plate files, and on a Dask cluster (§2, Algorithm 1
lines 1–5): the same Signatures as ``differential_response`` on the concatenated cells,
read one plate at a time, only the reference lines' rows; bad screens refused."""

from __future__ import annotations

import gc
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from cellbridge.bird import Signatures, _plate_io, differential_response, signatures_from_plates
from cellbridge.data import perturbation_screen
from cellbridge.errors import InputError

REFERENCE = ["line0", "line1"]
KEYS = ["drug", "cell_line", "plate", "control"]


def _screen(seed: int = 6) -> AnnData:
    """Tahoe's design, small: every drug on one plate, controls of every line on every
    plate, lines and drugs interleaved within a plate; line2 is not a reference line."""
    adata, _ = perturbation_screen(n_drugs=8, n_cell_lines=3, cells_per_condition=30, seed=seed)
    drugs = sorted(set(adata.obs.loc[~adata.obs["control"], "drug"]))
    home = {d: f"plate{i % 2}" for i, d in enumerate(drugs)}
    keep = adata.obs["control"] | (adata.obs["plate"] == adata.obs["drug"].map(home))
    adata = adata[keep.to_numpy()].copy()
    adata = adata[np.random.default_rng(seed).permutation(adata.n_obs)].copy()
    adata.obs = adata.obs[KEYS].copy()
    for key in ("drug", "cell_line", "plate"):
        adata.obs[key] = pd.Categorical(adata.obs[key].astype(str))
    adata.uns = {}
    return adata


def _write_plates(adata: AnnData, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for plate in sorted(set(adata.obs["plate"])):
        part = adata[(adata.obs["plate"] == plate).to_numpy()].copy()
        for key in ("drug", "cell_line", "plate"):
            part.obs[key] = part.obs[key].cat.remove_unused_categories()
        files.append(folder / f"{plate}.h5ad")
        part.write_h5ad(files[-1])
    return files


def _concatenated(files: list[Path]) -> AnnData:
    return anndata.concat([anndata.read_h5ad(f) for f in files], merge="same")


def assert_same(got: Signatures, expected: Signatures) -> None:
    assert got.genes == expected.genes
    pd.testing.assert_frame_equal(got.table, expected.table, check_exact=True)
    pd.testing.assert_frame_equal(got.n_significant, expected.n_significant, check_exact=True)
    assert got.params == expected.params


@pytest.fixture(scope="module")
def screen() -> AnnData:
    return _screen()


@pytest.fixture(scope="module")
def plates(screen: AnnData, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write_plates(screen, tmp_path_factory.mktemp("plates"))


@pytest.fixture(scope="module")
def expected(plates: list[Path]) -> Signatures:
    return differential_response(_concatenated(plates), reference_lines=REFERENCE, top_k=20)


# --- the per-plate path equals the in-memory path ------------------------------------------


def test_plate_files_equal_the_concatenated_cells(plates: list[Path], expected: Signatures) -> None:
    got = signatures_from_plates(plates, reference_lines=REFERENCE, top_k=20)
    assert_same(got, expected)
    assert len(got.genes) == 2 * 8  # every (reference line, drug)
    assert sum(len(g) for g in got.genes.values()) > 100  # not trivially empty
    # a folder of plate files is read in name order: the same signatures
    assert_same(
        signatures_from_plates(plates[0].parent, reference_lines=REFERENCE, top_k=20), expected
    )
    # the plates' order does not matter
    assert_same(signatures_from_plates(plates[::-1], reference_lines=REFERENCE, top_k=20), expected)


@pytest.mark.filterwarnings("ignore:.*have no gene with q:UserWarning")
def test_t_test_and_a_counts_layer_equal_the_in_memory_path(
    screen: AnnData, tmp_path: Path
) -> None:
    layered = screen.copy()
    layered.layers["counts"] = layered.X.copy()
    layered.X = sp.csr_matrix(layered.shape, dtype=np.float32)  # not what is tested
    files = _write_plates(layered, tmp_path)
    for method in ("wilcoxon", "t-test"):
        options: dict[str, Any] = {"reference_lines": REFERENCE, "method": method, "top_k": 15}
        got = signatures_from_plates(files, layer="counts", **options)
        assert_same(got, differential_response(_concatenated(files), layer="counts", **options))


def test_log_normalised_plates_are_read_as_they_are(screen: AnnData, tmp_path: Path) -> None:
    import scanpy as sc

    logged = screen.copy()
    sc.pp.normalize_total(logged, target_sum=1e4)
    sc.pp.log1p(logged)  # marks uns["log1p"]
    files = _write_plates(logged, tmp_path)
    got = signatures_from_plates(files, reference_lines=REFERENCE, top_k=20)
    assert_same(
        got, differential_response(_concatenated(files), reference_lines=REFERENCE, top_k=20)
    )


# --- why the paths agree to the last bit --------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_sums_do_not_depend_on_threads_or_other_rows(dtype: type) -> None:
    """The Wilcoxon kernel's group sums (the means behind log fold changes) add each
    gene's values in row order: the same bits on 1 or 2 threads, and for a block's rows
    alone or inside a larger matrix (a plate's rows vs. the whole screen's)."""
    import numba

    from cellbridge.bird._wilcoxon import grouped_u

    rng = np.random.default_rng(3)
    X = sp.random(3000, 300, density=0.2, format="csr", random_state=rng, dtype=dtype)
    X.data = np.log1p(rng.poisson(4, X.nnz) + rng.random(X.nnz)).astype(dtype)
    code = rng.integers(-1, 6, X.shape[0]).astype(np.int16)
    block = np.flatnonzero(rng.random(X.shape[0]) < 0.3)
    inside = np.full_like(code, -1)
    inside[block] = code[block]
    threads = numba.get_num_threads()
    try:
        results = []
        for n_threads in sorted({1, threads}):
            numba.set_num_threads(n_threads)
            results.append(grouped_u(X[block], code[block], 5)[:2])
            results.append(grouped_u(X, inside, 5)[:2])
    finally:
        numba.set_num_threads(threads)
    for u, sums in results[1:]:
        np.testing.assert_array_equal(u, results[0][0])
        np.testing.assert_array_equal(sums, results[0][1])


# --- memory: one plate at a time, reference rows only --------------------------------------


def test_one_plate_of_reference_rows_is_held_at_a_time(
    plates: list[Path], expected: Signatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read = _plate_io.read_rows
    read: list[tuple[str, np.ndarray]] = []
    alive: list[weakref.ref[Any]] = []

    def spy_read(handle: Any, rows: np.ndarray, **kwargs: Any) -> sp.csr_matrix:
        gc.collect()
        assert all(ref() is None for ref in alive), "the previous plate's rows are still held"
        matrix = real_read(handle, rows, **kwargs)
        read.append((Path(handle.filename).name, np.asarray(rows)))
        alive.append(weakref.ref(matrix))
        return matrix

    monkeypatch.setattr(_plate_io, "read_rows", spy_read)
    got = signatures_from_plates(plates, reference_lines=REFERENCE, top_k=20)
    assert_same(got, expected)
    assert [name for name, _ in read] == [p.name for p in plates]  # each plate read once
    for path, (_, rows) in zip(plates, read, strict=True):
        lines = anndata.read_h5ad(path).obs["cell_line"].astype(str).to_numpy()
        # exactly the reference lines' rows: line2's rows are never asked for
        np.testing.assert_array_equal(rows, np.flatnonzero(np.isin(lines, REFERENCE)))
        assert 0 < len(rows) < len(lines)


class _Recorded:
    """An h5py dataset that records the slices read from it."""

    def __init__(self, dataset: Any, log: list[tuple[int, int]]) -> None:
        self.dataset, self.log = dataset, log
        self.dtype = dataset.dtype

    def __getitem__(self, index: slice) -> np.ndarray:
        self.log.append((index.start, index.stop))
        return self.dataset[index]


class _RecordedGroup:
    def __init__(self, group: Any, log: list[tuple[int, int]]) -> None:
        self.group, self.log, self.attrs = group, log, group.attrs

    def __getitem__(self, key: str) -> Any:
        item = self.group[key]
        return _Recorded(item, self.log) if key in ("data", "indices") else item


@pytest.mark.parametrize("gap", [0, _plate_io.GAP_ENTRIES])
@pytest.mark.parametrize("span", [7, _plate_io.SPAN_ENTRIES])
def test_rows_read_from_a_plate_file_are_the_chosen_rows(
    plates: list[Path], gap: int, span: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader returns exactly the chosen rows; without read-through gaps, no entry of
    another row is read from the file."""
    monkeypatch.setattr(_plate_io, "GAP_ENTRIES", gap)
    monkeypatch.setattr(_plate_io, "SPAN_ENTRIES", span)
    whole = anndata.read_h5ad(plates[0])
    X = sp.csr_matrix(whole.X)
    rows = np.flatnonzero(np.random.default_rng(0).random(whole.n_obs) < 0.15)
    rows = np.r_[0, rows[rows > 0], whole.n_obs - 1]  # the first and last rows too
    with h5py.File(plates[0], "r") as f:
        log: list[tuple[int, int]] = []
        got = _plate_io.read_rows({"X": _RecordedGroup(f["X"], log)}, rows, layer=None, where="x")
    assert got.dtype == X.dtype and got.indices.dtype == X.indices.dtype
    assert (got != X[rows]).nnz == 0 and got.shape == (len(rows), X.shape[1])
    np.testing.assert_array_equal(got.indptr, X[rows].indptr)
    if gap == 0:
        chosen = np.zeros(X.nnz, dtype=bool)
        for r in rows:
            chosen[X.indptr[r] : X.indptr[r + 1]] = True
        read = np.zeros(X.nnz, dtype=bool)
        for lo, hi in log:
            read[lo:hi] = True
        np.testing.assert_array_equal(read, chosen)


def test_dense_plate_files_are_read_too(screen: AnnData, tmp_path: Path) -> None:
    dense = screen.copy()
    dense.X = dense.X.toarray()
    files = _write_plates(dense, tmp_path)
    assert_same(
        signatures_from_plates(files, reference_lines=REFERENCE, top_k=20),
        differential_response(_concatenated(files), reference_lines=REFERENCE, top_k=20),
    )


# --- warnings ------------------------------------------------------------------------------


def test_empty_signatures_are_warned_about_once_in_the_caller(plates: list[Path]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sig = signatures_from_plates(plates, reference_lines=REFERENCE, alpha=1e-300)
    assert all(not g for g in sig.genes.values())
    relevant = [w for w in caught if "have no gene with q" in str(w.message)]
    assert len(relevant) == 1
    assert relevant[0].filename == __file__


# --- bad input -----------------------------------------------------------------------------


def _rewrite(path: Path, edit: Any) -> None:
    adata = anndata.read_h5ad(path)
    edit(adata)
    adata.write_h5ad(path)


def _copies(plates: list[Path], folder: Path) -> list[Path]:
    folder.mkdir()
    out = []
    for path in plates:
        out.append(folder / path.name)
        out[-1].write_bytes(path.read_bytes())
    return out


def test_missing_and_unreadable_files_are_refused(plates: list[Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        signatures_from_plates([*plates, tmp_path / "nope.h5ad"], reference_lines=REFERENCE)
    junk = tmp_path / "junk.h5ad"
    junk.write_text("not hdf5")
    with pytest.raises(InputError, match=r"not a readable \.h5ad"):
        signatures_from_plates([plates[0], junk], reference_lines=REFERENCE)
    with pytest.raises(InputError, match="is empty"):
        signatures_from_plates([], reference_lines=REFERENCE)
    with pytest.raises(InputError, match="twice"):
        signatures_from_plates([plates[0], plates[0]], reference_lines=REFERENCE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.h5ad file"):
        signatures_from_plates(tmp_path / "empty", reference_lines=REFERENCE)


@pytest.fixture
def copies(plates: list[Path], tmp_path: Path) -> list[Path]:
    return _copies(plates, tmp_path / "copies")


def test_a_plate_without_the_obs_columns_is_refused(copies: list[Path]) -> None:
    def drop(adata: AnnData) -> None:
        adata.obs = adata.obs.drop(columns="control")

    _rewrite(copies[1], drop)
    with pytest.raises(InputError, match=r"obs of plate1\.h5ad: has no column.*control"):
        signatures_from_plates(copies, reference_lines=REFERENCE)


def test_a_non_boolean_control_column_is_refused(copies: list[Path]) -> None:
    def as_int(adata: AnnData) -> None:
        adata.obs = adata.obs.assign(control=adata.obs["control"].astype(int))

    _rewrite(copies[0], as_int)
    with pytest.raises(InputError, match="must be boolean"):
        signatures_from_plates(copies, reference_lines=REFERENCE)


def test_a_reference_line_on_no_plate_is_refused(plates: list[Path]) -> None:
    with pytest.raises(InputError, match=r"on none of the 2 plates.*'A549'"):
        signatures_from_plates(plates, reference_lines=["line0", "A549"])


def test_genes_differing_between_plates_are_refused(copies: list[Path]) -> None:
    def rename(adata: AnnData) -> None:
        names = adata.var_names.to_numpy().copy()
        names[3] = "ZZZ3"
        adata.var_names = names

    _rewrite(copies[1], rename)
    with pytest.raises(InputError, match=r"genes of plate plate1.h5ad differ.*ZZZ3"):
        signatures_from_plates(copies, reference_lines=REFERENCE)


def test_a_drug_on_two_plates_is_refused(screen: AnnData, tmp_path: Path) -> None:
    moved = screen.copy()
    drug = str(moved.obs.loc[moved.obs["plate"] == "plate0", "drug"].iloc[0])
    treated = np.flatnonzero(((moved.obs["drug"] == drug) & ~moved.obs["control"]).to_numpy())
    plate = moved.obs["plate"].astype(str).to_numpy()
    plate[treated[::2]] = "plate1"  # half of its cells on the other plate
    moved.obs["plate"] = pd.Categorical(plate)
    files = _write_plates(moved, tmp_path)
    with pytest.raises(InputError, match=rf"drug '{drug}'.*2 plates.*'plate0', 'plate1'"):
        signatures_from_plates(files, reference_lines=REFERENCE)


def test_a_plate_split_across_files_is_refused(plates: list[Path], tmp_path: Path) -> None:
    copy = tmp_path / "again.h5ad"
    copy.write_bytes(plates[0].read_bytes())
    with pytest.raises(InputError, match=r"plate 'plate0'.*two files"):
        signatures_from_plates([*plates, copy], reference_lines=REFERENCE)


def test_a_plate_without_controls_of_a_line_is_refused(copies: list[Path]) -> None:
    def drop_controls(adata: AnnData) -> None:
        keep = ~(adata.obs["control"] & (adata.obs["cell_line"] == "line1")).to_numpy()
        adata._inplace_subset_obs(keep)

    _rewrite(copies[0], drop_controls)
    with pytest.raises(InputError, match="fewer than 2 control cells of line 'line1'"):
        signatures_from_plates(copies, reference_lines=REFERENCE)


def test_bad_options_are_refused(plates: list[Path]) -> None:
    with pytest.raises(InputError, match="reference_lines"):
        signatures_from_plates(plates, reference_lines=[])
    with pytest.raises(InputError, match="method"):
        signatures_from_plates(plates, reference_lines=REFERENCE, method="anova")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="alpha"):
        signatures_from_plates(plates, reference_lines=REFERENCE, alpha=0)
    with pytest.raises(InputError, match="top_k"):
        signatures_from_plates(plates, reference_lines=REFERENCE, top_k=0)
    with pytest.raises(InputError, match="layer"):
        signatures_from_plates(plates, reference_lines=REFERENCE, layer="counts")
    with pytest.raises(InputError, match="client"):
        signatures_from_plates(plates, reference_lines=REFERENCE, client="remote")  # type: ignore[arg-type]


# --- Dask: the same Signatures from a cluster ----------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        # no fixed port 8787 (the scheduler's HTTP server starts even without a dashboard):
        # another cluster on the machine would warn that it is taken
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": False},
    ) as cluster:
        dask = distributed.Client(cluster)
        try:
            yield dask
        finally:
            dask.close()  # the client before its cluster


def test_dask_plates_equal_one_process(
    plates: list[Path], expected: Signatures, client: Any
) -> None:
    got = signatures_from_plates(plates, reference_lines=REFERENCE, top_k=20, client=client)
    assert_same(got, expected)


def test_dask_in_memory_blocks_equal_one_process(screen: AnnData, client: Any) -> None:
    for by in ("line", "plate"):
        options: dict[str, Any] = {"reference_lines": REFERENCE, "top_k": 20, "by": by}
        one = differential_response(screen, **options)
        assert_same(differential_response(screen, client=client, **options), one)
    options = {"reference_lines": REFERENCE, "top_k": 20, "method": "t-test"}
    assert_same(
        differential_response(screen, client=client, **options),
        differential_response(screen, **options),
    )


def test_dask_backed_plates_are_read_by_the_workers(
    screen: AnnData, tmp_path: Path, client: Any, expected: Signatures
) -> None:
    path = tmp_path / "screen.h5ad"
    screen.write_h5ad(path)
    backed = anndata.read_h5ad(path, backed="r")
    try:
        options: dict[str, Any] = {"reference_lines": REFERENCE, "top_k": 20, "by": "plate"}
        one = differential_response(backed, **options)
        assert_same(differential_response(backed, client=client, **options), one)
    finally:
        backed.file.close()
    assert one.genes == expected.genes


def test_dask_errors_and_warnings_reach_the_caller(
    screen: AnnData, plates: list[Path], client: Any
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signatures_from_plates(plates, reference_lines=REFERENCE, alpha=1e-300, client=client)
        differential_response(screen, reference_lines=REFERENCE, alpha=1e-300, client=client)
    relevant = [w for w in caught if "have no gene with q" in str(w.message)]
    assert len(relevant) == 2 and all(w.filename == __file__ for w in relevant)
    # a comparison refused on a worker is refused here, with its message
    obs = screen.obs
    drug = str(obs.loc[~obs["control"], "drug"].iloc[0])
    treated = (obs["cell_line"] == "line0") & (obs["drug"] == drug) & ~obs["control"]
    keep = np.ones(screen.n_obs, dtype=bool)
    keep[np.flatnonzero(treated.to_numpy())[1:]] = False  # one treated cell left
    one_cell = screen[keep].copy()
    with pytest.raises(InputError, match="at least 2 cells"):
        differential_response(one_cell, reference_lines=REFERENCE, client=client)


def test_a_local_cluster_gives_the_same_signatures(
    plates: list[Path], expected: Signatures
) -> None:
    pytest.importorskip("distributed")
    got = signatures_from_plates(plates, reference_lines=REFERENCE, top_k=20, client="local")
    assert_same(got, expected)


# --- the command line ----------------------------------------------------------------------


def _cli_table(args: list[str]) -> pd.DataFrame:
    from typer.testing import CliRunner

    from cellbridge.cli.main import app

    result = CliRunner().invoke(app, ["bird", "signatures", *args, "--no-progress"])
    assert result.exit_code == 0, result.output
    output = Path(args[args.index("-o") + 1])
    return pd.read_parquet(output).sort_values(["cell_line", "drug", "rank"], ignore_index=True)


def test_cli_plate_files_and_a_scheduler_address(
    plates: list[Path], expected: Signatures, client: Any, tmp_path: Path
) -> None:
    options = ["--reference-lines", "line0,line1", "--top-k", "20"]
    files = [str(p) for p in plates]
    several = _cli_table([*files, "-o", str(tmp_path / "a.parquet"), *options])
    folder = _cli_table([str(plates[0].parent), "-o", str(tmp_path / "b.parquet"), *options])
    address = client.scheduler.address
    dask = _cli_table(
        [*files, "-o", str(tmp_path / "c.parquet"), *options, "--dask-scheduler", address]
    )
    pd.testing.assert_frame_equal(folder, several)
    pd.testing.assert_frame_equal(dask, several)
    got = {(c, d): list(rows["gene"]) for (c, d), rows in several.groupby(["cell_line", "drug"])}
    assert got == {key: genes for key, genes in expected.genes.items() if genes}


def test_cli_refuses_both_dask_options(plates: list[Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cellbridge.cli.main import app

    args = [str(plates[0]), "-o", str(tmp_path / "x.parquet"), "--reference-lines", "line0"]
    dask = ["--dask-scheduler", "tcp://127.0.0.1:1", "--dask-local-workers", "2"]
    result = CliRunner().invoke(app, ["bird", "signatures", *args, *dask])
    assert result.exit_code != 0
    assert "not both" in result.output
    assert not (tmp_path / "x.parquet").exists()
