"""Read Curated Cancer Cell Atlas (3CA) study folders (Gavish et al. 2023; Tyler et al. 2025).

A 3CA study download holds ``Cells.csv`` (one row per cell), ``Genes.txt`` (one gene
symbol per line, no header), a MatrixMarket matrix of **genes x cells**
(``Exp_data_UMIcounts.mtx``, or ``Exp_data_TPM.mtx`` for some studies) and, for most
studies, ``Meta-data.csv`` (one row per sample). POPPY (A.3.1) keeps annotated cells with
at least 1000 counts, then samples with at least 10 cells; both filters are options here.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import anndata
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from cellbridge._checks import require_unique
from cellbridge.data.readers import PathLike, claim_column, require_columns, require_positive
from cellbridge.errors import InputError, format_values

__all__ = ["read_3ca", "read_3ca_study"]

logger = logging.getLogger(__name__)

CELLS_FILE = "Cells.csv"
GENES_FILE = "Genes.txt"
METADATA_FILE = "Meta-data.csv"
# float32 holds every integer up to 2**24 exactly; larger counts would be rounded.
FLOAT32_EXACT = 2**24


def read_3ca_study(
    path: PathLike,
    *,
    study: str | None = None,
    matrix: str = "Exp_data_UMIcounts.mtx",
    cell_key: str = "cell_name",
    sample_key: str = "sample",
    cell_type_key: str = "cell_type",
    metadata_sample_key: str | None = None,
    drop_unlabelled: bool = False,
    min_counts: float | None = None,
    min_cells_per_sample: int | None = None,
    var_names_make_unique: bool = False,
) -> anndata.AnnData:
    """Read one 3CA study folder into a cells x genes AnnData.

    Parameters
    ----------
    path
        The study folder (``Cells.csv``, ``Genes.txt``, the matrix, maybe ``Meta-data.csv``).
    study
        Name of the study, used as ``obs["cohort"]`` and as the sample-id prefix; default
        the folder name.
    matrix
        The MatrixMarket file (genes x cells), e.g. ``"Exp_data_TPM.mtx"``; ``.mtx.gz``
        is read too.
    cell_key, sample_key, cell_type_key
        Columns of ``Cells.csv`` with the cell name, the sample and the cell type.
    metadata_sample_key
        Sample column of ``Meta-data.csv``; default ``sample_key``.
    drop_unlabelled
        Drop cells without a cell type (empty or NA) and log how many; by default they
        are refused, because POPPY trains on annotated cells only.
    min_counts
        Drop cells whose total count is below this (POPPY A.3.1 uses 1000 UMIs).
    min_cells_per_sample
        Then drop samples with fewer cells than this (POPPY A.3.1 uses 10).
    var_names_make_unique
        Repeated gene symbols are refused unless this is true, in which case anndata's
        ``var_names_make_unique`` renames them (``TBCE``, ``TBCE-1``) and the count is
        logged.

    Returns
    -------
    anndata.AnnData
        ``X``: CSR float32, cells x genes (integer counts are checked to stay exact).
        ``obs`` (index = cell names): the columns of ``Cells.csv`` and of ``Meta-data.csv``
        (joined on the sample; clashing names get the suffix ``_metadata``), plus
        ``sample`` = ``"<study>:<sample>"`` (unique across studies), ``sample_original``,
        ``cohort`` = study and ``cell_type``. ``uns["cellbridge"]`` holds ``provenance``
        and ``dropped`` (counts per reason).

    Raises
    ------
    InputError
        Missing files or columns; a matrix shape that does not match ``Genes.txt`` and
        ``Cells.csv``; repeated cell names or gene symbols; negative, non-finite or (for
        integers) too large counts; cells without a sample, or without a cell type
        unless ``drop_unlabelled``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputError("path", f"not a 3CA study folder: {str(folder)!r} is not a directory")
    study = folder.name if study is None else study
    if not study:
        raise InputError("study", "is empty", fix="give the study a name")
    require_positive(min_cells_per_sample, "min_cells_per_sample")
    if min_counts is not None and not (np.isfinite(min_counts) and min_counts >= 0):
        raise InputError("min_counts", "must be a finite number >= 0", values=[min_counts])
    _require_files(folder, [CELLS_FILE, GENES_FILE, matrix])

    genes = _read_genes(folder / GENES_FILE)
    keys = [cell_key, sample_key, cell_type_key]
    header = pd.read_csv(folder / CELLS_FILE, nrows=0).columns
    require_columns(pd.DataFrame(columns=header), keys, field="Cells.csv", where=str(folder))
    # ids stay strings: sample "007" must not become 7
    cells = pd.read_csv(folder / CELLS_FILE, dtype=dict.fromkeys(keys, str))
    counts = _read_matrix(folder / matrix, n_genes=len(genes), n_cells=len(cells))

    names = cells[cell_key]
    if names.isna().any():
        raise InputError(
            f"Cells.csv[{cell_key!r}]",
            "cells without a name, at rows",
            values=np.flatnonzero(names.isna().to_numpy()).tolist(),
        )
    require_unique(names, f"Cells.csv[{cell_key!r}]", what="cell names")
    if cells[sample_key].isna().any():
        raise InputError(
            f"Cells.csv[{sample_key!r}]",
            "cells without a sample",
            values=names[cells[sample_key].isna()].tolist(),
            fix="assign every cell to a sample",
        )
    obs = cells.drop(columns=cell_key).set_axis(pd.Index(names.to_numpy(), dtype=str), axis=0)
    if not var_names_make_unique:
        require_unique(
            genes, "Genes.txt", what="gene symbols", fix="pass var_names_make_unique=True"
        )

    dropped: dict[str, int] = {}
    keep = _labelled(obs, cell_type_key, drop_unlabelled, study, dropped)
    if min_counts is not None:
        totals = np.asarray(counts.sum(axis=1)).ravel()
        low = keep & (totals < min_counts)
        dropped["cells_below_min_counts"] = int(low.sum())
        logger.info("%s: dropped %d cells with < %s counts", study, low.sum(), min_counts)
        keep &= ~low
    if min_cells_per_sample is not None:
        size = obs.loc[keep, sample_key].value_counts()
        small = size.index[size < min_cells_per_sample]
        in_small = keep & obs[sample_key].isin(small).to_numpy()
        dropped["samples_below_min_cells"] = len(small)
        dropped["cells_in_small_samples"] = int(in_small.sum())
        logger.info(
            "%s: dropped %d samples with < %d cells (%d cells)",
            study,
            len(small),
            min_cells_per_sample,
            in_small.sum(),
        )
        keep &= ~in_small
    obs, counts = obs.loc[keep], counts[keep]

    original = obs[sample_key].astype(str)
    obs = _join_metadata(obs, folder, original, metadata_sample_key or sample_key, study)
    for name, source, values in (
        ("sample_original", sample_key, original),
        ("sample", sample_key, original),
        ("cell_type", cell_type_key, obs[cell_type_key]),
        ("cohort", None, pd.Series(study, index=obs.index)),
    ):
        if name != source:
            claim_column(obs, name, values, source=f"Cells.csv[{source!r}]" if source else study)
    obs["sample_original"] = original.to_numpy()
    obs["sample"] = pd.Categorical(study + ":" + original)
    obs["cell_type"] = pd.Categorical(obs[cell_type_key])
    obs["cohort"] = pd.Categorical([study] * len(obs))

    adata = anndata.AnnData(
        X=counts, obs=obs, var=pd.DataFrame(index=pd.RangeIndex(len(genes)).astype(str))
    )
    adata.var_names = pd.Index(genes)
    if var_names_make_unique and not adata.var_names.is_unique:
        n_repeated = int(adata.var_names.duplicated().sum())
        adata.var_names_make_unique()
        logger.info("%s: renamed %d repeated gene symbols to make them unique", study, n_repeated)
    adata.uns["cellbridge"] = {
        "provenance": f"3CA study folder: {folder} (study {study!r}, matrix {matrix})",
        "dropped": dropped,
    }
    return adata


