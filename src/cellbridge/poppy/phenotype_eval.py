"""Leave-one-cohort-out evaluation of stage 2 against the paper's baselines (Figure 4b)."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cellbridge._checks import obs_labels
from cellbridge.errors import InputError
from cellbridge.metrics import auroc_with_ci
from cellbridge.poppy.model import POPPY
from cellbridge.poppy.phenotype import PhenotypeConfig, binary_labels

__all__ = ["METHODS", "evaluate_phenotype"]

log = logging.getLogger(__name__)

#: The three methods of Figure 4b, in the order they are reported.
METHODS = ("POPPY", "POPPY w/o stage 1", "bulk encoder + head (no atlas)")


def evaluate_phenotype(
    model: POPPY,
    bulk: AnnData,
    atlas: AnnData,
    config: PhenotypeConfig | None = None,
    *,
    cohort_key: str = "cohort",
    n_boot: int = 1000,
    level: float = 0.95,
    progress: bool = False,
) -> pd.DataFrame:
    """Leave-one-cohort-out AUROC of POPPY stage 2 and two baselines (POPPY Figure 4b).

    For every cohort: fine-tune on all other cohorts' labelled profiles, predict the held-out
    cohort, report the AUROC with a percentile bootstrap interval
    (:func:`cellbridge.metrics.auroc_with_ci`). Methods, in the same run:

    - ``"POPPY"``: :meth:`POPPY.finetune` from the stage-1 model;
    - ``"POPPY w/o stage 1"``: the same fine-tuning from the untrained stage-1 model
      (:meth:`POPPY.unaligned`: same frozen parts and standardisation, no alignment);
    - ``"bulk encoder + head (no atlas)"``: the frozen bulk encoder without alignment
      (:meth:`POPPY.baseline_bulk`, mean-pooled gene tokens) with a classification head —
      scikit-learn's ``LogisticRegression`` on standardised features (the paper's
      "BulkFormer with a classification head").

    Parameters
    ----------
    model
        A fitted stage-1 model (left unchanged).
    bulk
        Profiles with ``obs[config.label_key]`` (0/1) and ``obs[cohort_key]``; at least two
        cohorts, and each held-out cohort must hold both classes.
    atlas
        The reference cells (see :meth:`POPPY.finetune`).
    config
        Stage-2 options, shared by both cross-attention methods.
    cohort_key
        ``obs`` column of the cohorts.
    n_boot, level
        Bootstrap resamples and interval level.
    progress
        Show progress bars while fine-tuning.

    Returns
    -------
    pandas.DataFrame
        One row per (cohort, method): ``cohort``, ``method``, ``auroc``, ``low``, ``high``,
        ``level``, ``n``, ``n_positive``, ``n_boot``, ``n_boot_used``.
    """
    config = config or PhenotypeConfig()
    y = binary_labels(bulk, config.label_key)
    cohorts = obs_labels(bulk, cohort_key, field="cohort_key").astype(str).to_numpy()
    names = sorted(set(cohorts))
    if len(names) < 2:
        raise InputError(
            "cohort_key",
            "leave-one-cohort-out needs at least two cohorts; found",
            values=names,
            fix="pass profiles from several cohorts",
        )
    for name in names:
        held = cohorts == name
        if np.unique(y[held]).size < 2 or np.unique(y[~held]).size < 2:
            raise InputError(
                f"bulk.obs[{config.label_key!r}]",
                "a held-out cohort, or the cohorts left to train on, has a single class",
                values=[name],
                fix="leave out cohorts with one class, or evaluate otherwise",
            )
    baseline_features = model.baseline_bulk(bulk)
    start = model.unaligned()
    rows = []
    for name in names:
        held = cohorts == name
        train, test = bulk[~held].copy(), bulk[held].copy()
        scores = {}
        for method, base in ((METHODS[0], model), (METHODS[1], start)):
            tuned = copy.copy(base)
            tuned.phenotype = None
            tuned.finetune(train, atlas, config, progress=progress)
            scores[method] = tuned.predict_phenotype(test, key_added=None)
        head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        head.fit(baseline_features[~held], y[~held])
        scores[METHODS[2]] = head.predict_proba(baseline_features[held])[:, 1]
        for method in METHODS:
            ci = auroc_with_ci(y[held], scores[method], n_boot=n_boot, level=level, seed=0)
            rows.append({"cohort": name, "method": method, **asdict(ci)})
            log.info("%s, %s: AUROC %.3f", name, method, ci.auroc)
    return pd.DataFrame(rows)
