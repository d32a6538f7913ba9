"""POPPY stage 1 end to end on the embedded semi-synthetic pbmc patients (Figures 2–3).

Used by ``cellbridge demo``, by ``benchmarks/bench_poppy_pbmc.py`` (the full
configuration, recorded in ``docs/benchmarks.md``) and by the tests (a small one). The
data is **semi-synthetic** (real PBMCs, simulated patients and cohorts; see
:func:`cellbridge.data.pbmc_patients`) and every output says so.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData

from cellbridge.data import (
    PbmcPatients,
    log1p_cpm,
    pbmc_patients,
    random_tumours,
    stack_profiles,
)
from cellbridge.ontology import assign_programs, nmf_programs
from cellbridge.poppy.config import POPPYConfig
from cellbridge.poppy.evaluate import evaluate_alignment
from cellbridge.poppy.model import POPPY
from cellbridge.poppy.phenotype import PhenotypeConfig
from cellbridge.poppy.similarity import proportion_similarity, sample_similarity

__all__ = [
    "PbmcAlignment",
    "PbmcPhenotype",
    "PbmcSplit",
    "pbmc_alignment",
    "pbmc_phenotype",
    "pbmc_split",
]

log = logging.getLogger(__name__)

PROVENANCE = "semi-synthetic (real PBMCs, simulated patients/cohorts/tumours)"


@dataclass
class PbmcSplit:
    """Patients split for stage 1: train on 2/3 (pseudobulk + in-silico bulk), test on 1/3.

    ``bulk_test`` (held-out pseudobulk) carries ``obsp["emd"]`` (cell-type W1) and
    ``obsp["emd_programs"]`` (W1 with NMF gene-program nodes, POPPY A.1; absent when
    ``programs=False``); ``tumours`` are simulated tumours from the sorted panels with
    uniform ratios (§3.4), with their ``obsp["emd"]`` (``None`` when ``n_tumours=0``);
    ``patients`` is everything :func:`cellbridge.data.pbmc_patients` made (all patients'
    pseudobulk, phenotypes, ...).

    Attributes
    ----------
    cells_train, cells_test
        The single cells of the training and held-out patients.
    bulk_train
        Training pseudobulk and in-silico bulk, stacked (log1p-CPM).
    bulk_test
        Held-out pseudobulk, with the W1 matrices in ``obsp``.
    similarity_train
        :func:`sample_similarity` of the training cells (the ``S`` of stage 1).
    tumours
        Simulated tumours with ``obsp["emd"]``, or ``None``.
    patients
        The full :func:`cellbridge.data.pbmc_patients` output.
    """

    cells_train: AnnData
    cells_test: AnnData
    bulk_train: AnnData
    bulk_test: AnnData
    similarity_train: AnnData
    tumours: AnnData | None = field(repr=False)
    patients: PbmcPatients = field(repr=False)


def pbmc_split(
    *,
    n_patients: int = 60,
    cells_per_patient: int = 150,
    k: int = 10,
    n_tumours: int = 100,
    programs: bool = True,
    seed: int = 0,
) -> PbmcSplit:
    """Build the train/test split of the embedded patients (seeded).

    Parameters
    ----------
    n_patients, cells_per_patient
        Passed to :func:`cellbridge.data.pbmc_patients`.
    k
        Kernel neighbours of the training similarity (Eq. 6).
    n_tumours
        Simulated tumours for the §3.4 check (0: none).
    programs
        Also compute the held-out W1 with NMF gene-program nodes.
    seed
        Seed of the data, the split and the tumours.
    """
    data = pbmc_patients(n_patients=n_patients, cells_per_patient=cells_per_patient, seed=seed)
    samples = np.asarray(data.pseudobulk.obs_names)
    held = set(np.random.default_rng(seed).permutation(samples)[: n_patients // 3])
    train = [s for s in samples if s not in held]
    test = [s for s in samples if s in held]
    in_train = data.cells.obs["sample"].isin(train).to_numpy()
    cells_train, cells_test = data.cells[in_train].copy(), data.cells[~in_train].copy()
    bulk_train = stack_profiles(
        {
            "pseudobulk": data.pseudobulk[train].copy(),
            "in-silico bulk": log1p_cpm(data.insilico_bulk[train].copy()),
        }
    )
    k_test = min(5, len(test) - 1)
    bulk_test = data.pseudobulk[test].copy()
    bulk_test.obsp["emd"] = sample_similarity(cells_test, k=k_test).obsp["emd"]
    if programs:
        members = assign_programs(nmf_programs(data.cells, seed=seed))
        on_test = members.loc[cells_test.obs_names]
        with_programs = sample_similarity(cells_test, programs=on_test, k=k_test)
        bulk_test.obsp["emd_programs"] = with_programs.obsp["emd"]
    tumours = None
    if n_tumours:
        tumours = log1p_cpm(random_tumours(data.sorted_profiles, n=n_tumours, seed=seed))
        props = pd.DataFrame(tumours.obsm["proportions"], index=tumours.obs_names)
        tumours.obsp["emd"] = proportion_similarity(props, k=min(5, n_tumours - 1)).obsp["emd"]
    return PbmcSplit(
        cells_train,
        cells_test,
        bulk_train,
        bulk_test,
        sample_similarity(cells_train, k=k),
        tumours,
        data,
    )


@dataclass
class PbmcAlignment:
    """What :func:`pbmc_alignment` produced.

    Attributes
    ----------
    model
        The trained stage-1 model.
    split
        The data it was trained and scored on (held-out bulk embedded in ``obsm``).
    metrics
        One metrics table: held-out pseudobulk, then ``subset == "tumours"``.
    seconds
        Wall time per step (data, train, evaluate).
    """

    model: POPPY
    split: PbmcSplit
    metrics: pd.DataFrame
    seconds: dict[str, float]


def pbmc_alignment(
    config: POPPYConfig | None = None,
    *,
    n_patients: int = 60,
    cells_per_patient: int = 150,
    k: int = 10,
    n_tumours: int = 100,
    programs: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> PbmcAlignment:
    """Train POPPY on the embedded patients and score it like Figures 2–3.

    Returns the model, the split (held-out bulk with ``obsm["X_poppy"]`` and
    ``obsm["X_baseline"]``) and one metrics table: held-out pseudobulk (cell-type and
    program distances, cohort silhouette, recall@k) and simulated tumours (``subset``
    ``"tumours"``). ``config`` defaults to ``POPPYConfig(cell_key="X_pca",
    assay_key="assay", seed=seed, val_fraction=0.0, max_epochs=20)`` (the patients' cells
    carry the real pbmc68k PCA; no validation split: see the comment in the code); the
    other arguments are those of :func:`pbmc_split`.

    Parameters
    ----------
    config
        Stage-1 options; default above.
    n_patients, cells_per_patient, k, n_tumours, programs, seed
        Passed to :func:`pbmc_split` (``seed`` also seeds the default ``config``).
    progress
        Show training progress.
    """
    if config is None:
        # 40 training patients leave a validation set of 4: its contrastive loss rises from
        # epoch 1 on while the held-out distance correlations keep improving, so early
        # stopping on it keeps a nearly untrained model for most seeds (docs/benchmarks.md).
        # A fixed budget of 20 epochs without validation is what this size supports.
        config = POPPYConfig(
            cell_key="X_pca", assay_key="assay", seed=seed, val_fraction=0.0, max_epochs=20
        )
    t0 = time.perf_counter()
    split = pbmc_split(
        n_patients=n_patients,
        cells_per_patient=cells_per_patient,
        k=k,
        n_tumours=n_tumours,
        programs=programs,
        seed=seed,
    )
    t1 = time.perf_counter()
    model = POPPY(config).fit(
        split.cells_train, split.bulk_train, split.similarity_train, progress=progress
    )
    t2 = time.perf_counter()
    truth = {"cell types": "emd"} | ({"programs": "emd_programs"} if programs else {})
    tables = [evaluate_alignment(model, split.bulk_test, cells=split.cells_test, truth_keys=truth)]
    if split.tumours is not None:
        tumours = evaluate_alignment(model, split.tumours, cohort_key=None)
        tables.append(tumours.assign(subset="tumours"))
    metrics = pd.concat(tables, ignore_index=True)
    metrics["data"] = PROVENANCE
    seconds = {"data": t1 - t0, "train": t2 - t1, "evaluate": time.perf_counter() - t2}
    return PbmcAlignment(model, split, metrics, seconds)


#: ``pbmc_phenotype``'s default: the expression decomposition term on (guide §5; without
#: it the attribution depends on the head's seed), trained longer to let it converge.
PBMC_PHENOTYPE_CONFIG = PhenotypeConfig(reconstruction_weight=100.0, max_epochs=300)


@dataclass
class PbmcPhenotype:
    """What :func:`pbmc_phenotype` produced (all semi-synthetic).

    Attributes
    ----------
    alignment
        The stage-1 run (model, split, metrics).
    model
        The stage-1 model fine-tuned on every patient's pseudobulk (for attribution).
    loco
        Leave-one-cohort-out AUROC of the three methods (:func:`evaluate_phenotype`).
    attribution
        One row per atlas cell: :meth:`POPPY.attribute` plus ``label_enrichment``
        (:func:`cellbridge.metrics.label_enrichment` from the cells' patient labels).
    by_cell_type, by_program
        :func:`aggregate_attribution` of ``responder_score`` per cell type and per NMF
        program.
    enrichment_by_cell_type
        The same for ``label_enrichment``.
    spearman
        Spearman correlation between ``responder_score`` and ``label_enrichment`` over
        cells (the paper reports 0.59 on real data).
    causal_types
        The cell types that cause the phenotype (known by construction).
    seconds
        Wall time per step.
    """

    alignment: PbmcAlignment
    model: POPPY
    loco: pd.DataFrame
    attribution: pd.DataFrame
    by_cell_type: pd.DataFrame
    by_program: pd.DataFrame
    enrichment_by_cell_type: pd.DataFrame
    spearman: float
    causal_types: tuple[str, ...]
    seconds: dict[str, float]


def pbmc_phenotype(
    config: PhenotypeConfig | None = None,
    *,
    alignment: PbmcAlignment | None = None,
    n_patients: int = 60,
    cells_per_patient: int = 150,
    seed: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
) -> PbmcPhenotype:
    """POPPY stage 2 on the embedded patients, scored like Figure 4b–d.

    Stage 1 as :func:`pbmc_alignment` (or the given ``alignment``, whose patients are
    then used and ``n_patients`` / ``cells_per_patient`` ignored); the reference atlas is the
    stage-1 training cells; the labelled bulk is every patient's pseudobulk, whose
    phenotype is caused by the fraction of cytotoxic CD8 T and NK cells
    (:func:`cellbridge.data.pbmc_patients`). Reports leave-one-cohort-out AUROC of the
    three methods, and the attribution of a head fine-tuned on all patients against the
    label-derived enrichment. ``config`` defaults to :data:`PBMC_PHENOTYPE_CONFIG`, with the
    expression decomposition term (not in the paper) that makes the attribution find the
    causal cells; ``PhenotypeConfig()`` runs the paper's loss alone.

    Parameters
    ----------
    config
        Stage-2 options; default :data:`PBMC_PHENOTYPE_CONFIG`.
    alignment
        A finished :func:`pbmc_alignment` run to reuse; ``None`` runs one.
    n_patients, cells_per_patient
        Passed to :func:`pbmc_alignment` when ``alignment`` is ``None``.
    seed
        Seeds the stage-1 run (when one is made) and the NMF gene programs.
    n_boot
        Bootstrap resamples of the leave-one-cohort-out AUROC intervals.
    progress
        Show training progress.
    """
    from scipy.stats import spearmanr

    from cellbridge.data.datasets import CAUSAL_TYPES
    from cellbridge.metrics import label_enrichment
    from cellbridge.poppy.attribution import aggregate_attribution
    from cellbridge.poppy.phenotype_eval import evaluate_phenotype

    config = config or PBMC_PHENOTYPE_CONFIG
    t0 = time.perf_counter()
    if alignment is None:
        alignment = pbmc_alignment(
            n_patients=n_patients,
            cells_per_patient=cells_per_patient,
            seed=seed,
            progress=progress,
        )
    bulk, atlas = alignment.split.patients.pseudobulk.copy(), alignment.split.cells_train
    t1 = time.perf_counter()
    loco = evaluate_phenotype(alignment.model, bulk, atlas, config, n_boot=n_boot)
    loco["data"] = PROVENANCE
    t2 = time.perf_counter()
    model = copy.copy(alignment.model).finetune(bulk, atlas, config, progress=progress)
    table = model.attribute(bulk)
    labels = atlas.obs.groupby("sample", observed=True)[config.label_key].first()
    table["label_enrichment"] = label_enrichment(
        np.asarray(atlas.obsm[alignment.model.config.cell_key or "X_pca"]),
        atlas.obs["sample"].astype(str).to_numpy(),
        {str(k): int(v) for k, v in labels.items()},
    )
    members = assign_programs(nmf_programs(atlas, seed=seed))
    spearman = float(spearmanr(table["responder_score"], table["label_enrichment"]).statistic)
    t3 = time.perf_counter()
    return PbmcPhenotype(
        alignment=alignment,
        model=model,
        loco=loco,
        attribution=table,
        by_cell_type=aggregate_attribution(table, by="cell_type"),
        by_program=aggregate_attribution(table, by=members),
        enrichment_by_cell_type=aggregate_attribution(
            table, by="cell_type", score_key="label_enrichment"
        ),
        spearman=spearman,
        causal_types=tuple(CAUSAL_TYPES),
        seconds={
            "stage 1": t1 - t0,
            "leave-one-cohort-out": t2 - t1,
            "attribution": t3 - t2,
        },
    )
