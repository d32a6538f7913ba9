"""The embedded data: real PBMCs from scanpy, and semi-synthetic patients made of them.

scanpy ships ``pbmc68k_reduced`` (700 PBMCs x 765 genes, one donor, 10 sorted-population
labels in ``obs["bulk_labels"]``) inside its wheel, so it loads offline. The patients built
here are **semi-synthetic**: the cells are real, the patients, cohorts and compositions
are simulated. Every AnnData returned says so in ``uns["cellbridge"]["provenance"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from cellbridge.errors import InputError
from cellbridge.ontology import pbmc68k_label_mapping

__all__ = ["CAUSAL_TYPES", "PbmcPatients", "pbmc68k", "pbmc_patients"]

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


# The phenotype's known cellular cause: cytotoxic CD8 T cells and NK cells.
CAUSAL_TYPES = ("CL:0000794", "CL:0000623")


@dataclass(frozen=True)
class PbmcPatients:
    """The semi-synthetic patients of :func:`pbmc_patients` and everything built from them.

    Attributes
    ----------
    cells
        Single cells: ``X`` simulated integer counts (CSR float32), ``obsm["X_pca"]`` the
        real cells' PCA (a stand-in for a foundation-model embedding), ``obs`` with
        ``sample``, ``cohort``, ``cell_type`` (CL id), ``bulk_labels``, ``phenotype``.
    pseudobulk
        Per-patient sums of the cells' counts (:func:`cellbridge.data.pseudobulk`).
    insilico_bulk
        Per-patient mixtures of the sorted panels with the patient's proportions
        (:func:`cellbridge.data.matched_bulk`), CPM.
    sorted_profiles
        Sorted-population panels: ``n_sorted`` profiles per cell type, each the summed
        counts of ``sorted_cells`` cells of that type (``obs["cell_type"]``).
    compositions
        Ground-truth proportions per patient (patients x CL ids), rows sum to 1.
    phenotype
        Per patient: ``cause`` (cytotoxic T + NK fraction), ``phenotype`` (0/1), ``cohort``.
    """

    cells: AnnData
    pseudobulk: AnnData
    insilico_bulk: AnnData
    sorted_profiles: AnnData
    compositions: pd.DataFrame
    phenotype: pd.DataFrame


def _rates(atlas: AnnData) -> np.ndarray:
    """Per-cell expression rates from the real cells: expm1 of the log-normalised raw."""
    raw = atlas.raw.X
    return np.expm1(raw.toarray() if sp.issparse(raw) else np.asarray(raw, dtype=float))


def _sorted_panels(
    atlas: AnnData,
    rates: np.ndarray,
    types: np.ndarray,
    *,
    n_sorted: int,
    sorted_cells: int,
    rng: np.random.Generator,
) -> AnnData:
    labels = atlas.obs["cell_type"].astype(str).to_numpy()
    rows, obs = [], []
    for t in types:
        members = np.flatnonzero(labels == t)
        for r in range(n_sorted):
            pick = rng.choice(members, size=sorted_cells)
            rows.append(rng.poisson(rates[pick]).sum(axis=0))
            obs.append((f"{t}|sorted{r}", t, r))
    frame = pd.DataFrame(obs, columns=["name", "cell_type", "replicate"]).set_index("name")
    panel = AnnData(X=np.asarray(rows, dtype=float), obs=frame, var=atlas.var[[]].copy())
    panel.obs["assay"] = "sorted population"
    panel.uns["cellbridge"] = {"provenance": SEMI_SYNTHETIC}
    return panel


def pbmc_patients(
    *,
    n_patients: int = 60,
    n_cohorts: int = 3,
    cells_per_patient: int = 150,
    concentration: float = 1.0,
    cohort_shift: float = 0.3,
    phenotype_noise: float = 0.01,
    n_sorted: int = 3,
    sorted_cells: int = 200,
    seed: int = 0,
) -> PbmcPatients:
    r"""Semi-synthetic patients made of real PBMCs, with known compositions and phenotype.

    Generative model (seeded, every step from ``numpy.random.default_rng(seed)``):

    1. **Compositions.** Cohort :math:`c` has a mean composition
       :math:`m_c \sim \mathrm{Dirichlet}(\mathbf 1_K)` over the :math:`K = 10` cell
       types; patient :math:`s` of cohort :math:`c` draws
       :math:`\pi_s \sim \mathrm{Dirichlet}(\alpha K m_c + 10^{-3})`
       (:math:`\alpha` = ``concentration``), then ``cells_per_patient`` cell types from
       :math:`\pi_s`, and for each a real cell of that type (with replacement).
    2. **Counts.** Cell :math:`i` (a copy of real cell :math:`r(i)`) gets counts
       :math:`x_{ig} \sim \mathrm{Poisson}(\ell_i\, \beta_{cg}\, \lambda_{r(i)g})`, where
       :math:`\lambda_r = \mathrm{expm1}` of the real cell's log-normalised profile,
       :math:`\ell_i \sim \mathrm{LogNormal}(0, 0.2)` a library-size factor and
       :math:`\log \beta_{cg} \sim N(0, \sigma^2)` the cohort's technical shift per gene
       (:math:`\sigma` = ``cohort_shift``).
    3. **Phenotype.** The known cellular cause is the fraction :math:`z_s` of cytotoxic
       CD8 T cells (CL:0000794) and NK cells (CL:0000623) among the patient's cells;
       :math:`y_s = 1[z_s + \varepsilon_s > \mathrm{median}(z + \varepsilon)]` with
       :math:`\varepsilon_s \sim N(0, \tau^2)`, :math:`\tau` = ``phenotype_noise``
       (balanced classes).
    4. **Sorted panels.** Per cell type, ``n_sorted`` profiles, each the summed Poisson
       counts of ``sorted_cells`` real cells of that type (no cohort shift: another assay).

    Parameters
    ----------
    n_patients, n_cohorts, cells_per_patient
        Sizes; patients are spread evenly over cohorts.
    concentration
        :math:`\alpha`: larger values keep patients closer to their cohort's mean.
    cohort_shift
        :math:`\sigma` of the per-cohort, per-gene log-scale technical shift.
    phenotype_noise
        :math:`\tau`, noise added to the cause before thresholding.
    n_sorted, sorted_cells
        Sorted panels per cell type, and cells summed into each.
    seed
        Seed; same seed, same data.

    Returns
    -------
    PbmcPatients
        Cells, pseudobulk, matched in-silico bulk, sorted panels, true compositions and
        the phenotype table; every AnnData says ``semi-synthetic`` in
        ``uns["cellbridge"]["provenance"]``.
    """
    from cellbridge.data.bulk import matched_bulk, pseudobulk

    sizes = (
        ("n_patients", n_patients),
        ("n_cohorts", n_cohorts),
        ("cells_per_patient", cells_per_patient),
        ("n_sorted", n_sorted),
        ("sorted_cells", sorted_cells),
    )
    for name, value in sizes:
        if value < 1:
            raise InputError(name, f"must be at least 1, got {value}")
    if n_cohorts > n_patients:
        raise InputError("n_cohorts", f"({n_cohorts}) exceeds n_patients ({n_patients})")
    for name, x in (
        ("concentration", concentration),
        ("cohort_shift", cohort_shift + 1),
        ("phenotype_noise", phenotype_noise + 1),
    ):
        if not x > 0 or not np.isfinite(x):
            raise InputError(
                name,
                "must be positive (shift and noise may be 0)",
                values=[x if name == "concentration" else x - 1],
            )
    atlas = pbmc68k()
    rates = _rates(atlas)
    rng = np.random.default_rng(seed)
    labels = atlas.obs["cell_type"].astype(str).to_numpy()
    types = np.array(sorted(set(labels)))
    by_type = {t: np.flatnonzero(labels == t) for t in types}
    cohort_means = rng.dirichlet(np.ones(len(types)), size=n_cohorts)
    shifts = np.exp(rng.normal(0.0, cohort_shift, size=(n_cohorts, atlas.n_vars)))
    picks: list[np.ndarray] = []
    obs: list[pd.DataFrame] = []
    truth = np.zeros((n_patients, len(types)))
    names = [f"P{s:03d}" for s in range(n_patients)]
    for s, name in enumerate(names):
        c = s % n_cohorts
        pi = rng.dirichlet(concentration * len(types) * cohort_means[c] + 1e-3)
        counts = np.bincount(
            rng.choice(len(types), size=cells_per_patient, p=pi), minlength=len(types)
        )
        truth[s] = counts / cells_per_patient
        idx = np.concatenate(
            [rng.choice(by_type[types[k]], size=m) for k, m in enumerate(counts) if m]
        )
        picks.append(idx)
        obs.append(
            pd.DataFrame(
                {"sample": name, "cohort": f"cohort{c}"},
                index=[f"{name}-c{i:04d}" for i in range(len(idx))],
            )
        )
    rows = np.concatenate(picks)
    cell_obs = pd.concat(obs)
    cohort_code = cell_obs["cohort"].str.removeprefix("cohort").astype(int).to_numpy()
    library = rng.lognormal(0.0, 0.2, size=len(rows))
    X = rng.poisson(rates[rows] * library[:, None] * shifts[cohort_code]).astype(np.float32)
    truth_df = pd.DataFrame(truth, index=pd.Index(names, name="sample"), columns=list(types))
    cause = truth_df[list(CAUSAL_TYPES)].sum(axis=1)
    noisy = cause + rng.normal(0.0, phenotype_noise, size=n_patients)
    pheno = pd.DataFrame(
        {
            "cohort": [f"cohort{s % n_cohorts}" for s in range(n_patients)],
            "cause": cause,
            "phenotype": (noisy > np.median(noisy)).astype(int),
        },
        index=truth_df.index,
    )
    cells = AnnData(
        X=sp.csr_matrix(X),
        obs=cell_obs,
        var=atlas.var[[]].copy(),
        obsm={"X_pca": np.asarray(atlas.obsm["X_pca"][rows])},
    )
    cells.obs["cell_type"] = labels[rows]
    cells.obs["bulk_labels"] = atlas.obs["bulk_labels"].astype(str).to_numpy()[rows]
    cells.obs["phenotype"] = pheno["phenotype"].reindex(cells.obs["sample"]).to_numpy()
    for key in ("sample", "cohort", "cell_type", "bulk_labels"):
        cells.obs[key] = cells.obs[key].astype("category")
    cells.uns["cellbridge"] = {
        "provenance": SEMI_SYNTHETIC,
        "seed": seed,
        "causal_cell_types": list(CAUSAL_TYPES),
    }
    panels = _sorted_panels(
        atlas, rates, types, n_sorted=n_sorted, sorted_cells=sorted_cells, rng=rng
    )
    bulk = matched_bulk(panels, truth_df, seed=seed)
    bulk.obs["cohort"] = pheno["cohort"].reindex(bulk.obs_names).to_numpy()
    bulk.uns["cellbridge"]["provenance"] = SEMI_SYNTHETIC
    pb = pseudobulk(cells, normalize="log1p_cpm")
    return PbmcPatients(
        cells=cells,
        pseudobulk=pb,
        insilico_bulk=bulk,
        sorted_profiles=panels,
        compositions=truth_df,
        phenotype=pheno,
    )
