"""POPPY stage-1 evaluation against the paper's baselines (Figures 2–3, §3.3–3.4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from cellbridge.data import CellStore
from cellbridge.errors import InputError
from cellbridge.metrics import (
    distance_correlation,
    embedding_metrics,
    improvement,
    recall_at_k,
)
from cellbridge.poppy.inputs import paired_samples
from cellbridge.poppy.model import POPPY

__all__ = ["evaluate_alignment"]

BASELINE_KEY = "X_baseline"


def evaluate_alignment(
    model: POPPY,
    bulk: AnnData,
    *,
    cells: AnnData | CellStore | None = None,
    truth_keys: Mapping[str, str] | None = None,
    cohort_key: str | None = "cohort",
    assay_key: str | None = None,
    k: Sequence[int] = (1, 5, 10),
    key: str = "X_poppy",
) -> pd.DataFrame:
    """Score POPPY bulk embeddings against the frozen encoder without alignment.

    Metrics (each with the baseline, the change and the percent change):

    - ``distance_spearman`` (within / across / all cohorts): Spearman correlation between
      embedding distances and each ground-truth composition distance in ``truth_keys``
      (cell types, gene programs), POPPY Figure 3;
    - ``batch_silhouette`` of cohorts (and assays): scIB's batch silhouette (1 = well
      mixed), Figure 2b–c;
    - ``recall@k`` of matched single-cell / bulk pairs (when ``cells`` is given): for each
      profile, whether its own sample's cell-set embedding is among the ``k`` nearest
      (cosine) cell-set embeddings of the evaluated profiles' samples, Figure 2a.

    Baselines, as in the paper: for distances and silhouettes, the same frozen bulk encoder
    without alignment (mean-pooled gene tokens, or the precomputed bulk embedding —
    :meth:`POPPY.baseline_bulk`); for recall, which needs both modalities in one space,
    the untrained model (:meth:`POPPY.unaligned`).

    Parameters
    ----------
    model
        A fitted :class:`POPPY`.
    bulk
        Held-out profiles with ``obsp`` ground-truth distances, ``obs[cohort_key]`` and, for
        recall, ``obs[sample_key]`` (or names) pairing them with ``cells``' samples.
        Receives ``obsm[key]`` and ``obsm["X_baseline"]``.
    cells
        Single cells of the same samples, for recall@k; ``None`` = skip recall.
    truth_keys
        Name -> ``obsp`` key of each ground-truth distance; default ``{"cell types": "emd"}``.
    cohort_key, assay_key
        ``obs`` columns for the within/across split and the silhouettes. ``cohort_key=None``
        (e.g. simulated tumours, POPPY §3.4): correlations over all pairs only.
    k
        Cut-offs of recall@k.
    key
        ``obsm`` key for the POPPY embedding.

    Returns
    -------
    pandas.DataFrame
        Columns ``truth``, ``metric``, ``subset``, ``n``, ``value``, ``baseline``,
        ``change``, ``percent_change``, ``note``.
    """
    truth_keys = {"cell types": "emd"} if truth_keys is None else dict(truth_keys)
    if not truth_keys:
        raise InputError("truth_keys", "is empty", fix="name at least one obsp distance")
    bulk.obsm[key] = model.embed_bulk(bulk, key_added=key)
    bulk.obsm[BASELINE_KEY] = model.baseline_bulk(bulk)
    tables: list[pd.DataFrame] = []
    if cohort_key is None:
        tables = [_correlations(bulk, key, name, obsp_key) for name, obsp_key in truth_keys.items()]
    else:
        for name, obsp_key in truth_keys.items():
            table = embedding_metrics(
                bulk,
                key=key,
                baseline_key=BASELINE_KEY,
                truth_key=obsp_key,
                cohort_key=cohort_key,
                assay_key=assay_key,
            )
            if tables:  # silhouettes do not depend on the truth: report them once
                table = table[table["metric"] != "batch_silhouette"]
            spearman = table["metric"] == "distance_spearman"
            table.insert(0, "truth", np.where(spearman, name, ""))
            tables.append(table)
    if cells is not None:
        tables.append(_recall(model, bulk, cells, k))
    out = pd.concat(tables, ignore_index=True)
    columns = ["truth", "metric", "subset", "n", "value", "baseline", "change"]
    return out[[*columns, "percent_change", "note"]]


def _correlations(bulk: AnnData, key: str, name: str, obsp_key: str) -> pd.DataFrame:
    """``distance_spearman`` over all pairs, POPPY vs the baseline, for one truth."""
    if obsp_key not in bulk.obsp:
        raise InputError(
            "truth_keys", "not an obsp key", values=[obsp_key], fix=f"use one of {list(bulk.obsp)}"
        )
    truth = bulk.obsp[obsp_key]
    truth = np.asarray(truth.toarray() if hasattr(truth, "toarray") else truth)
    value, base = (distance_correlation(bulk.obsm[k], truth).iloc[0] for k in (key, BASELINE_KEY))
    row = {
        "truth": name,
        "metric": "distance_spearman",
        "subset": "all",
        "n": value.at["n_pairs"],
        "value": value.at["value"],
        "baseline": base.at["value"],
        "note": value.at["reason"],
    }
    return _with_change(pd.DataFrame([row]))


def _with_change(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``change`` and ``percent_change`` (:func:`~cellbridge.metrics.improvement`)."""
    on = ("metric", "subset")
    base = table[[*on, "baseline"]].rename(columns={"baseline": "value"})
    comparable = (base["value"] != 0).to_numpy()
    change = improvement(table.loc[comparable, [*on, "value"]], base[comparable], on=on)
    out = table.merge(change[[*on, "change", "percent_change"]], on=list(on), how="left")
    zero = ~comparable
    out.loc[zero, "change"] = out.loc[zero, "value"] - out.loc[zero, "baseline"]
    out.loc[zero & (out["note"] == ""), "note"] = "baseline is 0: no percent change"
    return out


def _recall(
    model: POPPY, bulk: AnnData, cells: AnnData | CellStore, k: Sequence[int]
) -> pd.DataFrame:
    paired = paired_samples(bulk, model.config)
    rows = []
    values: dict[str, pd.Series] = {}
    for label, m in (("value", model), ("baseline", model.unaligned())):
        sets = m.embed_cells(cells, attention_key=None)
        missing = sorted(set(paired) - set(sets.obs_names))
        if missing:
            raise InputError(
                "cells",
                "has no cells for samples paired with bulk profiles",
                values=missing,
                fix="pass the cells of the same samples as the bulk profiles",
            )
        z_cells = sets.obsm["X_poppy"]
        z_bulk = m.embed_bulk(bulk, key_added="_recall")
        del bulk.obsm["_recall"]
        # Query: a bulk profile; reference row i: the cell set of profile i's sample.
        order = pd.Index(sets.obs_names).get_indexer(paired.to_numpy())
        values[label] = recall_at_k(z_bulk, z_cells[order], k=list(k), metric="cosine")
    for cut in values["value"].index:
        rows.append(
            {
                "truth": "",
                "metric": f"recall@{cut}",
                "subset": "bulk->cells",
                "n": len(paired),
                "value": float(values["value"][cut]),
                "baseline": float(values["baseline"][cut]),
                "note": "",
            }
        )
    return _with_change(pd.DataFrame(rows))
