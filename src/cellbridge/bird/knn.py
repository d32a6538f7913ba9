"""k-NN post-perturbation prediction — BiRD §4 (Eq. 4) and §5.1 (Fig. 3A-B).

A drug embedding is judged by how well its geometry alone predicts transcriptional
responses: the profile of a held-out drug is predicted as the mean of the profiles of its
``k`` nearest *training* drugs in the embedding (Eq. 4), and compared with the measured
profile by the mean absolute error (MAE), per (drug, cell line) setting.

- :func:`drug_profiles`: the mean log-normalised expression of the treated cells of every
  (cell line, drug), the inner mean of Eq. 4.
- :func:`knn_predict`: Eq. 4 for one embedding and one cell line.
- :func:`knn_evaluation`: every embedding on every evaluation line; the reference lines
  that built BiRD are refused as evaluation lines (§2, §5).
- :func:`win_rates`, :func:`mae_ecdf`: the summaries of Fig. 3B and Fig. 3A.

The embedding is any DataFrame drugs x dimensions (BiRD, Morgan fingerprints, ADMET-AI,
random, ...); only its Euclidean geometry is used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from cellbridge._checks import obs_labels, require_unique
from cellbridge.bird._controls import control_flags
from cellbridge.errors import InputError

__all__ = [
    "KnnResult",
    "drug_profiles",
    "knn_evaluation",
    "knn_predict",
    "mae_ecdf",
    "nearest_training_drugs",
    "win_rates",
]

log = logging.getLogger(__name__)

_TABLE_COLUMNS = ("embedding", "cell_line", "drug", "mae")


def _names(values: Sequence[str], field: str) -> list[str]:
    """A list of names from a sequence; one bare string and repeats are refused."""
    if isinstance(values, str):
        raise InputError(field, "is a single string", values=[values], fix=f"pass [{values!r}]")
    names = list(values)
    require_unique(names, field, fix="list each name once")
    return names


def drug_profiles(
    adata: AnnData,
    *,
    drug_key: str = "drug",
    cell_line_key: str = "cell_line",
    control_key: str = "control",
    control_drug: str | None = None,
    layer: str | None = None,
) -> dict[str, pd.DataFrame]:
    r"""Mean log-normalised expression of the treated cells of each (cell line, drug).

    For cell line :math:`c` and drug :math:`d` with treated cells :math:`\mathcal X_{c,d}`,

    .. math::

        \boldsymbol\mu_{c,d} = \frac{1}{|\mathcal X_{c,d}|}
            \sum_{\mathbf x \in \mathcal X_{c,d}} \mathbf x,

    the inner mean of BiRD Eq. 4 and the ground truth the prediction is scored against.
    Expression is log-normalised first when ``adata`` holds counts, as
    :func:`cellbridge.encoders.log_normalised` does (:math:`\log(1 + 10^4 x / \sum x)`);
    already log-normalised expression is used as it is. Control cells
    (``obs[control_key]`` true, or ``obs[drug_key] == control_drug``) are left out: they
    are no drug's response.

    Parameters
    ----------
    adata
        Cells x genes with ``obs`` columns ``drug_key``, ``cell_line_key`` and
        ``control_key`` (bool).
    drug_key, cell_line_key, control_key
        The ``obs`` columns.
    control_drug
        Mark the controls by their drug (e.g. ``"DMSO_TF"``) instead of ``control_key``,
        which is then not read.
    layer
        Layer to read instead of ``X``.

    Returns
    -------
    dict of str to pandas.DataFrame
        Cell line -> drugs x genes (float64; index name ``"drug"``, columns the
        ``var_names``), lines and drugs in sorted order. A drug appears in a line's table
        only when the line has treated cells of it.

    Raises
    ------
    InputError
        Missing ``obs`` columns or labels, a non-boolean control column, a
        ``control_drug`` that no cell has, no treated cells, or expression
        :func:`cellbridge.encoders.log_normalised` refuses.
    """
    from cellbridge.encoders import log_normalised

    drugs = obs_labels(adata, drug_key, field="drug_key").astype(str).to_numpy()
    lines = obs_labels(adata, cell_line_key, field="cell_line_key").astype(str).to_numpy()
    treated = ~control_flags(
        adata.obs,
        drug_key=drug_key,
        control_key=control_key,
        control_drug=control_drug,
        where="adata.obs",
    )
    if not treated.any():
        by_flag = control_drug is None
        raise InputError(
            f"adata.obs[{control_key!r}]" if by_flag else "control_drug",
            "marks every cell as a control: no treated cells",
            values=[] if by_flag else [control_drug],
            fix="mark treated cells with False" if by_flag else "name the controls' drug only",
        )
    genes = pd.Index(adata.var_names.astype(str))
    require_unique(genes, "adata.var_names", what="gene names", fix="make the gene names unique")
    out: dict[str, pd.DataFrame] = {}
    for line in sorted(set(lines[treated])):
        rows = np.flatnonzero(treated & (lines == line))
        X = log_normalised(adata[rows], layer=layer)
        codes, names = pd.factorize(drugs[rows], sort=True)
        # Indicator (drugs x cells) scaled by 1/|X_{c,d}|: one product gives every mean.
        counts = np.bincount(codes, minlength=len(names)).astype(np.float64)
        A = sp.csr_matrix(
            (1.0 / counts[codes], (codes, np.arange(len(rows)))), shape=(len(names), len(rows))
        )
        means = A @ (sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X))
        dense = means.toarray() if sp.issparse(means) else np.asarray(means)
        out[line] = pd.DataFrame(
            np.asarray(dense, dtype=np.float64),
            index=pd.Index(list(names), name="drug"),
            columns=genes,
        )
    return out


def _embedding_matrix(embedding: pd.DataFrame, field: str) -> pd.DataFrame:
    if not isinstance(embedding, pd.DataFrame):
        raise InputError(
            field,
            f"must be a DataFrame (drugs x dimensions), got {type(embedding).__name__}",
            fix="index the embedding by drug name",
        )
    require_unique(embedding.index, f"{field}.index", what="drug names")
    if embedding.shape[1] == 0:
        raise InputError(field, "has no dimensions", fix="pass at least one column")
    values = embedding.to_numpy()
    if not np.issubdtype(values.dtype, np.number) or not np.isfinite(values).all():
        raise InputError(
            field,
            "must hold finite numbers only",
            values=_bad_rows(embedding),
            fix="impute or remove the drugs with missing coordinates",
        )
    return embedding


def _bad_rows(frame: pd.DataFrame) -> list[str]:
    """Names of the rows holding a non-numeric or non-finite value."""
    numeric = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numeric).all(axis=1)
    return [str(name) for name in frame.index[bad]]


def _check_split(train: Sequence[str], test: Sequence[str]) -> tuple[list[str], list[str]]:
    train_names = _names(train, "train")
    test_names = _names(test, "test")
    if not train_names:
        raise InputError("train", "is empty", fix="pass at least one training drug")
    if not test_names:
        raise InputError("test", "is empty", fix="pass at least one test drug")
    shared = sorted(set(train_names) & set(test_names), key=str)
    if shared:
        raise InputError(
            "test",
            f"{len(shared)} drugs are also training drugs",
            values=shared,
            fix="split by drug so that train and test are disjoint (split_by_group)",
        )
    return train_names, test_names


def _check_k(k: int, n_train: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError("k", "must be a positive integer", values=[k])
    if k > n_train:
        raise InputError(
            "k",
            f"exceeds the number of training drugs ({n_train})",
            values=[k],
            fix=f"use k <= {n_train}",
        )
    return int(k)


def _neighbour_positions(
    embedding: pd.DataFrame, train: list[str], test: list[str], k: int, field: str
) -> np.ndarray:
    """Positions in ``train`` of the k nearest training drugs of each test drug (test x k)."""
    missing = [d for d in [*train, *test] if d not in embedding.index]
    if missing:
        raise InputError(
            field,
            f"{len(missing)} drugs have no embedding",
            values=missing,
            fix="embed every training and test drug, or leave those drugs out of the split",
        )
    E_train = embedding.loc[train].to_numpy(dtype=np.float64)
    E_test = embedding.loc[test].to_numpy(dtype=np.float64)
    # Ties in distance are broken by drug name: rank of each training drug's name.
    name_rank = np.argsort(np.argsort(np.asarray(train, dtype=str), kind="stable"))
    out = np.empty((len(test), k), dtype=np.intp)
    for i, e in enumerate(E_test):
        # Differences, not the |a|^2 + |b|^2 - 2ab expansion: equal points tie exactly.
        dist = np.sqrt(((E_train - e) ** 2).sum(axis=1))
        out[i] = np.lexsort((name_rank, dist))[:k]
    return out


def nearest_training_drugs(
    embedding: pd.DataFrame, train: Sequence[str], test: Sequence[str], *, k: int = 5
) -> pd.DataFrame:
    r"""The neighbourhood :math:`\mathcal N_k(d)` of each test drug — BiRD §4.

    The ``k`` training drugs closest to the test drug in Euclidean distance
    :math:`\|g(d_{test}) - g(d)\|_2`, nearest first. Distances that are exactly equal are
    ordered by drug name (string order), so the result never depends on the order of
    ``train``.

    Parameters
    ----------
    embedding
        Drugs x dimensions, indexed by drug name; finite numbers.
    train, test
        Training drugs :math:`\mathcal D_{train}` and query drugs :math:`\mathcal D_{test}`;
        disjoint, no repeats, every one in ``embedding``.
    k
        Neighbourhood size, ``1 <= k <= len(train)``.

    Returns
    -------
    pandas.DataFrame
        Test drugs x ``1..k`` (index name ``"drug"``): the names of the neighbours.

    Raises
    ------
    InputError
        Overlapping or empty ``train``/``test``, drugs without an embedding, bad ``k``.
    """
    train_names, test_names = _check_split(train, test)
    k = _check_k(k, len(train_names))
    E = _embedding_matrix(embedding, "embedding")
    pos = _neighbour_positions(E, train_names, test_names, k, "embedding")
    names = np.asarray(train_names, dtype=object)[pos]
    return pd.DataFrame(
        names, index=pd.Index(test_names, name="drug"), columns=list(range(1, k + 1))
    )


def _check_profiles(profiles: pd.DataFrame, field: str) -> pd.DataFrame:
    if not isinstance(profiles, pd.DataFrame):
        raise InputError(
            field,
            f"must be a DataFrame (drugs x genes), got {type(profiles).__name__}",
            fix="pass a table of drug_profiles",
        )
    require_unique(profiles.index, f"{field}.index", what="drug names")
    require_unique(profiles.columns, f"{field}.columns", what="genes")
    values = profiles.to_numpy()
    if not np.issubdtype(values.dtype, np.number) or not np.isfinite(values).all():
        raise InputError(
            field,
            "must hold finite numbers only",
            values=_bad_rows(profiles),
            fix="compute the profiles with drug_profiles",
        )
    return profiles


def _require_drugs(profiles: pd.DataFrame, drugs: list[str], field: str, role: str) -> None:
    missing = [d for d in drugs if d not in profiles.index]
    if missing:
        raise InputError(
            field,
            f"{len(missing)} {role} drugs have no profile",
            values=missing,
            fix=f"restrict the {role} drugs to those measured in this cell line",
        )


def knn_predict(
    embedding: pd.DataFrame,
    profiles: pd.DataFrame,
    train: Sequence[str],
    test: Sequence[str],
    *,
    k: int = 5,
) -> pd.DataFrame:
    r"""Predict the profile of each test drug from its k nearest training drugs — BiRD Eq. 4.

    .. math::

        \hat{\boldsymbol\mu}_{d_{test}} = \frac{1}{|\mathcal N_k(d_{test})|}
            \sum_{d_j \in \mathcal N_k(d_{test})} \boldsymbol\mu_{d_j},

    with :math:`\mathcal N_k(d_{test})` the ``k`` training drugs nearest in Euclidean
    distance in ``embedding`` (:func:`nearest_training_drugs`; exact distance ties are
    broken by drug name) and :math:`\boldsymbol\mu_{d_j}` the row of ``profiles``
    (:func:`drug_profiles`, one cell line).

    Parameters
    ----------
    embedding
        Drugs x dimensions, indexed by drug name (any embedding: BiRD, fingerprints, ...).
    profiles
        Drugs x genes of one cell line; must hold every training drug (test drugs need
        not be in it: they are predicted, not read).
    train, test
        Disjoint drug names, no repeats, every one in ``embedding``.
    k
        Number of neighbours, ``1 <= k <= len(train)`` (default 5).

    Returns
    -------
    pandas.DataFrame
        Test drugs x genes (index name ``"drug"``, the columns of ``profiles``), float64.

    Raises
    ------
    InputError
        Drugs missing from ``embedding``; training drugs missing from ``profiles``;
        overlapping or empty ``train``/``test``; bad ``k``; non-finite values.

    Examples
    --------
    >>> E = pd.DataFrame({"x": [0.0, 1.0, 10.0, 0.4]}, index=["a", "b", "c", "q"])
    >>> P = pd.DataFrame({"g": [1.0, 3.0, 100.0]}, index=["a", "b", "c"])
    >>> knn_predict(E, P, ["a", "b", "c"], ["q"], k=2)["g"].tolist()
    [2.0]
    """
    train_names, test_names = _check_split(train, test)
    k = _check_k(k, len(train_names))
    E = _embedding_matrix(embedding, "embedding")
    P = _check_profiles(profiles, "profiles")
    _require_drugs(P, train_names, "profiles", "training")
    pos = _neighbour_positions(E, train_names, test_names, k, "embedding")
    return _predict(P.loc[train_names].to_numpy(dtype=np.float64), pos, test_names, P.columns)


def _predict(
    train_profiles: np.ndarray, pos: np.ndarray, test: list[str], genes: pd.Index
) -> pd.DataFrame:
    prediction = train_profiles[pos].mean(axis=1)
    return pd.DataFrame(prediction, index=pd.Index(test, name="drug"), columns=genes)


@dataclass
class KnnResult:
    """Errors of k-NN prediction (Eq. 4) for several embeddings — BiRD §5.1.

    Attributes
    ----------
    table
        One row per (embedding, evaluation cell line, test drug): columns ``embedding``,
        ``cell_line``, ``drug``, ``mae`` (mean over genes of the absolute error between the
        predicted and the measured profile). Input to :func:`win_rates` and
        :func:`mae_ecdf`.
    per_gene
        Embeddings x genes: the absolute error of each gene, averaged over every
        (cell line, test drug) setting (the per-gene MAE of §5.1, input to
        :func:`cellbridge.bird.top_improved_genes`).
    neighbours
        Embedding name -> :func:`nearest_training_drugs` (test drugs x k).
    params
        ``k``, the train/test drugs, evaluation and reference lines.
    data
        Provenance of the expression (``adata.uns["cellbridge"]["provenance"]`` when
        recorded), shown in figure titles; ``None`` when unknown.
    """

    table: pd.DataFrame
    per_gene: pd.DataFrame
    neighbours: dict[str, pd.DataFrame]
    params: dict[str, object] = field(default_factory=dict)
    data: str | None = None


def knn_evaluation(
    embeddings: Mapping[str, pd.DataFrame],
    adata_or_profiles: AnnData | Mapping[str, pd.DataFrame],
    *,
    train_drugs: Sequence[str],
    test_drugs: Sequence[str],
    evaluation_lines: Sequence[str],
    reference_lines: Sequence[str],
    k: int = 5,
    drug_key: str = "drug",
    cell_line_key: str = "cell_line",
    control_key: str = "control",
    control_drug: str | None = None,
    layer: str | None = None,
) -> KnnResult:
    r"""k-NN prediction error of every embedding on every evaluation line — BiRD §5.1.

    For embedding :math:`g`, evaluation line :math:`c` and test drug :math:`d`, the
    profile :math:`\hat{\boldsymbol\mu}_{c,d}` is predicted by :func:`knn_predict`
    (Eq. 4, neighbours in :math:`g`, profiles of line :math:`c`) and scored by

    .. math::

        \mathrm{MAE}_{g,c,d} = \frac{1}{G} \sum_{j=1}^{G}
            |\hat\mu_{c,d,j} - \mu_{c,d,j}|.

    The per-gene error of gene :math:`j` is
    :math:`\frac{1}{|C||D_{test}|}\sum_{c,d} |\hat\mu_{c,d,j} - \mu_{c,d,j}|`.

    The reference lines that built the BiRD embedding are refused as evaluation lines
    (§2, §5: they are "strictly excluded"), and train and test drugs must be disjoint.

    Parameters
    ----------
    embeddings
        Name -> drugs x dimensions. Every embedding must hold every train and test drug,
        so that all are scored on the same settings.
    adata_or_profiles
        Cells (profiles computed by :func:`drug_profiles` with the keys and ``layer``
        below) or the output of :func:`drug_profiles`: cell line -> drugs x genes.
    train_drugs, test_drugs
        :math:`\mathcal D_{train}`, :math:`\mathcal D_{test}`; disjoint.
    evaluation_lines
        Cell lines scored; each must hold a profile of every train and test drug.
    reference_lines
        Lines the drug embedding was built from; none may be an evaluation line.
    k
        Neighbourhood size (default 5).
    drug_key, cell_line_key, control_key, control_drug, layer
        Passed to :func:`drug_profiles` when ``adata_or_profiles`` is an AnnData.

    Returns
    -------
    KnnResult

    Raises
    ------
    InputError
        A reference line among the evaluation lines; overlapping train/test drugs; an
        embedding or a line lacking drugs; lines with different genes; bad ``k``.
    """
    lines = _names(evaluation_lines, "evaluation_lines")
    refs = _names(reference_lines, "reference_lines")
    leaked = [line for line in lines if line in set(refs)]
    if leaked:
        raise InputError(
            "evaluation_lines",
            "include reference lines that built the drug embedding (BiRD §2 excludes them)",
            values=leaked,
            fix="evaluate only on cell lines outside reference_lines",
        )
    if not lines:
        raise InputError("evaluation_lines", "is empty", fix="name at least one cell line")
    train, test = _check_split(train_drugs, test_drugs)
    k = _check_k(k, len(train))
    if not isinstance(embeddings, Mapping) or not embeddings:
        raise InputError(
            "embeddings", "must be a non-empty mapping name -> DataFrame", fix="pass {name: E}"
        )
    data: str | None = None
    if isinstance(adata_or_profiles, AnnData):
        provenance = adata_or_profiles.uns.get("cellbridge", {}).get("provenance")
        data = str(provenance) if provenance else None
        profiles = drug_profiles(
            adata_or_profiles,
            drug_key=drug_key,
            cell_line_key=cell_line_key,
            control_key=control_key,
            control_drug=control_drug,
            layer=layer,
        )
    elif isinstance(adata_or_profiles, Mapping):
        profiles = dict(adata_or_profiles)
    else:
        raise InputError(
            "adata_or_profiles",
            f"must be an AnnData or a mapping line -> DataFrame, got "
            f"{type(adata_or_profiles).__name__}",
        )
    absent = [line for line in lines if line not in profiles]
    if absent:
        raise InputError(
            "evaluation_lines",
            "have no profiles (no treated cells of that line)",
            values=absent,
            fix=f"use lines among {sorted(profiles)}",
        )
    genes: pd.Index | None = None
    frames: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for line in lines:
        P = _check_profiles(profiles[line], f"profiles[{line!r}]")
        _require_drugs(P, train, f"profiles[{line!r}]", "training")
        _require_drugs(P, test, f"profiles[{line!r}]", "test")
        if genes is None:
            genes = pd.Index(P.columns)
        elif not genes.equals(pd.Index(P.columns)):
            raise InputError(
                f"profiles[{line!r}]",
                f"has other genes than profiles[{lines[0]!r}]",
                fix="restrict every line to the same genes, in the same order",
            )
        frames[line] = (P.loc[train].to_numpy(np.float64), P.loc[test].to_numpy(np.float64))
    assert genes is not None  # lines is non-empty
    rows: list[pd.DataFrame] = []
    per_gene: dict[str, np.ndarray] = {}
    neighbours: dict[str, pd.DataFrame] = {}
    for name, embedding in embeddings.items():
        field_name = f"embeddings[{name!r}]"
        E = _embedding_matrix(embedding, field_name)
        pos = _neighbour_positions(E, train, test, k, field_name)
        neighbours[str(name)] = pd.DataFrame(
            np.asarray(train, dtype=object)[pos],
            index=pd.Index(test, name="drug"),
            columns=list(range(1, k + 1)),
        )
        total = np.zeros(len(genes))
        for line in lines:
            train_p, test_p = frames[line]
            error = np.abs(train_p[pos].mean(axis=1) - test_p)
            total += error.sum(axis=0)
            rows.append(
                pd.DataFrame(
                    {
                        "embedding": str(name),
                        "cell_line": line,
                        "drug": test,
                        "mae": error.mean(axis=1),
                    }
                )
            )
        per_gene[str(name)] = total / (len(lines) * len(test))
    table = pd.concat(rows, ignore_index=True)
    per_gene_frame = pd.DataFrame.from_dict(per_gene, orient="index", columns=genes)
    per_gene_frame.index.name = "embedding"
    log.info(
        "knn_evaluation: %d embeddings x %d lines x %d test drugs (k=%d)",
        len(embeddings),
        len(lines),
        len(test),
        k,
    )
    params: dict[str, object] = {
        "k": k,
        "train_drugs": train,
        "test_drugs": test,
        "evaluation_lines": lines,
        "reference_lines": refs,
    }
    if data:
        table.attrs["data"] = data
    return KnnResult(table, per_gene_frame, neighbours, params, data)


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise InputError("table", f"must be a DataFrame, got {type(table).__name__}")
    missing = [c for c in _TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            "table", "lacks columns", values=missing, fix="pass KnnResult.table (knn_evaluation)"
        )
    if table.empty:
        raise InputError("table", "is empty", fix="evaluate at least one setting")
    mae = pd.to_numeric(table["mae"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(mae).all():
        raise InputError(
            "table['mae']",
            f"{int((~np.isfinite(mae)).sum())} missing or non-finite values",
            fix="score every setting",
        )
    dup = table.duplicated(["embedding", "cell_line", "drug"])
    if dup.any():
        raise InputError(
            "table",
            "repeats (embedding, cell_line, drug) settings",
            values=table.loc[dup, ["embedding", "cell_line", "drug"]]
            .astype(str)
            .agg("/".join, axis=1)
            .tolist(),
            fix="keep one row per setting",
        )
    return table


def win_rates(table: pd.DataFrame) -> pd.DataFrame:
    r"""Pairwise win rates of the embeddings over (drug, cell line) settings — BiRD Fig. 3B.

    Entry (row :math:`a`, column :math:`b`) is the fraction of settings :math:`s` in which
    :math:`a` has the strictly lower MAE, an exact tie counting one half:

    .. math::

        W_{ab} = \frac{1}{|S|} \sum_{s \in S}
            \Big(\mathbb 1[\mathrm{MAE}_{a,s} < \mathrm{MAE}_{b,s}]
            + \tfrac12\, \mathbb 1[\mathrm{MAE}_{a,s} = \mathrm{MAE}_{b,s}]\Big),

    so :math:`W_{ab} + W_{ba} = 1` for :math:`a \ne b`. The diagonal (a method against
    itself) is not a comparison and is NaN.

    Parameters
    ----------
    table
        Columns ``embedding``, ``cell_line``, ``drug``, ``mae`` (:attr:`KnnResult.table`).
        Every embedding must be scored on the same settings.

    Returns
    -------
    pandas.DataFrame
        Embeddings x embeddings (order of first appearance), values in ``[0, 1]``.

    Raises
    ------
    InputError
        Missing columns, repeated or non-finite rows, embeddings scored on different
        settings.
    """
    table = _check_table(table)
    wide = table.pivot(index=["cell_line", "drug"], columns="embedding", values="mae")
    names = list(pd.unique(table["embedding"]))
    wide = wide[names]
    gaps = wide.isna().any(axis=1)
    if gaps.any():
        raise InputError(
            "table",
            f"{int(gaps.sum())} settings are not scored for every embedding",
            values=["/".join(map(str, s)) for s in wide.index[gaps]],
            fix="score every embedding on the same (cell line, drug) settings",
        )
    M = wide.to_numpy(dtype=np.float64)
    lower = (M[:, :, None] < M[:, None, :]).mean(axis=0)
    equal = (M[:, :, None] == M[:, None, :]).mean(axis=0)
    W = lower + 0.5 * equal
    np.fill_diagonal(W, np.nan)
    index = pd.Index(names, name="embedding")
    return pd.DataFrame(W, index=index, columns=index.rename("opponent"))


def mae_ecdf(table: pd.DataFrame, *, by: str | None = None) -> pd.DataFrame:
    r"""Empirical CDF of the MAE of each embedding over its settings — BiRD Fig. 3A.

    For embedding :math:`g` with MAEs :math:`m_1, \dots, m_n` (one per (drug, cell line)
    setting), :math:`F_g(x) = \#\{i : m_i \le x\} / n`, evaluated at each distinct
    :math:`m_i`.

    Parameters
    ----------
    table
        Columns ``embedding``, ``cell_line``, ``drug``, ``mae``.
    by
        An extra column (e.g. ``"cell_line"``) to compute one ECDF per value of, within
        each embedding; default one ECDF per embedding over all settings.

    Returns
    -------
    pandas.DataFrame
        Tidy: ``embedding`` (and ``by``), ``mae`` (the distinct values, ascending), ``ecdf``
        (non-decreasing, ending at 1), ``n`` (settings behind the curve).
    """
    table = _check_table(table)
    keys = ["embedding"]
    if by is not None:
        if by not in table.columns:
            raise InputError("by", "not a column of table", values=[by])
        keys.append(by)
    parts = []
    for key, group in table.groupby(keys, sort=False, observed=True):
        values = np.sort(group["mae"].to_numpy(dtype=np.float64))
        distinct, counts = np.unique(values, return_counts=True)
        ecdf = np.cumsum(counts) / len(values)
        labels: dict[str, object] = dict(zip(keys, key, strict=True))
        parts.append(pd.DataFrame({**labels, "mae": distinct, "ecdf": ecdf, "n": len(values)}))
    return pd.concat(parts, ignore_index=True)