def read_3ca(
    paths_or_parent_dir: PathLike | Sequence[PathLike],
    *,
    studies: Sequence[str] | None = None,
    join: Literal["inner", "outer"] = "inner",
    **options: Any,
) -> anndata.AnnData:
    """Read several 3CA study folders and concatenate them.

    Parameters
    ----------
    paths_or_parent_dir
        Study folders, or one folder whose sub-folders holding ``Cells.csv`` are the
        studies (in name order; other sub-folders are skipped and logged). A folder that
        itself holds ``Cells.csv`` is read as one study.
    studies
        One unique name per folder; default the folder names.
    join
        ``"inner"`` keeps the genes every study measured (how many others are dropped is
        logged and stored in ``uns["cellbridge"]["dropped"]``); ``"outer"`` keeps all
        genes and fills those a study did not measure with 0 (logged per study, stored in
        ``uns["cellbridge"]["genes_filled_with_zero"]``), which reads as "not expressed".
    **options
        Passed on to :func:`read_3ca_study` (``matrix``, keys, filters, ...).

    Returns
    -------
    anndata.AnnData
        As :func:`read_3ca_study`, with ``obs_names`` = ``"<study>:<cell name>"`` so that
        cells stay unique across studies; ``obs`` has the union of the studies' columns
        (NaN where a study lacks one).
    """
    if join not in ("inner", "outer"):
        raise InputError("join", "must be 'inner' or 'outer'", values=[join])
    folders = _study_folders(paths_or_parent_dir)
    names = [f.name for f in folders] if studies is None else [str(s) for s in studies]
    if len(names) != len(folders):
        raise InputError(
            "studies", f"has {len(names)} names for {len(folders)} folders", values=names
        )
    require_unique(names, "studies", what="study names", fix="pass studies=[...], one per folder")
    parts = []
    for folder, name in zip(folders, names, strict=True):
        part = read_3ca_study(folder, study=name, **options)
        part.obs_names = name + ":" + part.obs_names
        parts.append(part)
    union = pd.Index(sorted(set().union(*(p.var_names for p in parts))))
    combined = anndata.concat(parts, join=join)
    # anndata's concat also joins obs columns with `join`; keep every column instead
    obs = pd.concat([p.obs for p in parts])
    for name in ("sample", "cohort", "cell_type"):
        obs[name] = obs[name].astype("category")  # categories differ between studies
    combined.obs = obs
    info: dict[str, Any] = {
        "provenance": "3CA study folder(s): "
        + ", ".join(f"{n} ({f})" for f, n in zip(folders, names, strict=True)),
        "dropped": {
            "per_study": {
                n: p.uns["cellbridge"]["dropped"] for n, p in zip(names, parts, strict=True)
            }
        },
    }
    if join == "inner":
        n_lost = len(union) - combined.n_vars
        info["dropped"]["genes_not_in_every_study"] = n_lost
        logger.info(
            "inner join kept %d genes, dropped %d not in every study", combined.n_vars, n_lost
        )
    else:
        filled = {n: int(len(union) - p.n_vars) for n, p in zip(names, parts, strict=True)}
        info["genes_filled_with_zero"] = filled
        for n, k in filled.items():
            if k:
                logger.warning("outer join: study %s lacks %d genes, filled with 0", n, k)
    combined.uns["cellbridge"] = info
    return combined


