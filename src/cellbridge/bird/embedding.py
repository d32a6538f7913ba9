"""BiRD drug embeddings from gene-signature similarity — BiRD §2 and Algorithm 1, stages 2-4.

signatures per reference cell line -> Jaccard similarity of the gene sets (Eq. 1, Algorithm 1
lines 7-8) -> zero diagonal (line 9) -> top-L eigenpairs, ``E = Q_L Λ_L^{1/2}`` (lines 12-13)
-> concatenation across reference cell lines (line 15).

The diagonal. Eq. 1 sets ``S_uu = 1`` and Algorithm 1 line 9 sets it to 0 before the
eigendecomposition. The two agree up to a shift: with the diagonal at 1 the matrix is
``S0 + I``, which has the eigenvectors of ``S0`` and every eigenvalue larger by exactly 1.
Zeroing the diagonal therefore changes no eigenvector and no ordering of eigenvalues; it
lowers the spectrum by one, which changes which eigenvalues are positive (``S0`` has trace 0,
so its eigenvalues sum to 0 and some are negative) and hence the scale ``Λ^{1/2}`` of every
component. :func:`jaccard_similarity` returns Eq. 1 with the unit diagonal;
:func:`spectral_embedding` zeroes it (``zero_diagonal=True``) as line 9 does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from cellbridge._io import atomic_path
from cellbridge.errors import InputError

__all__ = [
    "DEFAULT_N_COMPONENTS",
    "bird_embedding",
    "jaccard_similarity",
    "load_embedding",
    "save_embedding",
    "spectral_embedding",
]

log = logging.getLogger(__name__)

DEFAULT_N_COMPONENTS = 32
"""Default embedding dimension ``L`` per reference cell line (the paper does not fix it).

