"""Zero-shot drug retrieval (BiRD Task 2, Eq. 5), cross-cell-line transfer and separability.

For a query cell :math:`x` treated with a held-out drug, each candidate drug :math:`d` is
scored by :math:`s(d \\mid x) = -\\lVert f_\\theta(x) - g(d) \\rVert_2` (Eq. 5), over the
candidate set of *all* drugs of the embedding. Retrieval is scored as a one-vs-all
identification problem, micro-averaged over drugs: every (cell, drug) pair is one
prediction, positive when the drug is the cell's, and the AUROC is taken over all pairs
(scikit-learn's ``roc_auc_score(..., average="micro")`` on the one-hot matrix).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score, roc_curve

from cellbridge.bird.align import AlignConfig, Aligner, drug_split, fit_per_line, treated_cells
from cellbridge.errors import InputError
from cellbridge.metrics.separability import SCORES, separability

__all__ = [
    "RetrievalResult",
    "compare_drug_spaces",
    "evaluate_retrieval",
    "retrieval_auroc",
    "retrieval_roc",
    "retrieval_scores",
]

log = logging.getLogger(__name__)

#: False-positive rates at which per-line ROC curves are averaged.
FPR_GRID = np.linspace(0.0, 1.0, 201)


def retrieval_scores(Z: np.ndarray, space: pd.DataFrame) -> pd.DataFrame:
    """``(cells, drugs)`` scores :math:`-\\lVert f_\\theta(x) - g(d) \\rVert_2` (Eq. 5).

    Parameters
    ----------
    Z
        ``(cells, dims)`` aligned query cells :math:`f_\\theta(x)`, finite.
    space
        The candidate drugs x dimensions, :math:`g(d)`; its index names the columns.
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] != space.shape[1]:
        raise InputError(
            "Z",
            "must be (cells, dims) in the drug space's dimensions",
            values=[Z.shape, space.shape],
        )
    bad = ~np.isfinite(Z).all(axis=1)
    if bad.any():
        raise InputError(
            "Z",
            f"{int(bad.sum())} cells with NaN or infinite coordinates, at rows",
            values=np.flatnonzero(bad).tolist(),
            fix="fix the cell embedding upstream; retrieval does not drop cells",
        )
    return pd.DataFrame(-cdist(Z, space.to_numpy(dtype=np.float64)), columns=space.index)


def _one_hot(drugs: np.ndarray, space: pd.DataFrame) -> np.ndarray:
    drugs = np.asarray(drugs).astype(str)
    unknown = sorted(set(drugs) - set(space.index.astype(str)))
    if unknown:
        raise InputError("drugs", "are not candidates of the drug space", values=unknown[:10])
    return (drugs[:, None] == space.index.astype(str).to_numpy()[None, :]).astype(np.int8)


def retrieval_auroc(Z: np.ndarray, drugs: np.ndarray, space: pd.DataFrame) -> float:
    """Micro-averaged one-vs-all AUROC of Eq. 5's scores (BiRD Task 2).

    Parameters
    ----------
    Z
        ``(cells, dims)`` aligned query cells :math:`f_\\theta(x)`.
    drugs
        ``(cells,)`` each cell's true drug (a candidate of ``space``).
    space
        The candidate drugs x dimensions, :math:`g(d)` (as the aligner uses it).
    """
    truth, scores = _truth_and_scores(Z, drugs, space)
    return float(roc_auc_score(truth, scores, average="micro"))