def _require_files(folder: Path, names: Sequence[str]) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        present = sorted(p.name for p in folder.iterdir())
        raise InputError(
            "path",
            f"missing files in 3CA study folder {str(folder)!r}",
            values=missing,
            fix=f"the folder holds {format_values(present, limit=10)}; pass matrix= for "
            "another matrix file",
        )


def _study_folders(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, str | Path) or not isinstance(paths, Sequence):
        parent = Path(paths)
        if (parent / CELLS_FILE).is_file():
            return [parent]
        if not parent.is_dir():
            raise InputError("paths_or_parent_dir", f"not a directory: {str(parent)!r}")
        subs = sorted(p for p in parent.iterdir() if p.is_dir())
        folders = [p for p in subs if (p / CELLS_FILE).is_file()]
        if len(folders) < len(subs):
            logger.info(
                "%s: skipped %d sub-folders without %s",
                parent,
                len(subs) - len(folders),
                CELLS_FILE,
            )
        if not folders:
            raise InputError(
                "paths_or_parent_dir",
                f"no sub-folder of {str(parent)!r} holds {CELLS_FILE}",
                fix="pass the study folders themselves",
            )
        return folders
    if not paths:
        raise InputError("paths_or_parent_dir", "is empty", fix="pass at least one study folder")
    return [Path(p) for p in paths]


