"""Readers for the real layouts, on small files written here in exactly those layouts.

3CA study folders (Cells.csv + Genes.txt + genes x cells MatrixMarket + Meta-data.csv),
Tahoe-100M plate .h5ad files and parquet shards (list columns + a gene table), and any
.h5ad with user-named keys.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io
import scipy.sparse as sp

from cellbridge.data import readers_tahoe
from cellbridge.data.readers import read_cells
from cellbridge.data.readers_3ca import read_3ca, read_3ca_study
from cellbridge.data.readers_tahoe import iter_tahoe_plates, read_tahoe_plate
from cellbridge.data.readers_tahoe_parquet import read_tahoe_parquet
from cellbridge.errors import InputError

# ----------------------------------------------------------------------------- 3CA


def write_study(
    folder: Path,
    *,
    genes: list[str],
    n_cells: int = 40,
    seed: int = 0,
    metadata: bool = True,
    extra_column: str | None = None,
    matrix: str = "Exp_data_UMIcounts.mtx",
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Write a 3CA study folder; return counts (genes x cells), Cells.csv and Meta-data.csv."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    counts = rng.poisson(3.0, size=(len(genes), n_cells)) * (
        rng.random((len(genes), n_cells)) < 0.4
    )
    samples = np.array([f"P{i}" for i in rng.integers(0, 4, n_cells)])
    cells = pd.DataFrame(
        {
            "cell_name": [f"{folder.name}_c{i:03d}" for i in range(n_cells)],
            "sample": samples,
            "cell_type": rng.choice(["T cell", "B cell", "Malignant"], n_cells),
            "cell_subtype": rng.choice(["a", "b"], n_cells),
        }
    )
    if extra_column:
        cells[extra_column] = rng.integers(0, 3, n_cells)
    cells.to_csv(folder / "Cells.csv", index=False)
    (folder / "Genes.txt").write_text("\n".join(genes) + "\n")
    scipy.io.mmwrite(folder / matrix, sp.coo_matrix(counts.astype(np.int64)))
    meta = pd.DataFrame(
        {"sample": [f"P{i}" for i in range(4)], "age": [50, 61, 72, 43], "sex": list("FMFM")}
    )
    if metadata:
        meta.to_csv(folder / "Meta-data.csv", index=False)
    return counts, cells, meta


GENES = [f"G{i}" for i in range(12)]


def test_3ca_round_trip_joins_metadata_and_prefixes_samples(tmp_path: Path) -> None:
    counts, cells, meta = write_study(tmp_path / "Lung_Smith2020", genes=GENES)
    adata = read_3ca_study(tmp_path / "Lung_Smith2020")
    assert isinstance(adata.X, sp.csr_matrix)
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), counts.T)
    assert adata.var_names.tolist() == GENES
    assert adata.obs_names.tolist() == cells["cell_name"].tolist()
    assert (
        adata.obs["sample"].astype(str).tolist() == ("Lung_Smith2020:" + cells["sample"]).tolist()
    )
    assert adata.obs["sample_original"].tolist() == cells["sample"].tolist()
    assert set(adata.obs["cohort"]) == {"Lung_Smith2020"}
    assert adata.obs["cell_type"].astype(str).tolist() == cells["cell_type"].tolist()
    expected = cells.merge(meta, on="sample", how="left")
    assert adata.obs["age"].tolist() == expected["age"].tolist()
    assert adata.obs["sex"].tolist() == expected["sex"].tolist()
    assert "3CA study folder" in adata.uns["cellbridge"]["provenance"]
    named = read_3ca_study(tmp_path / "Lung_Smith2020", study="lung1")
    assert named.obs["sample"].astype(str).str.startswith("lung1:").all()


def test_3ca_tpm_matrix_and_renamed_columns(tmp_path: Path) -> None:
    _, cells, _ = write_study(
        tmp_path / "s", genes=GENES, metadata=False, matrix="Exp_data_TPM.mtx"
    )
    tpm = np.random.default_rng(1).gamma(1.0, 50.0, (len(GENES), len(cells)))
    tpm[tpm < 40] = 0
    scipy.io.mmwrite(tmp_path / "s" / "Exp_data_TPM.mtx", sp.coo_matrix(tpm))
    renamed = cells.rename(
        columns={"cell_name": "cell", "sample": "patient", "cell_type": "celltype"}
    )
    renamed.to_csv(tmp_path / "s" / "Cells.csv", index=False)
    adata = read_3ca_study(
        tmp_path / "s",
        matrix="Exp_data_TPM.mtx",
        cell_key="cell",
        sample_key="patient",
        cell_type_key="celltype",
    )
    np.testing.assert_array_equal(adata.X.toarray(), tpm.T.astype(np.float32))
    assert adata.obs["sample"].astype(str).tolist() == ("s:" + cells["sample"]).tolist()
    assert adata.obs["cell_type"].astype(str).tolist() == cells["cell_type"].tolist()
    assert "age" not in adata.obs  # no Meta-data.csv in this study
    # a key whose canonical name the file already uses for other values is refused
    write_study(tmp_path / "t", genes=GENES)
    with pytest.raises(InputError, match="cell_type"):
        read_3ca_study(tmp_path / "t", cell_type_key="cell_subtype")


def test_3ca_poppy_filters_drop_exactly_and_count(tmp_path: Path) -> None:
    counts, cells, _ = write_study(tmp_path / "s", genes=GENES, n_cells=80, seed=1)
    cells.loc[[3, 17], "cell_type"] = np.nan
    cells.to_csv(tmp_path / "s" / "Cells.csv", index=False)
    totals = counts.sum(axis=0)
    min_counts = float(np.median(totals))
    labelled = cells["cell_type"].notna().to_numpy()
    enough = labelled & (totals >= min_counts)
    size = cells.loc[enough, "sample"].value_counts()
    big = size.index[size >= 8]
    keep = enough & cells["sample"].isin(big).to_numpy()

    adata = read_3ca_study(
        tmp_path / "s", drop_unlabelled=True, min_counts=min_counts, min_cells_per_sample=8
    )
    assert adata.obs_names.tolist() == cells.loc[keep, "cell_name"].tolist()
    np.testing.assert_array_equal(adata.X.toarray(), counts.T[keep])
    dropped = adata.uns["cellbridge"]["dropped"]
    assert dropped["cells_unlabelled"] == 2
    assert dropped["cells_below_min_counts"] == int((labelled & ~enough).sum())
    assert dropped["samples_below_min_cells"] == int((size < 8).sum())
    assert dropped["cells_in_small_samples"] == int((enough & ~keep).sum())


def test_3ca_unlabelled_cells_are_refused_by_default(tmp_path: Path) -> None:
    _, cells, _ = write_study(tmp_path / "s", genes=GENES)
    cells.loc[[5, 9], "cell_type"] = np.nan
    cells.to_csv(tmp_path / "s" / "Cells.csv", index=False)
    with pytest.raises(InputError, match="2 cells have no cell type") as err:
        read_3ca_study(tmp_path / "s")
    assert "s_c005" in str(err.value) and "drop_unlabelled=True" in str(err.value)


def _rewrite(folder: Path, name: str, change: Any) -> None:
    if name == "Genes.txt":
        genes = (folder / name).read_text().splitlines()
        (folder / name).write_text("\n".join(change(genes)) + "\n")
    elif name == "Cells.csv":
        change(pd.read_csv(folder / name)).to_csv(folder / name, index=False)
    else:
        m = scipy.io.mmread(folder / name).toarray()
        scipy.io.mmwrite(folder / name, sp.coo_matrix(change(m)))


def _negative(m: np.ndarray) -> np.ndarray:
    m = m.copy()
    m[2, 4] = -3
    return m


def _duplicate_cell(c: pd.DataFrame) -> pd.DataFrame:
    return c.assign(cell_name=c["cell_name"].where(c.index != 7, "s_c002"))


@pytest.mark.parametrize(
    ("name", "change", "needles"),
    [
        ("Genes.txt", lambda g: [*g, "EXTRA"], ["shape 12 x 40", "13 genes", "40 cells"]),
        ("Genes.txt", lambda g: ["G1", *g[1:]], ["duplicate gene symbols", "'G1'"]),
        ("Cells.csv", _duplicate_cell, ["duplicate cell names", "'s_c002'"]),
        ("Exp_data_UMIcounts.mtx", _negative, ["negative", "(3, 5): -3"]),
        ("Exp_data_UMIcounts.mtx", lambda m: m.T, ["transposed"]),
        ("Cells.csv", lambda c: c.drop(columns="sample"), ["'sample'", "cell_name"]),
    ],
)
def test_3ca_bad_input_names_the_values(
    tmp_path: Path, name: str, change: Any, needles: list[str]
) -> None:
    write_study(tmp_path / "s", genes=GENES)
    _rewrite(tmp_path / "s", name, change)
    with pytest.raises(InputError) as err:
        read_3ca_study(tmp_path / "s")
    for needle in needles:
        assert needle in str(err.value)


def test_3ca_duplicate_genes_made_unique_on_request(tmp_path: Path) -> None:
    genes = [*GENES[:-1], "G0"]
    counts, _, _ = write_study(tmp_path / "s", genes=genes)
    adata = read_3ca_study(tmp_path / "s", var_names_make_unique=True)
    assert adata.var_names.tolist() == [*GENES[:-1], "G0-1"]
    np.testing.assert_array_equal(adata.X.toarray(), counts.T)


def test_3ca_missing_files_are_listed(tmp_path: Path) -> None:
    write_study(tmp_path / "s", genes=GENES)
    with pytest.raises(InputError, match=r"Exp_data_TPM\.mtx"):
        read_3ca_study(tmp_path / "s", matrix="Exp_data_TPM.mtx")


@pytest.mark.parametrize("join", ["inner", "outer"])
def test_3ca_concatenates_studies(
    tmp_path: Path, join: str, caplog: pytest.LogCaptureFixture
) -> None:
    genes_b = [*GENES[4:], "X1", "X2"]
    ca, _, _ = write_study(tmp_path / "A", genes=GENES, n_cells=30, seed=2)
    cb, cells_b, _ = write_study(
        tmp_path / "B", genes=genes_b, n_cells=25, seed=3, extra_column="cluster"
    )
    (tmp_path / "notes").mkdir()
    with caplog.at_level(logging.INFO, logger="cellbridge.data.readers_3ca"):
        adata = read_3ca(tmp_path, join=join)  # type: ignore[arg-type]
    assert adata.n_obs == 55
    assert adata.obs_names[:2].tolist() == ["A:A_c000", "A:A_c001"]
    assert adata.obs["sample"].astype(str).str.split(":").str[0].tolist() == ["A"] * 30 + ["B"] * 25
    # columns only one study has survive, NaN elsewhere
    assert adata.obs["cluster"].isna().sum() == 30
    assert adata.obs["cluster"].iloc[30:].tolist() == cells_b["cluster"].tolist()
    frame_a = pd.DataFrame(ca.T, columns=GENES)
    frame_b = pd.DataFrame(cb.T, columns=genes_b)
    expected = pd.concat([frame_a, frame_b], join=join).fillna(0)
    expected = expected[list(adata.var_names)]
    np.testing.assert_array_equal(adata.X.toarray(), expected.to_numpy())
    info = adata.uns["cellbridge"]
    assert "3CA study folder(s)" in info["provenance"]
    if join == "inner":
        assert sorted(adata.var_names) == sorted(set(GENES) & set(genes_b))
        assert info["dropped"]["genes_not_in_every_study"] == 6
        assert "dropped 6 not in every study" in caplog.text
    else:
        assert sorted(adata.var_names) == sorted(set(GENES) | set(genes_b))
        assert info["genes_filled_with_zero"] == {"A": 2, "B": 4}
    assert "skipped 1 sub-folders" in caplog.text


def test_3ca_study_names_must_be_unique(tmp_path: Path) -> None:
    write_study(tmp_path / "one" / "Data", genes=GENES)
    write_study(tmp_path / "two" / "Data", genes=GENES)
    paths = [tmp_path / "one" / "Data", tmp_path / "two" / "Data"]
    with pytest.raises(InputError, match="duplicate study names"):
        read_3ca(paths)
    adata = read_3ca(paths, studies=["one", "two"])
    assert set(adata.obs["cohort"]) == {"one", "two"}


# ----------------------------------------------------------------------------- Tahoe plates


def write_plate(
    path: Path, *, plate: int, drugs: list[str], seed: int, csc: bool = False
) -> anndata.AnnData:
    rng = np.random.default_rng(seed)
    n, g = 90, 20
    X = sp.random(n, g, density=0.3, format="csr", dtype=np.float32, random_state=seed)
    X.data = np.ceil(X.data * 9)
    obs = pd.DataFrame(
        {
            "plate": pd.Categorical([f"plate{plate}"] * n),
            "sample": [f"smp{i % 6}" for i in range(n)],
            "drug": pd.Categorical(rng.choice(drugs, n)),
            "cell_line_id": pd.Categorical(rng.choice(["CVCL_0023", "CVCL_0131", "CVCL_1098"], n)),
            "BARCODE_SUB_LIB_ID": [f"bc{i}_{plate}" for i in range(n)],
        },
        index=[f"p{plate}_cell{i}" for i in range(n)],
    )
    obs["drugname_drugconc"] = obs["drug"].astype(str) + "_5uM"
    adata = anndata.AnnData(
        X=X.tocsc() if csc else X, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(g)])
    )
    adata.write_h5ad(path)
    adata.X = X
    return adata


@pytest.fixture
def plate(tmp_path: Path) -> tuple[Path, anndata.AnnData]:
    path = tmp_path / "plate1_filt_Vevo_Tahoe100M_WServicesFrom_ParseGigalab.h5ad"
    return path, write_plate(path, plate=1, drugs=["DMSO_TF", "Afatinib", "Imatinib"], seed=4)


@pytest.mark.parametrize(
    ("drugs", "lines"),
    [
        (["Afatinib"], None),
        (["DMSO_TF", "Imatinib"], ["CVCL_0131"]),
        (None, "CVCL_1098"),
        (None, None),
    ],
)
def test_plate_filters_select_exactly(
    plate: tuple[Path, anndata.AnnData], drugs: list[str] | None, lines: Any
) -> None:
    path, full = plate
    mask = np.ones(full.n_obs, dtype=bool)
    if drugs is not None:
        mask &= full.obs["drug"].isin(drugs).to_numpy()
    if lines is not None:
        mask &= (
            full.obs["cell_line_id"].isin([lines] if isinstance(lines, str) else lines).to_numpy()
        )
    got = read_tahoe_plate(
        path, drugs=drugs, cell_lines=lines, cell_line_key="cell_line_id", chunk_size=7
    )
    assert not got.isbacked
    assert got.obs_names.tolist() == full.obs_names[mask].tolist()
    np.testing.assert_array_equal(got.X.toarray(), full.X.toarray()[mask])
    assert got.obs["sample"].tolist() == full.obs["sample"][mask].tolist()
    assert set(got.obs["drug"].cat.categories) == set(full.obs["drug"][mask])
    assert got.var_names.tolist() == full.var_names.tolist()
    assert got.uns["cellbridge"]["n_cells_in_plate"] == full.n_obs


def test_plate_is_read_backed_in_chunks(
    plate: tuple[Path, anndata.AnnData], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, full = plate
    calls: list[dict[str, Any]] = []
    chunks: list[int] = []
    real_read, real_rows = anndata.read_h5ad, readers_tahoe._read_rows

    def whole_matrix(*args: Any) -> None:
        raise AssertionError("the whole X of the plate was loaded")

    def spy_read(*args: Any, **kwargs: Any) -> anndata.AnnData:
        calls.append(kwargs)
        backed = real_read(*args, **kwargs)
        monkeypatch.setattr(type(backed.X), "to_memory", whole_matrix)
        return backed

    def spy_rows(X: Any, rows: np.ndarray, n_obs: int) -> sp.csr_matrix:
        assert not isinstance(X, np.ndarray | sp.spmatrix)  # still on disk
        chunks.append(len(rows))
        return real_rows(X, rows, n_obs)

    monkeypatch.setattr(anndata, "read_h5ad", spy_read)
    monkeypatch.setattr(readers_tahoe, "_read_rows", spy_rows)
    small = read_tahoe_plate(path, drugs="Imatinib", chunk_size=7)
    assert calls == [{"backed": "r"}]
    n_selected = int((full.obs["drug"] == "Imatinib").sum())
    assert sum(chunks) == n_selected and max(chunks) <= 7 and len(chunks) == -(-n_selected // 7)
    whole = read_tahoe_plate(path, drugs="Imatinib", chunk_size=10_000)
    np.testing.assert_array_equal(small.X.toarray(), whole.X.toarray())


def test_plate_empty_selection_reads_no_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "plate.h5ad"
    full = write_plate(path, plate=1, drugs=["A", "B"], seed=5)
    full.obs.loc[full.obs["drug"] == "A", "cell_line_id"] = "CVCL_0023"
    full.obs.loc[full.obs["drug"] == "B", "cell_line_id"] = "CVCL_0131"
    full.write_h5ad(path)
    chunks: list[int] = []
    monkeypatch.setattr(readers_tahoe, "_read_rows", lambda *a: chunks.append(1))
    with caplog.at_level(logging.WARNING):
        got = read_tahoe_plate(
            path, drugs="A", cell_lines="CVCL_0131", cell_line_key="cell_line_id"
        )
    assert got.shape == (0, full.n_vars)
    assert chunks == []
    assert "no cell passes the filters" in caplog.text


def test_plate_unknown_values_and_keys_are_refused(plate: tuple[Path, anndata.AnnData]) -> None:
    path, _ = plate
    with pytest.raises(InputError, match="'Aspirin'") as err:
        read_tahoe_plate(path, drugs=["Afatinib", "Aspirin"])
    assert "'Afatinib'" not in str(err.value).split("Fix")[0]
    assert "DMSO_TF" in str(err.value)  # the available ones are shown
    with pytest.raises(InputError, match="'cell_line'") as err:
        read_tahoe_plate(path, cell_lines="CVCL_0023")  # real files say cell_line_id
    assert "cell_line_id" in str(err.value)
    with pytest.raises(InputError, match="'drug'"):
        read_tahoe_plate(path, drugs="A", cell_lines="B", cell_line_key="drug")


def test_plate_with_dense_x(tmp_path: Path) -> None:
    path = tmp_path / "plate.h5ad"
    full = write_plate(path, plate=2, drugs=["A", "B"], seed=6)
    dense = full.copy()
    dense.X = full.X.toarray()
    dense.write_h5ad(path)
    got = read_tahoe_plate(path, drugs="B", chunk_size=5)
    mask = (full.obs["drug"] == "B").to_numpy()
    np.testing.assert_array_equal(got.X.toarray(), full.X.toarray()[mask])


def test_plate_stored_csc_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plate.h5ad"
    write_plate(path, plate=1, drugs=["A"], seed=1, csc=True)
    with pytest.raises(InputError, match="csc"):
        read_tahoe_plate(path)


def test_iter_plates_streams_each_plate(tmp_path: Path) -> None:
    p1, p2 = tmp_path / "plate1.h5ad", tmp_path / "plate2.h5ad"
    a = write_plate(p1, plate=1, drugs=["DMSO_TF", "Afatinib"], seed=1)
    b = write_plate(p2, plate=2, drugs=["DMSO_TF", "Imatinib"], seed=2)
    got = list(iter_tahoe_plates([p1, p2], drugs=["Afatinib", "Imatinib"]))
    assert [g.obs["plate"].iloc[0] for g in got] == ["plate1", "plate2"]
    assert got[0].n_obs == int((a.obs["drug"] == "Afatinib").sum())
    assert got[1].n_obs == int((b.obs["drug"] == "Imatinib").sum())
    only = list(iter_tahoe_plates([p1, p2], drugs="Imatinib"))
    assert len(only) == 1 and set(only[0].obs["drug"]) == {"Imatinib"}
    # refused when called, before any plate is read
    with pytest.raises(InputError, match="'Aspirin'"):
        iter_tahoe_plates([p1, p2], drugs=["Imatinib", "Aspirin"])


# ----------------------------------------------------------------------------- Tahoe parquet

MARKER = 999_999


def write_shards(
    folder: Path, *, n_cells: int = 45, marker: bool = False, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """``data/`` with two shards, ``metadata/gene_metadata.parquet`` (the Hugging Face layout).

    Returns the gene table, the dense truth (cells x genes) and the cell metadata.
    """
    rng = np.random.default_rng(seed)
    data = folder / "data"
    data.mkdir()
    n_genes = 15
    token_ids = rng.permutation(np.arange(n_genes) * 3 + 100)
    genes = pd.DataFrame(
        {
            "gene_symbol": [f"GENE{i}" for i in range(n_genes)],
            "ensembl_id": [f"ENSG{i:05d}" for i in range(n_genes)],
            "token_id": token_ids,
        }
    )
    (folder / "metadata").mkdir()
    genes.to_parquet(folder / "metadata" / "gene_metadata.parquet")
    truth = np.zeros((n_cells, n_genes), dtype=np.float32)
    lists_g, lists_e = [], []
    for i in range(n_cells):
        picked = rng.choice(n_genes, size=rng.integers(0, 8), replace=False)
        truth[i, picked] = rng.integers(1, 20, picked.size)
        toks, vals = token_ids[picked].tolist(), truth[i, picked].tolist()
        if marker:
            toks, vals = [MARKER, *toks], [-2.0, *vals]
        lists_g.append(toks)
        lists_e.append(vals)
    meta = pd.DataFrame(
        {
            "drug": rng.choice(["DMSO_TF", "Afatinib", "Imatinib", "Trametinib"], n_cells),
            "sample": [f"smp{i % 5}" for i in range(n_cells)],
            "cell_line_id": rng.choice(["CVCL_0023", "CVCL_0131"], n_cells),
            "plate": rng.choice([1, 2, 3], n_cells),
            "BARCODE_SUB_LIB_ID": [f"bc{i}" for i in range(n_cells)],
            "canonical_smiles": "C",
            "pubchem_cid": rng.integers(1, 100, n_cells),
            "moa-fine": "unclear",
        }
    )
    half = n_cells // 2
    for k, (lo, hi) in enumerate([(0, half), (half, n_cells)]):
        table = pa.table(
            {
                "genes": pa.array(lists_g[lo:hi], pa.list_(pa.int64())),
                "expressions": pa.array(lists_e[lo:hi], pa.list_(pa.float32())),
                **{c: pa.array(meta[c].iloc[lo:hi].tolist()) for c in meta.columns},
            }
        )
        pq.write_table(table, data / f"train-{k:05d}-of-00002.parquet", row_group_size=10)
    return genes, truth, meta


def _shards(folder: Path) -> list[Path]:
    return sorted((folder / "data").glob("train-*.parquet"))


def test_parquet_round_trip(tmp_path: Path) -> None:
    genes, truth, meta = write_shards(tmp_path)
    adata = read_tahoe_parquet(
        _shards(tmp_path), gene_metadata=tmp_path / "metadata" / "gene_metadata.parquet"
    )
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    assert adata.var_names.tolist() == genes["gene_symbol"].tolist()
    assert adata.var["ensembl_id"].tolist() == genes["ensembl_id"].tolist()
    np.testing.assert_array_equal(adata.X.toarray(), truth)
    assert adata.obs["drug"].astype(str).tolist() == meta["drug"].tolist()
    assert adata.obs["pubchem_cid"].tolist() == meta["pubchem_cid"].tolist()
    assert adata.obs_names[0] == "train-00000-of-00002:0"
    assert adata.obs_names[-1] == f"train-00001-of-00002:{len(meta) - len(meta) // 2 - 1}"
    assert adata.obs_names.is_unique


def test_parquet_filters_select_exactly_and_batch_size_does_not_matter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, truth, meta = write_shards(tmp_path, seed=1)
    sizes: list[int] = []
    real = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Any:
        sizes.append(kwargs["batch_size"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    options: dict[str, Any] = {
        "gene_metadata": tmp_path / "metadata" / "gene_metadata.parquet",
        "drugs": ["Afatinib", "DMSO_TF"],
        "cell_lines": "CVCL_0131",
        "plates": ["1", "3"],
        "columns": ["drug", "sample"],
    }
    small = read_tahoe_parquet(tmp_path / "data", batch_size=7, **options)
    assert sizes and set(sizes) == {7}
    sizes.clear()
    large = read_tahoe_parquet(tmp_path / "data", batch_size=10_000, **options)
    assert set(sizes) == {10_000}
    mask = (
        meta["drug"].isin(["Afatinib", "DMSO_TF"])
        & (meta["cell_line_id"] == "CVCL_0131")
        & meta["plate"].isin([1, 3])
    ).to_numpy()
    assert 0 < mask.sum() < len(meta)
    np.testing.assert_array_equal(small.X.toarray(), truth[mask])
    np.testing.assert_array_equal(small.X.toarray(), large.X.toarray())
    assert small.obs_names.tolist() == large.obs_names.tolist()
    assert list(small.obs.columns) == ["drug", "sample", "cell_line_id", "plate"]
    assert small.obs["sample"].astype(str).tolist() == meta["sample"][mask].tolist()


def test_parquet_marker_token_dropped_on_request(tmp_path: Path) -> None:
    _, truth, _ = write_shards(tmp_path, marker=True)
    table = tmp_path / "metadata" / "gene_metadata.parquet"
    with pytest.raises(InputError, match="999999") as err:
        read_tahoe_parquet(tmp_path / "data", gene_metadata=table)
    assert "drop_first_token=True" in str(err.value)
    adata = read_tahoe_parquet(tmp_path / "data", gene_metadata=table, drop_first_token=True)
    np.testing.assert_array_equal(adata.X.toarray(), truth)


def test_parquet_empty_selection_gives_zero_cells(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genes, _, meta = write_shards(tmp_path, seed=2)
    present = set(zip(meta["drug"], meta["cell_line_id"], meta["plate"], strict=True))
    drug, line, plate = next(
        (d, c, p)
        for d in sorted(meta["drug"].unique())
        for c in sorted(meta["cell_line_id"].unique())
        for p in sorted(meta["plate"].unique())
        if (d, c, p) not in present
    )
    with caplog.at_level(logging.WARNING):
        adata = read_tahoe_parquet(
            tmp_path / "data",
            gene_metadata=tmp_path / "metadata" / "gene_metadata.parquet",
            drugs=drug,
            cell_lines=line,
            plates=str(plate),
        )
    assert adata.shape == (0, len(genes))
    assert "no cell passes the filters" in caplog.text


def _rewrite_shard(path: Path, row: int, genes: list[int], values: list[float]) -> None:
    table = pq.read_table(path)
    g, e = table.column("genes").to_pylist(), table.column("expressions").to_pylist()
    g[row], e[row] = genes, values
    table = table.set_column(0, "genes", pa.array(g, pa.list_(pa.int64())))
    table = table.set_column(1, "expressions", pa.array(e, pa.list_(pa.float32())))
    pq.write_table(table, path)


@pytest.mark.parametrize(
    ("genes_of_row", "values", "needles"),
    [
        (lambda t: [t[0], t[1]], [1.0], ["differ in length", "row 4: 2 vs 1", "train-00001"]),
        (lambda t: [t[0], 7], [1.0, 2.0], ["not in the gene table", "7"]),
        (lambda t: [t[0], t[0]], [1.0, 2.0], ["repeats within a row", "row 4"]),
        (lambda t: [t[0], t[1]], [1.0, -5.0], ["negative or non-finite", "row 4: -5.0"]),
        (lambda t: [t[0], t[1]], [1.0, float("nan")], ["negative or non-finite", "nan"]),
    ],
)
def test_parquet_bad_rows_are_named(
    tmp_path: Path, genes_of_row: Any, values: list[float], needles: list[str]
) -> None:
    genes, _, _ = write_shards(tmp_path)
    tokens = genes["token_id"].tolist()
    _rewrite_shard(_shards(tmp_path)[1], 4, genes_of_row(tokens), values)
    with pytest.raises(InputError) as err:
        read_tahoe_parquet(
            tmp_path / "data", gene_metadata=tmp_path / "metadata" / "gene_metadata.parquet"
        )
    for needle in needles:
        assert needle in str(err.value)


def test_parquet_unknown_filter_and_bad_gene_table(tmp_path: Path) -> None:
    genes, _, _ = write_shards(tmp_path)
    table = tmp_path / "metadata" / "gene_metadata.parquet"
    with pytest.raises(InputError, match="'Aspirin'") as err:
        read_tahoe_parquet(tmp_path / "data", gene_metadata=table, drugs=["Aspirin", "Afatinib"])
    assert "Imatinib" in str(err.value)
    with pytest.raises(InputError, match="'nope'"):
        read_tahoe_parquet(tmp_path / "data", gene_metadata=table, columns=["nope"])
    repeated = genes.assign(gene_symbol=[*genes["gene_symbol"].iloc[:-1], "GENE0"])
    with pytest.raises(InputError, match="'GENE0'"):
        read_tahoe_parquet(tmp_path / "data", gene_metadata=repeated)
    fixed = read_tahoe_parquet(
        tmp_path / "data", gene_metadata=repeated, var_names_make_unique=True
    )
    assert fixed.var_names[-1] == "GENE0-1"


# ----------------------------------------------------------------------------- any h5ad


@pytest.fixture
def cells_file(tmp_path: Path) -> tuple[Path, anndata.AnnData]:
    rng = np.random.default_rng(0)
    adata = anndata.AnnData(
        X=rng.poisson(1.0, (30, 8)).astype(np.float32),
        obs=pd.DataFrame(
            {
                "patient": [f"p{i % 3}" for i in range(30)],
                "celltype": rng.choice(["T", "B"], 30),
                "study": "s1",
            },
            index=[f"c{i}" for i in range(30)],
        ),
    )
    adata.obsm["X_scGPT"] = rng.normal(size=(30, 4)).astype(np.float32)
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    return path, adata


def test_read_cells_adds_canonical_copies(cells_file: tuple[Path, anndata.AnnData]) -> None:
    path, original = cells_file
    adata = read_cells(
        path,
        sample_key="patient",
        cell_type_key="celltype",
        cohort_key="study",
        embedding_key="X_scGPT",
    )
    assert adata.obs["sample"].tolist() == original.obs["patient"].tolist()
    assert adata.obs["cell_type"].tolist() == original.obs["celltype"].tolist()
    assert adata.obs["cohort"].tolist() == ["s1"] * 30
    np.testing.assert_array_equal(adata.X, original.X)
    assert "h5ad file" in adata.uns["cellbridge"]["provenance"]
    backed = read_cells(path, sample_key="patient", backed=True)
    try:
        assert backed.isbacked
        assert backed.obs["sample"].tolist() == original.obs["patient"].tolist()
    finally:
        backed.file.close()


def test_read_cells_refuses_missing_keys_and_clashes(
    cells_file: tuple[Path, anndata.AnnData], tmp_path: Path
) -> None:
    path, original = cells_file
    with pytest.raises(InputError, match="'sample'") as err:
        read_cells(path)  # the default sample key is not there
    assert "patient" in str(err.value) and "celltype" in str(err.value)
    with pytest.raises(InputError, match="X_scVI") as err:
        read_cells(path, sample_key="patient", embedding_key="X_scVI")
    assert "X_scGPT" in str(err.value)
    clash = original.copy()
    clash.obs["sample"] = "other"
    clash.write_h5ad(tmp_path / "clash.h5ad")
    with pytest.raises(InputError, match=r"obs\['sample'\]"):
        read_cells(tmp_path / "clash.h5ad", sample_key="patient")
    same = original.copy()
    same.obs["sample"] = same.obs["patient"]
    same.uns["cellbridge"] = {"provenance": "semi-synthetic: kept"}
    same.write_h5ad(tmp_path / "same.h5ad")
    kept = read_cells(tmp_path / "same.h5ad", sample_key="patient")
    assert kept.uns["cellbridge"]["provenance"] == "semi-synthetic: kept"


@pytest.mark.parametrize(
    "content",
    [None, b"", b"plain text, not HDF5", b"\x89HDF\r\n\x1a\nthis is not a complete file"],
)
def test_read_cells_refuses_unreadable_files(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "cells.h5ad"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(
        InputError, match="no such file" if content is None else r"not a readable \.h5ad"
    ):
        read_cells(path)


def test_truncated_h5ad_is_refused(
    cells_file: tuple[Path, anndata.AnnData], tmp_path: Path
) -> None:
    path, _ = cells_file
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"not a readable \.h5ad"):
        read_cells(cut, sample_key="patient")
    with pytest.raises(InputError, match=r"not a readable \.h5ad"):
        read_tahoe_plate(cut)
