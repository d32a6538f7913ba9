"""Gene-program membership of cells and the ontology nodes that carry it (POPPY A.1).

POPPY adds each gene program (e.g. a 3CA metaprogram) as a child node of the cell type
it was defined in, and counts a cell as a member when its loading is both positive and
above the 75th percentile of that program's loadings across all cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from cellbridge._checks import require_unique_axes
from cellbridge.errors import InputError

__all__ = [
    "PROGRAM_SEPARATOR",
    "assign_programs",
    "is_program_node",
    "nmf_programs",
    "program_node_id",
]

#: Joins a cell-type id and a program name into a program node id.
PROGRAM_SEPARATOR = "/program:"


def program_node_id(cell_type_id: str, program: str) -> str:
    """The id of the node for ``program`` under ``cell_type_id``.

    Parameters
    ----------
    cell_type_id
        The cell type's term id (e.g. ``"CL:0000236"``); not itself a program node.
    program
        The program's name, non-empty (e.g. a 3CA metaprogram ``"MP1"``).

    Examples
    --------
    >>> program_node_id("CL:0000236", "MP1")
    'CL:0000236/program:MP1'
    """
    if not cell_type_id or PROGRAM_SEPARATOR in cell_type_id:
        raise InputError(
            "cell_type_id",
            "expected a cell-type term id",
            values=[cell_type_id],
            fix="pass an id such as 'CL:0000236'",
        )
    if not isinstance(program, str) or not program:
        raise InputError("program", "expected a non-empty program name", values=[program])
    return f"{cell_type_id}{PROGRAM_SEPARATOR}{program}"


def is_program_node(node_id: str) -> bool:
    """Whether ``node_id`` names a gene-program node (see :func:`program_node_id`).

    Parameters
    ----------
    node_id
        A node id of a pruned ontology graph.
    """
    return PROGRAM_SEPARATOR in node_id


def assign_programs(loadings: pd.DataFrame, *, quantile: float = 0.75) -> pd.DataFrame:
    """Which cells belong to which gene program (POPPY A.1).

    Cell :math:`c` belongs to program :math:`k` when

    .. math:: L_{ck} > 0 \\quad\\text{and}\\quad L_{ck} > Q_q(L_{\\cdot k}),

    where :math:`Q_q` is the ``quantile``-th quantile (numpy's default linear
    interpolation) of program :math:`k`'s loadings over all cells. Both inequalities
    are strict, so tied loadings at the threshold are not members.

    Parameters
    ----------
    loadings
        Cells x programs, numeric and finite; index = cell names, columns = programs.
    quantile
        In (0, 1); POPPY uses 0.75.

    Returns
    -------
    pandas.DataFrame
        Cells x programs of bool, same index and columns as ``loadings``.

    Raises
    ------
    InputError
        For ``quantile`` outside (0, 1), no cells or no programs, duplicate cell or
        program names, non-numeric columns, or NaN/inf loadings (named by cell, program).
    """
    if not isinstance(quantile, int | float) or not 0.0 < float(quantile) < 1.0:
        raise InputError(
            "quantile", "must lie strictly between 0 and 1", values=[quantile], fix="pass e.g. 0.75"
        )
    if not isinstance(loadings, pd.DataFrame) or loadings.shape[0] == 0 or loadings.shape[1] == 0:
        shape = getattr(loadings, "shape", type(loadings).__name__)
        raise InputError(
            "loadings",
            "expected a non-empty cells x programs DataFrame",
            values=[shape],
            fix="pass a DataFrame with one row per cell and one column per program",
        )
    require_unique_axes(loadings, "loadings")
    not_numeric = [c for c in loadings.columns if not pd.api.types.is_numeric_dtype(loadings[c])]
    if not_numeric:
        raise InputError(
            "loadings",
            "program columns must be numeric",
            values=not_numeric,
            fix="convert them to float",
        )
    values = loadings.to_numpy(dtype=np.float64)
    bad_rows, bad_cols = np.nonzero(~np.isfinite(values))
    if bad_rows.size:
        raise InputError(
            "loadings",
            f"{bad_rows.size} loadings are NaN or infinite, at (cell, program)",
            values=[
                (loadings.index[i], loadings.columns[j])
                for i, j in zip(bad_rows.tolist(), bad_cols.tolist(), strict=True)
            ],
            fix="impute or remove those cells before assigning programs",
        )
    threshold = np.quantile(values, float(quantile), axis=0)
    member = (values > 0.0) & (values > threshold[np.newaxis, :])
    return pd.DataFrame(member, index=loadings.index.copy(), columns=loadings.columns.copy())


def nmf_programs(
    adata: AnnData,
    *,
    n_programs: int = 6,
    layer: str | None = None,
    seed: int = 0,
    max_iter: int = 500,
) -> pd.DataFrame:
    """Gene-program loadings per cell from NMF, where no curated programs exist.

    POPPY uses the 3CA metaprograms; for data without curated programs this gives
    unsupervised ones: scikit-learn ``NMF(n_programs, init="nndsvda")`` of the
    log-normalised expression (:func:`cellbridge.encoders.log_normalised`). The cell
    loadings ``W`` are what :func:`assign_programs` thresholds.

    Parameters
    ----------
    adata
        Cells x genes: raw counts or log-normalised expression.
    n_programs
        Number of programs ``k``, in ``[1, min(n_cells, n_genes))``.
    layer
        Layer to read instead of ``adata.X``.
    seed
        ``random_state`` of the NMF solver.
    max_iter
        Iterations of the NMF solver at most.

    Returns
    -------
    pandas.DataFrame
        Cells (``obs_names``) x programs ``NMF1..NMFk``, non-negative.
    """
    from sklearn.decomposition import NMF

    from cellbridge.encoders import log_normalised

    limit = min(adata.n_obs, adata.n_vars)
    if (
        isinstance(n_programs, bool)
        or not isinstance(n_programs, int)
        or not 1 <= n_programs < limit
    ):
        raise InputError(
            "n_programs",
            f"must be an integer in [1, min(n_cells, n_genes) = {limit})",
            values=[n_programs],
        )
    X = log_normalised(adata, layer=layer)
    model = NMF(n_programs, init="nndsvda", random_state=seed, max_iter=max_iter, tol=1e-3)
    W = model.fit_transform(X)
    columns = [f"NMF{i + 1}" for i in range(n_programs)]
    return pd.DataFrame(W, index=adata.obs_names.astype(str), columns=columns)
