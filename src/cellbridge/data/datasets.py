"""The embedded data: real PBMCs from scanpy, and semi-synthetic patients made of them.

scanpy ships ``pbmc68k_reduced`` (700 PBMCs x 765 genes, one donor, 10 sorted-population
labels in ``obs["bulk_labels"]``) inside its wheel, so it loads offline. The patients built
here are **semi-synthetic**: the cells are real, the patients, cohorts and compositions
are simulated. Every AnnData returned says so in ``uns["cellbridge"]["provenance"]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from cellbridge.errors import InputError
from cellbridge.ontology import pbmc68k_label_mapping

__all__ = ["pbmc68k", "pbmc_patients"]

SEMI_SYNTHETIC = (
    "semi-synthetic: real PBMCs from scanpy's pbmc68k_reduced; patients, cohorts and "
    "compositions simulated by cellbridge.data.pbmc_patients"
)


def pbmc68k() -> AnnData:
    """scanpy's ``pbmc68k_reduced`` with its 10 ``bulk_labels`` mapped to Cell Ontology ids.

    Returns
    -------
    anndata.AnnData
        700 real cells; ``obs["cell_type"]`` holds CL ids (the hand-reviewed table of
        :func:`cellbridge.ontology.pbmc68k_label_mapping`), ``obs["bulk_labels"]`` the
        original labels. ``X`` is scanpy's z-scored matrix; ``raw`` is log-normalised.
    """
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    mapping = pbmc68k_label_mapping()
    labels = adata.obs["bulk_labels"].astype(str)
    adata.obs["cell_type"] = pd.Categorical(labels.map(mapping))
    adata.uns["cellbridge"] = {"provenance": "real: scanpy pbmc68k_reduced (10x PBMC 68k)"}
    return adata


def pbmc_patients(
    *,
    n_patients: int = 60,
    n_cohorts: int = 3,
    cells_per_patient: int = 150,
    concentration: float = 1.0,
    seed: int = 0,
) -> tuple[AnnData, pd.DataFrame]:
    r"""Semi-synthetic patients made of real PBMCs, with known compositions.

    Generative model (seeded): each cohort :math:`c` has a mean composition
    :math:`m_c \sim \mathrm{Dirichlet}(\mathbf{1})` over the 10 cell types; patient
    :math:`s` of cohort :math:`c` draws :math:`\pi_s \sim \mathrm{Dirichlet}(\alpha\, K\,
    m_c)` with :math:`K` types and :math:`\alpha` = ``concentration``, then
    ``cells_per_patient`` cell types from :math:`\pi_s`, and for each a real cell of that
    type drawn with replacement from ``pbmc68k_reduced``.

    Parameters
    ----------
    n_patients, n_cohorts, cells_per_patient
        Sizes; patients are spread evenly over cohorts.
    concentration
        :math:`\alpha`: larger values keep patients closer to their cohort's mean.
    seed
        Seed of the generator; same seed, same data.

    Returns
    -------
    cells
        Single-cell AnnData: ``obs`` has ``sample``, ``cohort``, ``cell_type`` (CL id),
        ``bulk_labels``; ``obs_names`` are unique (``P000-c0001`` ...).
    truth
        Ground-truth compositions actually drawn (patients x CL ids, rows sum to 1).
    """
    for name, value in (
        ("n_patients", n_patients),
        ("n_cohorts", n_cohorts),
        ("cells_per_patient", cells_per_patient),
    ):
        if value < 1:
            raise InputError(name, f"must be at least 1, got {value}")
    if n_cohorts > n_patients:
        raise InputError("n_cohorts", f"({n_cohorts}) exceeds n_patients ({n_patients})")
    if not concentration > 0:
        raise InputError("concentration", f"must be positive, got {concentration}")
    atlas = pbmc68k()
    rng = np.random.default_rng(seed)
    types = np.array(sorted(atlas.obs["cell_type"].unique()))
    by_type = {t: np.flatnonzero(atlas.obs["cell_type"].to_numpy() == t) for t in types}
    cohort_means = rng.dirichlet(np.ones(len(types)), size=n_cohorts)
    picks: list[np.ndarray] = []
    obs: list[pd.DataFrame] = []
    truth = np.zeros((n_patients, len(types)))
    for s in range(n_patients):
        c = s % n_cohorts
        pi = rng.dirichlet(concentration * len(types) * cohort_means[c] + 1e-3)
        drawn = rng.choice(len(types), size=cells_per_patient, p=pi)
        counts = np.bincount(drawn, minlength=len(types))
        truth[s] = counts / cells_per_patient
        idx = np.concatenate(
            [rng.choice(by_type[types[k]], size=n) for k, n in enumerate(counts) if n]
        )
        picks.append(idx)
        name = f"P{s:03d}"
        obs.append(
            pd.DataFrame(
                {"sample": name, "cohort": f"cohort{c}"},
                index=[f"{name}-c{i:04d}" for i in range(len(idx))],
            )
        )
    rows = np.concatenate(picks)
    cells = AnnData(
        X=atlas.X[rows],
        obs=pd.concat(obs),
        var=atlas.var.copy(),
        obsm={key: atlas.obsm[key][rows] for key in ("X_pca",) if key in atlas.obsm},
    )
    cells.obs["cell_type"] = atlas.obs["cell_type"].to_numpy()[rows]
    cells.obs["bulk_labels"] = atlas.obs["bulk_labels"].astype(str).to_numpy()[rows]
    for key in ("sample", "cohort", "cell_type", "bulk_labels"):
        cells.obs[key] = cells.obs[key].astype("category")
    cells.uns["cellbridge"] = {"provenance": SEMI_SYNTHETIC, "seed": seed}
    truth_df = pd.DataFrame(
        truth, index=[f"P{s:03d}" for s in range(n_patients)], columns=list(types)
    )
    truth_df.index.name = "sample"
    return cells, truth_df
