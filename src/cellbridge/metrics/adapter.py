"""The one AnnData adapter of the metrics: reads keys, calls the array functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from cellbridge._checks import obs_labels
from cellbridge.errors import InputError
from cellbridge.metrics.comparison import improvement
from cellbridge.metrics.correlation import distance_correlation
from cellbridge.metrics.integration import batch_silhouette

__all__ = ["embedding_metrics"]

COLUMNS = ["metric", "subset", "n", "value", "note"]


def embedding_metrics(
    bulk: AnnData,
    *,
    key: str = "X_poppy",
    baseline_key: str | None = None,
    truth_key: str = "emd",
    cohort_key: str = "cohort",
    assay_key: str | None = None,
) -> pd.DataFrame:
    """Distance preservation and cross-cohort integration of a sample embedding (POPPY §3.3–3.4).

    Reads ``bulk.obsm[key]`` (and ``bulk.obsm[baseline_key]``), the ground-truth distances
    ``bulk.obsp[truth_key]`` (e.g. the exact ontology W1 between compositions) and the
    labels ``bulk.obs[cohort_key]`` (and ``bulk.obs[assay_key]``), then computes:

    - ``distance_spearman`` for subsets ``within``, ``across``, ``all`` (cohorts):
      :func:`~cellbridge.metrics.distance_correlation`, ``n`` = number of pairs;
    - ``batch_silhouette`` for subset ``cohort`` (and ``assay`` if ``assay_key``):
      :func:`~cellbridge.metrics.batch_silhouette` with that column as the batch and no
      labels, ``n`` = number of samples.

    Parameters
    ----------
    bulk
        Samples x genes AnnData of bulk-like samples.
    key
        ``obsm`` key of the embedding to score.
    baseline_key
        ``obsm`` key of a baseline embedding, scored the same way; ``None`` = none.
    truth_key
        ``obsp`` key of the ground-truth sample x sample distances.
    cohort_key
        ``obs`` column of the cohort of each sample (at least 2 cohorts).
    assay_key
        ``obs`` column of the assay of each sample; ``None`` = no assay silhouette.

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``metric``, ``subset``, ``n``, ``value`` and ``note`` (why
        a value is NaN, else empty). With ``baseline_key`` also ``baseline``, ``change``
        and ``percent_change`` (see :func:`~cellbridge.metrics.improvement`).

    Raises
    ------
    InputError
        A missing ``obsm``/``obsp``/``obs`` key (the error lists the available ones), or
        any input the array functions refuse.
    """
    truth = _obsp(bulk, truth_key)
    cohorts = obs_labels(bulk, cohort_key, field="cohort_key").to_numpy()
    assays = (
        obs_labels(bulk, assay_key, field="assay_key").to_numpy() if assay_key is not None else None
    )
    table = _score(_obsm(bulk, key, "key"), truth, cohorts, assays)
    if baseline_key is None:
        return table
    base = _score(_obsm(bulk, baseline_key, "baseline_key"), truth, cohorts, assays)
    # improvement refuses a baseline of exactly 0; keep those rows with a NaN change instead.
    comparable = base["value"].to_numpy() != 0
    change = improvement(table[comparable], base[comparable], on=("metric", "subset"))
    out = table.merge(
        base[["metric", "subset", "value"]].rename(columns={"value": "baseline"}),
        on=["metric", "subset"],
        how="left",
    )
    out = out.merge(
        change[["metric", "subset", "change", "percent_change"]],
        on=["metric", "subset"],
        how="left",
    )
    zero = ~comparable
    out.loc[zero, "change"] = out.loc[zero, "value"] - out.loc[zero, "baseline"]
    out.loc[zero & (out["note"] == ""), "note"] = "baseline is 0: no percent change"
    return out


def _score(
    X: np.ndarray, truth: np.ndarray, cohorts: np.ndarray, assays: np.ndarray | None
) -> pd.DataFrame:
    corr = distance_correlation(X, truth, groups=cohorts)
    rows: list[tuple[str, str, int, float, str]] = [
        ("distance_spearman", s, n, v, r)
        for s, n, v, r in zip(
            corr["subset"], corr["n_pairs"], corr["value"], corr["reason"], strict=True
        )
    ]
    n = X.shape[0]
    rows.append(("batch_silhouette", "cohort", n, batch_silhouette(X, cohorts), ""))
    if assays is not None:
        rows.append(("batch_silhouette", "assay", n, batch_silhouette(X, assays), ""))
    return pd.DataFrame(rows, columns=COLUMNS)


def _obsm(adata: AnnData, key: str, field: str) -> np.ndarray:
    if key not in adata.obsm:
        raise InputError(
            field, "not an obsm key", values=[key], fix=f"use one of {sorted(adata.obsm.keys())}"
        )
    X = adata.obsm[key]
    return np.asarray(X.toarray() if sp.issparse(X) else X)


def _obsp(adata: AnnData, key: str) -> np.ndarray:
    if key not in adata.obsp:
        raise InputError(
            "truth_key",
            "not an obsp key",
            values=[key],
            fix=f"use one of {sorted(adata.obsp.keys())}, e.g. the pairwise W1 matrix",
        )
    D = adata.obsp[key]
    return np.asarray(D.toarray() if sp.issparse(D) else D)
