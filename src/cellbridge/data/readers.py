"""Read an .h5ad file whose ``obs`` keys the user names, with canonical copies of them.

This module is also the single place that opens .h5ad files for cellbridge (the CLI and
the Tahoe-100M plate reader go through :func:`read_h5ad`), and it holds the small helpers
the layout readers share (:mod:`cellbridge.data.readers_3ca`,
:mod:`cellbridge.data.readers_tahoe`, :mod:`cellbridge.data.readers_tahoe_parquet`).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

import anndata
import pandas as pd

from cellbridge._checks import require_unique
from cellbridge.errors import InputError, format_values

__all__ = ["read_cells", "read_h5ad"]

PathLike = str | os.PathLike[str]


def read_h5ad(path: PathLike, *, field: str = "input", backed: bool = False) -> anndata.AnnData:
    """Open an .h5ad file, turning a missing or unreadable file into an InputError.

    Parameters
    ----------
    path
        The .h5ad file.
    field
        The argument name shown in the error (``"input"`` for the CLI).
    backed
        Open read-only in backed mode (``X`` stays on disk, ``obs``/``var`` are loaded);
        the caller closes ``adata.file``.

    Returns
    -------
    anndata.AnnData
        In memory, or backed when ``backed`` is true.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(field, f"no such file: {str(path)!r}")
    try:
        if backed:
            return anndata.read_h5ad(path, backed="r")
        return anndata.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for corrupt files
        raise InputError(
            field,
            f"{str(path)!r} is not a readable .h5ad file ({exc})",
            fix="check the file is complete (not truncated) and was written by anndata",
        ) from exc


def read_cells(
    path: PathLike,
    *,
    sample_key: str | None = "sample",
    cell_type_key: str | None = None,
    cohort_key: str | None = None,
    embedding_key: str | None = None,
    backed: bool = False,
) -> anndata.AnnData:
    """Read single cells from any .h5ad file, checking the ``obs``/``obsm`` keys named.

    Parameters
    ----------
    path
        The .h5ad file.
    sample_key, cell_type_key, cohort_key
        ``obs`` columns holding the sample, cell type and cohort of each cell (``None``:
        not needed). When one differs from its canonical name (``sample``, ``cell_type``,
        ``cohort``), a copy is added under the canonical name so that every later step
        can use the defaults.
    embedding_key
        An ``obsm`` key that must be present (a frozen foundation-model embedding such as
        ``X_scGPT``), or ``None``.
    backed
        Open in read-only backed mode: ``X`` stays on disk (close ``adata.file`` when
        done). ``obs`` is in memory, so the canonical copies are still added.

    Returns
    -------
    anndata.AnnData
        The file's data with the canonical ``obs`` copies. An existing
        ``uns["cellbridge"]["provenance"]`` is kept; otherwise it names the file.

    Raises
    ------
    InputError
        For a missing or unreadable file, repeated cell names, an ``obs``/``obsm`` key
        that is not there (the available ones are listed), or a canonical column that
        already exists with values different from the column named for it.
    """
    path = Path(path)
    adata = read_h5ad(path, field="path", backed=backed)
    try:
        keys = {"sample": sample_key, "cell_type": cell_type_key, "cohort": cohort_key}
        for canonical, key in keys.items():
            if key is not None:
                require_columns(adata.obs, [key], field=f"{canonical}_key", where=str(path))
        if embedding_key is not None and embedding_key not in adata.obsm:
            raise InputError(
                "embedding_key",
                f"no obsm key {embedding_key!r} in {str(path)!r}",
                fix=f"choose one of the obsm keys: {format_values(list(adata.obsm), limit=20)}"
                if len(adata.obsm)
                else "the file has no obsm entries; compute the embedding first",
            )
        require_unique(
            adata.obs_names,
            "obs_names",
            what="cell names",
            fix="call adata.obs_names_make_unique() and write the file again",
        )
        for canonical, key in keys.items():
            if key is not None and key != canonical:
                claim_column(adata.obs, canonical, adata.obs[key], source=f"obs[{key!r}]")
                adata.obs[canonical] = adata.obs[key].copy()
    except BaseException:
        if backed:
            adata.file.close()
        raise
    info = adata.uns.setdefault("cellbridge", {})
    if isinstance(info, dict):
        info.setdefault("provenance", f"h5ad file: {path}")
    return adata


def require_columns(frame: pd.DataFrame, keys: Collection[str], *, field: str, where: str) -> None:
    """Refuse column names absent from ``frame``, listing the ones it has."""
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise InputError(
            field,
            f"no such column in {where}",
            values=missing,
            fix=f"choose among the columns: {format_values(frame.columns, limit=20)}",
        )


def claim_column(frame: pd.DataFrame, name: str, values: pd.Series, *, source: str) -> None:
    """Refuse to put ``values`` under ``name`` where a column with other values exists.

    Equal values (NaN matching NaN) are fine: the copy changes nothing.
    """
    if name not in frame.columns:
        return
    existing = frame[name].astype(object).reset_index(drop=True)
    new = pd.Series(values).astype(object).reset_index(drop=True)
    if existing.equals(new):
        return
    differ = (existing.astype(str) != new.astype(str)).to_numpy()
    raise InputError(
        f"obs[{name!r}]",
        f"exists already with values different from {source}, e.g.",
        values=[f"{a!r} vs {b!r}" for a, b in zip(existing[differ], new[differ], strict=True)],
        fix=f"rename or remove the existing {name!r} column, or use it as the key",
    )


Filters = dict[str, tuple[str, list[str]]]
"""Column -> (option name, wanted values): the row filters of the Tahoe-100M readers."""


def build_filters(options: Mapping[str, tuple[str, str | Collection[str] | None]]) -> Filters:
    """Collect ``{option: (column, values)}`` into filters, leaving out ``None`` values.

    A bare string is one value; values are compared as strings.
    """
    filters: Filters = {}
    for option, (key, values) in options.items():
        if values is None:
            continue
        # a bare string is one value, not a sequence of characters
        chosen = [values] if isinstance(values, str) else [str(v) for v in values]
        if not chosen:
            raise InputError(option, "is empty", fix="pass None to keep every value, or some")
        if key in filters:
            raise InputError(
                option,
                f"filters the column {key!r} that {filters[key][0]} filters already",
                fix="give each filter its own column key",
            )
        filters[key] = (option, list(dict.fromkeys(chosen)))
    return filters


def require_positive(value: int | None, field: str) -> None:
    """Refuse a count option that is not a positive integer (``None`` passes)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(field, "must be a positive integer", values=[value])
