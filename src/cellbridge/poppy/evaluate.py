"""POPPY stage-1 evaluation against the paper's baselines (Figures 2–3, §3.3–3.4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from cellbridge.data import CellStore
from cellbridge.errors import InputError
from cellbridge.metrics import embedding_metrics, recall_at_k
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
    cohort_key: str = "cohort",
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
        ``obs`` columns for the within/across split and the silhouettes.
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
        table.insert(0, "truth", name if table["metric"].iloc[0] == "distance_spearman" else "")
        table.loc[table["metric"] == "batch_silhouette", "truth"] = ""
        tables.append(table)
    if cells is not None:
        tables.append(_recall(model, bulk, cells, k))
    out = pd.concat(tables, ignore_index=True)
    columns = ["truth", "metric", "subset", "n", "value", "baseline", "change"]
    return out[[*columns, "percent_change", "note"]]


def _recall(
    model: POPPY, bulk: AnnData, cells: AnnData | CellStore, k: Sequence[int]
) -> pd.DataFrame:
    paired = paired_samples(bulk, model.config)
    rows = []
    values = {}
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
        v, b = float(values["value"][cut]), float(values["baseline"][cut])
        rows.append(
            {
                "truth": "",
                "metric": f"recall@{cut}",
                "subset": "bulk->cells",
                "n": len(paired),
                "value": v,
                "baseline": b,
                "change": v - b,
                "percent_change": 100 * (v - b) / b if b else np.nan,
                "note": "" if b else "baseline is 0: no percent change",
            }
        )
    return pd.DataFrame(rows)
