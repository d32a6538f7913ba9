"""Read selections of cells from the Tahoe-100M parquet shards (the Hugging Face layout).

Each shard row is one cell: ``genes`` (list<int64> of gene token ids) and ``expressions``
(list<float32>, same length) hold its non-zero counts, the other columns its metadata
(``drug``, ``sample``, ``cell_line_id``, ``plate``, ``BARCODE_SUB_LIB_ID``,
``canonical_smiles``, ``pubchem_cid``, ``moa-fine``). A gene table maps ``token_id`` to
``gene_symbol`` (and ``ensembl_id``). Shards are read in record batches and filtered batch
by batch, so memory holds one batch (plus the parquet row group it comes from) and the
cells selected so far.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from cellbridge._checks import require_unique
from cellbridge.data.readers import (
    Filters,
    PathLike,
    build_filters,
    require_columns,
    require_positive,
)
from cellbridge.errors import InputError, format_values

__all__ = ["read_tahoe_parquet"]

logger = logging.getLogger(__name__)

GENES = "genes"
EXPRESSIONS = "expressions"
TOKEN = "token_id"
SYMBOL = "gene_symbol"


def read_tahoe_parquet(
    shards: PathLike | Sequence[PathLike],
    *,
    gene_metadata: PathLike | pd.DataFrame,
    cell_lines: str | Collection[str] | None = None,
    drugs: str | Collection[str] | None = None,
    plates: str | Collection[str] | None = None,
    drug_key: str = "drug",
    cell_line_key: str = "cell_line_id",
    plate_key: str = "plate",
    columns: Sequence[str] | None = None,
    drop_first_token: bool = False,
    var_names_make_unique: bool = False,
    batch_size: int = 65_536,
) -> anndata.AnnData:
    """Read the cells of Tahoe-100M parquet shards that pass the metadata filters.

    Parameters
    ----------
    shards
        Parquet files, or one folder whose ``*.parquet`` files (in name order) are read.
    gene_metadata
        The gene table (a parquet file or a DataFrame) with columns ``token_id`` and
        ``gene_symbol``; its other columns (``ensembl_id``) go to ``var``.
    cell_lines, drugs, plates
        Values to keep (one name or several; ``None`` keeps all), compared as strings.
        Each value must occur in some shard (checked first, reading only those columns).
    drug_key, cell_line_key, plate_key
        The metadata columns the filters apply to.
    columns
        Metadata columns to keep in ``obs``; default every column but ``genes`` and
        ``expressions``. The filter columns are always kept.
    drop_first_token
        Drop the first (``genes``, ``expressions``) pair of every row. In the released
        Tahoe-100M shards the first token of each row is a special marker, not a gene:
        pass ``True`` for them. Without it such a marker is refused as an unknown token
        or a negative expression.
    var_names_make_unique
        Repeated gene symbols are refused unless this is true, in which case anndata's
        ``var_names_make_unique`` renames them.
    batch_size
        Rows per record batch (``ParquetFile.iter_batches``).

    Returns
    -------
    anndata.AnnData
        ``X``: CSR float32, cells x all genes of the gene table in its order. ``obs``:
        the metadata columns (text columns as categoricals), ``obs_names`` =
        ``"<shard file stem>:<row in shard>"``.

    Raises
    ------
    InputError
        Missing columns, unknown filter values, rows whose ``genes`` and ``expressions``
        differ in length (the shard and row are named), token ids not in the gene table,
        a token repeated within a row, negative or non-finite expressions, repeated
        token ids or gene symbols in the gene table.
    """
    require_positive(batch_size, "batch_size")
    files = _shard_files(shards)
    genes = _gene_table(gene_metadata, var_names_make_unique)
    filters = build_filters(
        {
            "drugs": (drug_key, drugs),
            "cell_lines": (cell_line_key, cell_lines),
            "plates": (plate_key, plates),
        }
    )
    if columns is not None and {GENES, EXPRESSIONS} & set(columns):
        raise InputError(
            "columns",
            "names the list columns, which become X",
            values=sorted({GENES, EXPRESSIONS} & set(columns)),
            fix="name metadata columns only",
        )
    first = pq.read_schema(files[0]).names
    meta_cols = (
        [c for c in first if c not in (GENES, EXPRESSIONS)] if columns is None else list(columns)
    )
    meta_cols += [k for k in filters if k not in meta_cols]
    for path in files:
        names = pq.read_schema(path).names
        require_columns(
            pd.DataFrame(columns=names),
            [GENES, EXPRESSIONS, *meta_cols],
            field="shards",
            where=path.name,
        )
    if filters:
        _check_values_occur(files, filters, batch_size)

    tokens = genes[TOKEN].to_numpy(dtype=np.int64)
    order = np.argsort(tokens, kind="stable")
    lookup = (tokens[order], order)
    parts: list[sp.csr_matrix] = []
    frames: list[pd.DataFrame] = []
    for path in files:
        with pq.ParquetFile(path) as pf:
            start = 0
            for batch in pf.iter_batches(
                batch_size=batch_size, columns=[GENES, EXPRESSIONS, *meta_cols]
            ):
                idx = np.flatnonzero(_batch_mask(batch, filters))
                if idx.size:
                    sub = batch if idx.size == batch.num_rows else batch.take(pa.array(idx))
                    where = (path.name, start + idx)
                    parts.append(_batch_matrix(sub, where, lookup, len(genes), drop_first_token))
                    frame = sub.select(meta_cols).to_pandas()
                    frame.index = pd.Index([f"{path.stem}:{r}" for r in start + idx])
                    frames.append(frame)
                start += batch.num_rows
        logger.info("%s: %d rows read", path.name, start)
    n_cells = sum(p.shape[0] for p in parts)
    logger.info("read %d cells from %d shards", n_cells, len(files))
    if not n_cells:
        logger.warning("no cell passes the filters")
    X = (
        sp.vstack(parts, format="csr")
        if parts
        else sp.csr_matrix((0, len(genes)), dtype=np.float32)
    )
    obs = (
        pd.concat(frames)
        if frames
        else pd.DataFrame(columns=meta_cols, index=pd.Index([], dtype=str))
    )
    for name in obs.columns:
        if obs[name].dtype == object:
            obs[name] = obs[name].astype("category")
    adata = anndata.AnnData(X=X, obs=obs, var=genes)
    adata.uns["cellbridge"] = {
        "provenance": f"Tahoe-100M parquet shards: {', '.join(str(f) for f in files)}",
    }
    return adata


def _shard_files(shards: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(shards, str | os.PathLike):
        root = Path(shards)
        files = sorted(root.glob("*.parquet")) if root.is_dir() else [root]
    else:
        files = [Path(s) for s in shards]
    if not files:
        raise InputError("shards", "no parquet files", values=[str(shards)])
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError("shards", "no such files", values=missing)
    require_unique(
        [f.stem for f in files], "shards", what="file names", fix="give each shard its own name"
    )
    return files


def _gene_table(source: PathLike | pd.DataFrame, make_unique: bool) -> pd.DataFrame:
    table = source.copy() if isinstance(source, pd.DataFrame) else pd.read_parquet(source)
    require_columns(table, [TOKEN, SYMBOL], field="gene_metadata", where="the gene table")
    require_unique(table[TOKEN], f"gene_metadata[{TOKEN!r}]", what="token ids")
    if table[SYMBOL].isna().any():
        raise InputError(
            f"gene_metadata[{SYMBOL!r}]",
            "genes without a symbol, tokens",
            values=table.loc[table[SYMBOL].isna(), TOKEN].tolist(),
        )
    symbols = pd.Index(table[SYMBOL].astype(str))
    if not make_unique:
        require_unique(
            symbols,
            f"gene_metadata[{SYMBOL!r}]",
            what="gene symbols",
            fix="pass var_names_make_unique=True",
        )
    table.index = symbols
    if make_unique and not symbols.is_unique:
        holder = anndata.AnnData(var=pd.DataFrame(index=pd.RangeIndex(len(table)).astype(str)))
        holder.var_names = symbols
        holder.var_names_make_unique()
        logger.info("renamed %d repeated gene symbols", symbols.duplicated().sum())
        table.index = holder.var_names
    return table


def _batch_mask(batch: pa.RecordBatch, filters: Filters) -> np.ndarray:
    mask = np.ones(batch.num_rows, dtype=bool)
    for key, (_, wanted) in filters.items():
        text = pc.cast(batch.column(key), pa.string())
        hit = pc.is_in(text, value_set=pa.array(wanted, pa.string())).fill_null(False)
        mask &= hit.to_numpy(zero_copy_only=False)
    return mask


def _check_values_occur(files: list[Path], filters: Filters, batch_size: int) -> None:
    seen: dict[str, set[str]] = {key: set() for key in filters}
    for path in files:
        with pq.ParquetFile(path) as pf:
            for batch in pf.iter_batches(batch_size=batch_size, columns=list(filters)):
                for key in filters:
                    values = pc.unique(pc.cast(batch.column(key), pa.string())).drop_null()
                    seen[key].update(values.to_pylist())
    for key, (option, wanted) in filters.items():
        unknown = [v for v in wanted if v not in seen[key]]
        if unknown:
            raise InputError(
                option,
                f"values in column {key!r} of none of the {len(files)} shards",
                values=unknown,
                fix=f"choose among the {len(seen[key])} present, e.g. "
                f"{format_values(sorted(seen[key]), limit=8)}",
            )


def _batch_matrix(
    sub: pa.RecordBatch,
    where: tuple[str, np.ndarray],
    lookup: tuple[np.ndarray, np.ndarray],
    n_genes: int,
    drop_first: bool,
) -> sp.csr_matrix:
    """The selected rows of one batch as CSR, after checking them."""
    shard, rows = where
    genes, values = sub.column(GENES), sub.column(EXPRESSIONS)
    for name, col in ((GENES, genes), (EXPRESSIONS, values)):
        if col.null_count or col.flatten().null_count:
            bad = rows[np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False))]
            raise InputError(
                f"{shard}[{name!r}]",
                "missing lists or list items at rows",
                values=bad.tolist() or ["(items)"],
            )
    g_off = np.asarray(genes.offsets).astype(np.int64)
    e_off = np.asarray(values.offsets).astype(np.int64)
    lengths = np.diff(g_off)
    differ = lengths != np.diff(e_off)
    if differ.any():
        raise InputError(
            shard,
            "genes and expressions differ in length at rows",
            values=[
                f"row {r}: {a} vs {b}"
                for r, a, b in zip(
                    rows[differ], lengths[differ], np.diff(e_off)[differ], strict=True
                )
            ],
            fix="each row needs one expression value per gene token",
        )
    tokens = genes.flatten().to_numpy().astype(np.int64, copy=False)
    # a writable copy: scipy sorts the row indices (and values) in place
    expr = np.array(values.flatten().to_numpy(), dtype=np.float32)
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    if drop_first:
        if (lengths == 0).any():
            raise InputError(
                shard,
                "empty rows have no first token to drop, rows",
                values=rows[lengths == 0].tolist(),
            )
        keep = np.ones(tokens.size, dtype=bool)
        keep[g_off[:-1] - g_off[0]] = False
        tokens, expr, row_of, lengths = tokens[keep], expr[keep], row_of[keep], lengths - 1
    marker_hint = (
        ""
        if drop_first
        else "; the released shards start each row with a marker token: pass drop_first_token=True"
    )
    sorted_tokens, order = lookup
    pos = np.minimum(np.searchsorted(sorted_tokens, tokens), max(len(sorted_tokens) - 1, 0))
    known = (
        sorted_tokens[pos] == tokens if len(sorted_tokens) else np.zeros(tokens.size, dtype=bool)
    )
    if not known.all():
        raise InputError(
            f"{shard}[{GENES!r}]",
            "token ids not in the gene table",
            values=np.unique(tokens[~known]).tolist(),
            fix="pass the gene table that belongs to these shards" + marker_hint,
        )
    bad = ~np.isfinite(expr) | (expr < 0)
    if bad.any():
        raise InputError(
            f"{shard}[{EXPRESSIONS!r}]",
            "negative or non-finite expressions at rows",
            values=[f"row {r}: {v}" for r, v in zip(rows[row_of[bad]], expr[bad], strict=True)],
            fix="give raw counts" + marker_hint,
        )
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    matrix = sp.csr_matrix((expr, order[pos], indptr), shape=(len(lengths), n_genes))
    nnz = matrix.nnz
    matrix.sum_duplicates()
    if matrix.nnz != nnz:
        cols = order[pos]
        sort = np.lexsort((cols, row_of))
        same = (np.diff(row_of[sort]) == 0) & (np.diff(cols[sort]) == 0)
        raise InputError(
            f"{shard}[{GENES!r}]",
            "a token repeats within a row",
            values=[
                f"row {rows[row_of[sort][i]]}: token {tokens[sort][i]}"
                for i in np.flatnonzero(same)
            ],
            fix="give each gene once per row",
        )
    return matrix