def _read_genes(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    empty = [i + 1 for i, line in enumerate(lines) if not line]
    if empty:
        raise InputError(str(path), "empty gene symbols at lines", values=empty)
    return lines


def _open(path: Path) -> gzip.GzipFile | io.BufferedReader:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _matrix_header(path: Path) -> tuple[int, int, str, str]:
    """Shape, format and field from the MatrixMarket header, without reading the entries."""
    # read here rather than with scipy.io.mminfo, which aborts the process on some streams
    with _open(path) as fh:
        banner = fh.readline().decode(errors="replace").split()
        line = fh.readline()
        while line.startswith(b"%"):
            line = fh.readline()
    size = line.split()
    if (
        len(banner) < 5
        or banner[0].lower() != "%%matrixmarket"
        or len(size) < 2
        or not (size[0].isdigit() and size[1].isdigit())
    ):
        raise InputError(path.name, "is not a MatrixMarket file (no '%%MatrixMarket' header)")
    return int(size[0]), int(size[1]), banner[2].lower(), banner[3].lower()


def _read_matrix(path: Path, *, n_genes: int, n_cells: int) -> sp.csr_matrix:
    """The genes x cells MatrixMarket file as a checked cells x genes float32 CSR."""
    rows, cols, fmt, field = _matrix_header(path)
    if (rows, cols) != (n_genes, n_cells):
        hint = (
            "the matrix looks transposed (3CA stores genes x cells)"
            if (rows, cols) == (n_cells, n_genes)
            else "check that Genes.txt has no header line and that the files belong together"
        )
        raise InputError(
            path.name,
            f"shape {rows} x {cols} does not match {n_genes} genes in {GENES_FILE} x "
            f"{n_cells} cells in {CELLS_FILE}",
            fix=hint,
        )
    if fmt != "coordinate" or field == "pattern" or field == "complex":
        raise InputError(
            path.name,
            f"is a {fmt} {field} matrix",
            fix="give a coordinate matrix of integer or real values",
        )
    with _open(path) as fh:
        coo = sp.coo_matrix(scipy.io.mmread(fh))
    bad = ~np.isfinite(coo.data) | (coo.data < 0)
    if bad.any():
        raise InputError(
            path.name,
            "negative or non-finite values at (gene, cell)",
            values=[
                f"({r + 1}, {c + 1}): {v}"
                for r, c, v in zip(coo.row[bad], coo.col[bad], coo.data[bad], strict=True)
            ],
            fix="give raw counts (or TPM), which are non-negative",
        )
    if field == "integer" and coo.nnz and coo.data.max() > FLOAT32_EXACT:
        raise InputError(
            path.name,
            f"counts above 2**24 cannot be held exactly in float32 (max {coo.data.max()})",
        )
    return sp.csr_matrix(coo.T, dtype=np.float32)


def _labelled(
    obs: pd.DataFrame, key: str, drop: bool, study: str, dropped: dict[str, int]
) -> np.ndarray:
    labels = obs[key]
    missing = (labels.isna() | (labels.astype(str).str.strip() == "")).to_numpy()
    if missing.any() and not drop:
        raise InputError(
            f"Cells.csv[{key!r}]",
            f"{int(missing.sum())} cells have no cell type, e.g.",
            values=obs.index[missing].tolist(),
            fix="annotate them, or pass drop_unlabelled=True to drop them (POPPY A.3.1)",
        )
    if drop:
        dropped["cells_unlabelled"] = int(missing.sum())
        logger.info("%s: dropped %d cells without a cell type", study, missing.sum())
    return ~missing


def _join_metadata(
    obs: pd.DataFrame, folder: Path, samples: pd.Series, key: str, study: str
) -> pd.DataFrame:
    path = folder / METADATA_FILE
    if not path.is_file():
        logger.info("%s: no %s, no sample metadata joined", study, METADATA_FILE)
        return obs
    meta = pd.read_csv(path, dtype={key: str})
    require_columns(meta, [key], field=METADATA_FILE, where=str(folder))
    require_unique(meta[key], f"{METADATA_FILE}[{key!r}]", what="samples")
    meta = meta.set_index(key)
    clash = [c for c in meta.columns if c in obs.columns]
    if clash:
        logger.info(
            "%s: %s columns also in %s renamed *_metadata: %s",
            study,
            METADATA_FILE,
            CELLS_FILE,
            clash,
        )
        meta = meta.rename(columns={c: f"{c}_metadata" for c in clash})
    absent = sorted(set(samples) - set(meta.index))
    if absent:
        logger.warning(
            "%s: %d samples have no row in %s (their metadata is NaN): %s",
            study,
            len(absent),
            METADATA_FILE,
            format_values(absent),
        )
    rows = meta.reindex(samples.to_numpy()).set_axis(obs.index, axis=0)
    return pd.concat([obs, rows], axis=1)