Always capped at ``n_drugs - 1``: ``S0`` has a zero diagonal, hence trace 0, so its smallest
eigenvalue is never positive and the ``n``-th component would carry nothing.
"""

_SYMMETRY_RTOL = 1e-10


def _duplicates(values: Sequence[object]) -> list[object]:
    seen: set[object] = set()
    dup: list[object] = []
    for v in values:
        if v in seen and v not in dup:
            dup.append(v)
        seen.add(v)
    return dup


def _cells(rows: np.ndarray, cols: np.ndarray) -> list[tuple[int, int]]:
    """Row/column positions from ``np.nonzero`` as plain int pairs."""
    return list(zip(rows.tolist(), cols.tolist(), strict=True))


def jaccard_similarity(
    signatures: Mapping[str, Collection[str]], *, drugs: Sequence[str] | None = None
) -> pd.DataFrame:
    """Drug x drug Jaccard index of the gene signatures of one cell line — BiRD Eq. 1.

    ``S_uv = |G_u ∩ G_v| / |G_u ∪ G_v|`` with ``S_uu = 1`` (Algorithm 1 lines 7-8).

    Parameters
    ----------
    signatures
        Drug name -> its gene set ``G_{c,d}`` (Algorithm 1 line 4). Any collection of gene
        names; repeated genes within one collection count once (it is a set). A bare string
        is refused, since it would be read as a set of characters.
    drugs
        Which drugs, in which order, make the rows and columns. Default: every key of
        ``signatures`` in its iteration order. Drugs of ``signatures`` left out of ``drugs``
        are not in the result, by the caller's choice.

    Returns
    -------
    pandas.DataFrame
        Square, symmetric, float64, values in ``[0, 1]``, index and columns the drug names
        (index name ``"drug"``). The diagonal is 1 (Eq. 1). Two *empty* signatures have no
        union; their similarity is defined as 0 for ``u != v`` (nothing shared is evidence of
        nothing), so the result never holds NaN. An empty and a non-empty signature give 0.

    Raises
    ------
    InputError
        No drugs; duplicate or unknown names in ``drugs``; a signature that is a string.

    Examples
    --------
    >>> S = jaccard_similarity({"a": {"g1", "g2"}, "b": {"g2", "g3"}, "c": set()})
    >>> S.round(3).to_numpy().tolist()
    [[1.0, 0.333, 0.0], [0.333, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if drugs is None:
        names = list(signatures)
    else:
        if isinstance(drugs, str):
            raise InputError(
                "drugs", "is a single string", values=[drugs], fix="pass a list of drug names"
            )
        names = list(drugs)
        dup = _duplicates(names)
        if dup:
            raise InputError(
                "drugs", "has duplicate drug names", values=dup, fix="list each drug once"
            )
        missing = [d for d in names if d not in signatures]
        if missing:
            raise InputError(
                "drugs",
                "names drugs that have no signature",
                values=missing,
                fix="add their gene sets to `signatures` or leave them out of `drugs`",
            )
    if not names:
        raise InputError("signatures", "holds no drugs", fix="pass at least one drug signature")
    strings = [d for d in names if isinstance(signatures[d], str | bytes)]
    if strings:
        raise InputError(
            "signatures",
            "has gene sets given as a single string (read as characters)",
            values=strings,
            fix="give each drug a list or set of gene names",
        )

    gene_index: dict[object, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, d in enumerate(names):
        for g in set(signatures[d]):
            rows.append(i)
            cols.append(gene_index.setdefault(g, len(gene_index)))
    n = len(names)
    A = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(n, max(len(gene_index), 1))
    )
    inter = np.asarray((A @ A.T).todense(), dtype=np.float64)
    sizes = np.asarray(A.sum(axis=1), dtype=np.float64).ravel()
    union = sizes[:, None] + sizes[None, :] - inter
    S = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    np.fill_diagonal(S, 1.0)
    index = pd.Index(names, name="drug")
    return pd.DataFrame(S, index=index, columns=pd.Index(names))


def _check_similarity(S: pd.DataFrame, field: str) -> pd.DataFrame:
    """Validate a square symmetric finite drug x drug frame; columns aligned to the index."""
    if not isinstance(S, pd.DataFrame):
        raise InputError(
            field,
            "is not a pandas DataFrame",
            values=[type(S).__name__],
            fix="pass a drug x drug DataFrame, e.g. from jaccard_similarity",
        )
    if S.shape[0] != S.shape[1]:
        raise InputError(
            field,
            "is not square",
            values=[S.shape],
            fix="pass a drug x drug matrix with the same drugs as rows and columns",
        )
    for axis, labels in (("index", S.index), ("columns", S.columns)):
        dup = _duplicates(list(labels))
        if dup:
            raise InputError(
                f"{field}.{axis}", "has duplicate drug names", values=dup, fix="name each drug once"
            )
    if set(S.index) != set(S.columns):
        only_rows = [d for d in S.index if d not in set(S.columns)]
        only_cols = [d for d in S.columns if d not in set(S.index)]
        raise InputError(
            field,
            "rows and columns name different drugs",
            values=only_rows + only_cols,
            fix="use the same drug names for rows and columns",
        )
    S = S.loc[:, list(S.index)]
    try:
        X = S.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(field, "holds non-numeric values", fix="pass numbers only") from err
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.nonzero(bad)
        raise InputError(
            field,
            "holds non-finite values",
            values=[(S.index[i], S.columns[j], X[i, j]) for i, j in _cells(r, c)],
            fix="replace NaN / inf similarities before embedding",
        )
    diff = np.abs(X - X.T)
    tol = _SYMMETRY_RTOL * max(1.0, float(np.abs(X).max(initial=0.0)))
    if (diff > tol).any():
        r, c = np.nonzero(np.triu(diff > tol))
        raise InputError(
            field,
            "is not symmetric",
            values=[(S.index[i], S.index[j], X[i, j], X[j, i]) for i, j in _cells(r, c)],
            fix="symmetrise it, e.g. (S + S.T) / 2",
        )
    return pd.DataFrame((X + X.T) / 2.0, index=S.index, columns=S.index)


def _capped_components(n_components: int, n_drugs: int, field: str) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
        raise InputError(
            "n_components", "is not an integer", values=[n_components], fix="pass an int >= 1"
        )
    if n_components < 1:
        raise InputError("n_components", "must be at least 1", values=[n_components])
    if n_drugs < 2:
        raise InputError(
            field,
            "has fewer than 2 drugs; a zero-diagonal similarity has no positive spectrum",
            values=[f"{n_drugs} drug(s)"],
            fix="embed at least 2 drugs",
        )
    cap = n_drugs - 1
    if n_components > cap:
        log.warning(
            "n_components=%d exceeds n_drugs - 1 = %d; using %d components",
            n_components,
            cap,
            cap,
        )
        return cap
    return int(n_components)


def _orient(Q: np.ndarray, names: Sequence[object]) -> np.ndarray:
    """Sign convention: each eigenvector's largest-|entry| is positive.

    Ties (entries within 1e-9 relative of the largest magnitude) are broken by the drug name
    that sorts first as a string, so permuting the drugs permutes the rows and nothing else.
    """
    Q = Q.copy()
    keys = np.array([str(d) for d in names], dtype=object)
    for j in range(Q.shape[1]):
        a = np.abs(Q[:, j])
        near = np.flatnonzero(a >= a.max() * (1.0 - 1e-9))
        pick = near[np.argmin(keys[near])] if len(near) > 1 else near[0]
        if Q[pick, j] < 0:
            Q[:, j] = -Q[:, j]
    return Q


def spectral_embedding(
    S: pd.DataFrame,
    *,
    n_components: int = DEFAULT_N_COMPONENTS,
    zero_diagonal: bool = True,
    prefix: str = "e",
) -> pd.DataFrame:
    """Spectral drug embedding ``E = Q_L Λ_L^{1/2}`` of one similarity matrix — BiRD §2.

    Algorithm 1 lines 9, 12 and 13: zero the diagonal, take the eigendecomposition of the
    symmetric matrix ``S0 = Q Λ Q^T`` and keep the ``L`` largest (algebraic) eigenvalues.

    Parameters
    ----------
    S
        Square symmetric drug x drug similarity, e.g. from :func:`jaccard_similarity`
        (Eq. 1). Columns are aligned to the index order; the index order gives the rows.
    n_components
        ``L``, the number of leading eigenpairs kept (default :data:`DEFAULT_N_COMPONENTS`
        = 32). Capped at ``n_drugs - 1`` (a warning is logged when the cap applies).
    zero_diagonal
        Set ``S_uu = 0`` first (Algorithm 1 line 9; default). With ``False`` the matrix is
        decomposed as given; for Eq. 1's unit diagonal that is ``S0 + I``: the same
        eigenvectors, every eigenvalue larger by 1 (see the module docstring).
    prefix
        Column names are ``f"{prefix}{i}"`` for ``i = 1 .. L`` (component 1 has the
        largest eigenvalue).

    Returns
    -------
    pandas.DataFrame
        ``n_drugs x L``, indexed by drug name (index name ``"drug"``), float64.

    Notes
    -----
    Eigensolver: dense ``scipy.linalg.eigh`` restricted to the top ``L`` eigenpairs (exact;
    fine for the few thousand drugs of a perturbation screen).

    Non-positive eigenvalues. A zero-diagonal similarity has trace 0, so some eigenvalues are
    negative, and with large ``L`` some may be among the kept ones. ``Λ^{1/2}`` is not real
    there; such a component is *kept as a column of zeros* (``max(λ, 0)^{1/2}``), so every
    cell line contributes exactly ``L`` columns and ``E E^T`` is the best rank-``L``
    positive-semidefinite approximation of ``S0`` (negative eigenvalues clipped to 0). A
    warning naming how many components and which (with their eigenvalues) is logged.
    Round-off negatives, ``|λ| <= n · eps · max|λ|``, count as 0 without a warning.

    Signs. Eigenvectors are defined up to sign; each is oriented so that its entry of largest
    magnitude is positive (ties broken by the drug name sorting first), which makes the result
    reproducible and equivariant under reordering the drugs. Within a repeated eigenvalue the
    basis is not unique (any rotation is valid); ``E E^T`` is unique regardless.

    Raises
    ------
    InputError
        ``S`` non-square, asymmetric, non-finite, with duplicate or mismatched drug names, or
        with fewer than 2 drugs; ``n_components < 1``.

    Examples
    --------
    >>> S = pd.DataFrame([[1, 1, 1], [1, 1, 1], [1, 1, 1]], index=list("abc"), columns=list("abc"))
    >>> # sqrt(2/3): S0 = J - I has λ1 = 2
    >>> spectral_embedding(S, n_components=1)["e1"].round(4).tolist()
    [0.8165, 0.8165, 0.8165]
    """
    S = _check_similarity(S, "S")
    n = S.shape[0]
    L = _capped_components(n_components, n, "S")
    X = S.to_numpy(dtype=np.float64, copy=True)
    if zero_diagonal:
        np.fill_diagonal(X, 0.0)
    # eigh returns ascending eigenvalues; reverse so component 1 has the largest one.
    lam, Q = scipy.linalg.eigh(X, subset_by_index=[n - L, n - 1])
    lam, Q = lam[::-1], Q[:, ::-1]
    Q = _orient(Q, list(S.index))

    scale = float(np.abs(lam).max(initial=0.0))
    roundoff = n * np.finfo(np.float64).eps * max(scale, 1.0)
    negative = np.flatnonzero(lam < -roundoff)
    if negative.size:
        log.warning(
            "%d of %d kept eigenvalues are negative; components %s (eigenvalues %s) are set "
            "to zero (E E^T is the PSD part of the rank-%d approximation)",
            negative.size,
            L,
            [f"{prefix}{i + 1}" for i in negative],
            [float(x) for x in lam[negative]],
            L,
        )
    E = Q * np.sqrt(np.clip(lam, 0.0, None))[None, :]
    columns = [f"{prefix}{i + 1}" for i in range(L)]
    return pd.DataFrame(E, index=pd.Index(list(S.index), name="drug"), columns=columns)


def bird_embedding(
    similarities: Mapping[str, pd.DataFrame],
    *,
    n_components: int = DEFAULT_N_COMPONENTS,
    zero_diagonal: bool = True,
) -> pd.DataFrame:
    """BiRD drug embedding: per-cell-line spectral embeddings, concatenated — Algorithm 1.

    ``E = [E^(c_1) || ... || E^(c_|C_ref|)]`` (§2, Algorithm 1 line 15), each ``E^(c)`` from
    :func:`spectral_embedding`. Row ``k`` of ``E`` is the drug embedding ``g(d_k)``.

    Parameters
    ----------
    similarities
        Reference cell line name -> its drug x drug similarity ``S^(c)`` (Eq. 1). Every line
        must hold the same drugs; rows follow the drug order of the first line.
    n_components
        ``L`` per line (default 32, capped at ``n_drugs - 1``); the result has
        ``len(similarities) * L`` columns.
    zero_diagonal
        Passed to :func:`spectral_embedding` (Algorithm 1 line 9).

    Returns
    -------
    pandas.DataFrame
        ``n_drugs x (n_lines · L)``, indexed by drug name; columns ``f"{line}_{i}"``,
        ``i = 1 .. L``, lines in the mapping's order.

    Raises
    ------
    InputError
        No cell lines; lines with different drugs (the differing drugs are named); column
        names that collide; anything :func:`spectral_embedding` refuses.
    """
    if not similarities:
        raise InputError(
            "similarities", "holds no cell lines", fix="pass at least one line's similarity"
        )
    lines = list(similarities)
    first = lines[0]
    drugs = list(_check_similarity(similarities[first], f"similarities[{first!r}]").index)
    reference = set(drugs)
    for line in lines[1:]:
        S = similarities[line]
        other = set(_check_similarity(S, f"similarities[{line!r}]").index)
        if other != reference:
            missing = sorted(map(str, reference - other))
            extra = sorted(map(str, other - reference))
            raise InputError(
                f"similarities[{line!r}]",
                f"has different drugs from similarities[{first!r}]: "
                f"{len(missing)} missing, {len(extra)} extra",
                values=[f"missing {d}" for d in missing] + [f"extra {d}" for d in extra],
                fix="restrict every cell line to the drugs they share",
            )
    parts = []
    for line in lines:
        S = similarities[line].loc[drugs, drugs]
        parts.append(
            spectral_embedding(
                S, n_components=n_components, zero_diagonal=zero_diagonal, prefix=f"{line}_"
            )
        )
    E = pd.concat(parts, axis=1)
    dup = _duplicates(list(E.columns))
    if dup:
        raise InputError(
            "similarities",
            "cell line names give colliding column names",
            values=dup,
            fix="rename the cell lines so that f'{line}_{i}' is unique",
        )
    return E


def save_embedding(E: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a drug embedding to parquet, atomically (the target is never half-written).

    Parameters
    ----------
    E
        Drug x dimension frame with unique drug names as index and unique string columns.
    path
        The parquet file to write (replaced if it exists).

    Raises
    ------
    InputError
        Duplicate drug names or columns, non-string column names, non-finite values.
    """
    if not isinstance(E, pd.DataFrame):
        raise InputError("E", "is not a pandas DataFrame", values=[type(E).__name__])
    for axis, labels in (("index", E.index), ("columns", E.columns)):
        dup = _duplicates(list(labels))
        if dup:
            raise InputError(f"E.{axis}", "has duplicates", values=dup, fix="make names unique")
    not_str = [c for c in E.columns if not isinstance(c, str)]
    if not_str:
        raise InputError(
            "E.columns", "has non-string names", values=not_str, fix="name columns with strings"
        )
    X = E.to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        r, c = np.nonzero(~np.isfinite(X))
        raise InputError(
            "E",
            "holds non-finite values",
            values=[(E.index[i], E.columns[j]) for i, j in _cells(r, c)],
            fix="embed from a finite similarity matrix",
        )
    with atomic_path(path) as tmp:
        E.to_parquet(tmp, engine="pyarrow", index=True)


def load_embedding(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a drug embedding written by :func:`save_embedding`.

    Parameters
    ----------
    path
        The parquet file.

    Raises
    ------
    InputError
        The file does not exist or is not a readable parquet file, or its drug index has
        duplicates.
    """
    if not os.path.exists(path):
        raise InputError(
            "path", "does not exist", values=[os.fspath(path)], fix="pass a saved embedding file"
        )
    import pyarrow

    try:
        E = pd.read_parquet(path, engine="pyarrow")
    except (pyarrow.ArrowException, OSError) as err:
        raise InputError(
            "path",
            f"is not a readable parquet file ({type(err).__name__}: {err})",
            values=[os.fspath(path)],
            fix="pass an embedding written by cellbridge (save_embedding / `bird embed`)",
        ) from None
    dup = _duplicates(list(E.index))
    if dup:
        raise InputError(
            "path", "holds duplicate drug names", values=dup, fix="re-save a valid embedding"
        )
    return E