def retrieval_roc(
    Z: np.ndarray, drugs: np.ndarray, space: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """The micro-averaged ROC curve (false- and true-positive rates) of Eq. 5's scores.

    Parameters
    ----------
    Z
        ``(cells, dims)`` aligned query cells :math:`f_\\theta(x)`.
    drugs
        ``(cells,)`` each cell's true drug (a candidate of ``space``).
    space
        The candidate drugs x dimensions, :math:`g(d)`.
    """
    truth, scores = _truth_and_scores(Z, drugs, space)
    fpr, tpr, _ = roc_curve(truth.ravel(), scores.ravel())
    return fpr, tpr


def _truth_and_scores(
    Z: np.ndarray, drugs: np.ndarray, space: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """One-hot truth and Eq. 5 scores, both ``(cells, drugs)``."""
    return _one_hot(drugs, space), retrieval_scores(Z, space).to_numpy()


@dataclass
class RetrievalResult:
    """What :func:`evaluate_retrieval` measured.

    Attributes
    ----------
    auroc
        Trained line (rows) x tested line (columns): micro AUROC of the row's model on
        the test-drug cells of the column's line (Figure 5); the diagonal is Figure 4.
    roc
        ``fpr`` grid and the true-positive rate of each line's own model (columns named by
        line) and their mean (``mean``), ROC curves averaged over lines.
    separability
        One row per line (and ``frozen: line`` rows for the frozen encoder): scIB scores
        of the test cells' embeddings with their drugs as labels (Table 1).
    data
        Provenance of the cells (e.g. ``"SIMULATED ..."``) when they say it.
    """

    auroc: pd.DataFrame
    roc: pd.DataFrame
    separability: pd.DataFrame
    data: str | None = None


def evaluate_retrieval(
    models: dict[str, Aligner], cells: AnnData, *, frozen: bool = True
) -> RetrievalResult:
    """Zero-shot retrieval, cross-line AUROC and separability of per-line aligners.

    Parameters
    ----------
    models
        Cell line -> its aligner (:func:`fit_per_line`); all share one drug split.
    cells
        Cells of those lines (and others to test on), frozen embedding in ``obsm``.
    frozen
        Also score the frozen encoder's embedding of the test cells (separability only:
        without a map into the drug space, Eq. 5 is not defined for it).
    """
    if not models:
        raise InputError("models", "is empty", fix="pass {line: Aligner}")
    first = next(iter(models.values()))
    config = first.config
    splits = [m.split for m in models.values() if m.split is not None]
    if len(splits) != len(models) or any(not s.equals(splits[0]) for s in splits):
        raise InputError("models", "must share one drug split", fix="use fit_per_line")
    split = splits[0]
    test_drugs = set(split.index[split == "test"])
    column = cells.obs[config.cell_line_key].astype(str).to_numpy()
    lines = list(models)
    queries: dict[str, AnnData] = {}
    for line in lines:
        part = cells[column == line]
        data = treated_cells(part, config)
        keep = part.obs_names.isin(data.obs_names[np.isin(data.drug, list(test_drugs))])
        if not keep.any():
            raise InputError("cells", f"line {line!r} has no cells of the test drugs")
        queries[line] = part[keep]
    auroc = pd.DataFrame(index=pd.Index(lines, name="trained on"), columns=lines, dtype=float)
    auroc.columns.name = "tested on"
    curves: dict[str, np.ndarray] = {}
    rows = []
    for trained, model in models.items():
        assert model.drug_space is not None
        for tested, query in queries.items():
            drugs = query.obs[config.drug_key].astype(str).to_numpy()
            Z = model.transform(query)
            truth, scores = _truth_and_scores(Z, drugs, model.drug_space)
            auroc.loc[trained, tested] = roc_auc_score(truth, scores, average="micro")
            if trained == tested:  # the same scores, once
                fpr, tpr, _ = roc_curve(truth.ravel(), scores.ravel())
                curves[trained] = np.interp(FPR_GRID, fpr, tpr)
                rows.append(_separability(Z, drugs, config.seed).rename(trained))
                if frozen:
                    X = np.asarray(query.obsm[config.cell_key], dtype=np.float64)
                    rows.append(_separability(X, drugs, config.seed).rename(f"frozen: {trained}"))
    roc = pd.DataFrame({"fpr": FPR_GRID, **curves})
    roc["mean"] = roc[lines].mean(axis=1)
    return RetrievalResult(auroc, roc, pd.DataFrame(rows), data=_provenance(cells))


def _separability(X: np.ndarray, drugs: np.ndarray, seed: int) -> pd.Series:
    """scIB scores of the test cells, NaN (with a warning) under 2 test drugs."""
    if np.unique(drugs).size < 2:
        log.warning("separability needs 2 or more test drugs; got 1: scores left NaN")
        return pd.Series(np.nan, index=list(SCORES), name="score")
    return separability(X, drugs, seed=seed)


def _provenance(cells: AnnData) -> str | None:
    meta = cells.uns.get("cellbridge")
    value = meta.get("provenance") if isinstance(meta, dict) else None
    return str(value) if value is not None else None


def compare_drug_spaces(
    cells: AnnData,
    spaces: dict[str, pd.DataFrame],
    config: AlignConfig | None = None,
    *,
    lines: list[str] | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, RetrievalResult]]:
    """Align the same cells to several drug embeddings (BiRD, Morgan, ADMET-AI, random)
    with one shared drug split, and score each (Figures 4–5, Table 1).

    Parameters
    ----------
    cells
        Cells of every line with the frozen embedding (as for :func:`fit_per_line`).
    spaces
        Name -> drugs x dimensions; each must cover the cells' drugs.
    config
        Options of every aligner; default ``AlignConfig()``. Its seed and fractions make
        the shared split.
    lines
        The cell lines to train and test on (default: all).
    progress
        Progress bars.

    Returns
    -------
    summary
        One row per embedding (plus ``frozen encoder``): mean diagonal AUROC over lines,
        mean off-diagonal (cross-line) AUROC, and the scIB scores averaged over lines.
    results
        Embedding -> :class:`RetrievalResult`.
    """
    config = config or AlignConfig()
    drugs = sorted(set(treated_cells(cells, config).drug))
    common = [d for d in drugs if all(d in set(s.index.astype(str)) for s in spaces.values())]
    missing = sorted(set(drugs) - set(common))
    if missing:
        raise InputError(
            "spaces", "every embedding must cover the cells' drugs; missing", values=missing[:10]
        )
    split = drug_split(common, config)
    results: dict[str, RetrievalResult] = {}
    rows: list[pd.Series] = []
    frozen_row: pd.Series | None = None
    for name, space in spaces.items():
        models = fit_per_line(cells, space, config, lines=lines, split=split, progress=progress)
        results[name] = evaluate_retrieval(models, cells, frozen=not results)
        A = results[name].auroc.to_numpy(dtype=float)
        off = A[~np.eye(A.shape[0], dtype=bool)]
        scores = results[name].separability
        frozen = np.asarray(scores.index.astype(str).str.startswith("frozen"), dtype=bool)
        head = pd.Series(
            {"auroc": float(np.diag(A).mean()), "cross_line_auroc": float(off.mean())}
            if off.size
            else {"auroc": float(np.diag(A).mean()), "cross_line_auroc": np.nan}
        )
        rows.append(pd.concat([head, scores[~frozen].mean()]).rename(name))
        if frozen.any():
            blank = pd.Series({"auroc": np.nan, "cross_line_auroc": np.nan})
            frozen_row = pd.concat([blank, scores[frozen].mean()]).rename("frozen encoder")
    if frozen_row is not None:
        rows.append(frozen_row)
    summary = pd.DataFrame(rows)
    summary.index.name = "embedding"
    data = next(iter(results.values())).data
    if data:
        summary.attrs["data"] = data
    return summary, results
