"""A simulated single-cell drug screen with real drugs, and its known truth.

No drug-perturbation expression data can be had offline (``shared/DATA.md``), so the demo
and the tests of the BiRD layer use :func:`perturbation_screen`: the **expression is
simulated**, the **drugs are real** (names, DrugBank ids, SMILES and ATC level-4 classes
from :func:`drug_table`, DrugBank approved drugs as shipped by admet-ai). Drugs of one ATC
class share a gene program, so a method that reads drug similarity off transcriptional
responses (BiRD §2) has a known answer to recover; :class:`PerturbationTruth` holds it.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from cellbridge._checks import require_unique
from cellbridge.errors import InputError

__all__ = ["PerturbationTruth", "drug_table", "perturbation_screen"]

CONTROL = "DMSO"
_CONTROL_SMILES = "CS(C)=O"
_CONTROL_DRUGBANK = "DB01093"
_CONTROL_ATC = "control"
SIMULATED = (
    "SIMULATED expression (cellbridge.data.perturbation_screen); drug identities are real: "
    "names, DrugBank ids, SMILES and ATC level-4 classes of DrugBank approved drugs"
)
# Fixed parts of the generative model, documented in perturbation_screen.
_BASELINE_SD = 1.0
_LINE_SD = 0.3
_LIBRARY_SD = 0.3
_POTENCY = (0.75, 1.25)


def admet_predictions() -> pd.DataFrame:
    """ADMET-AI's raw predictions for the 96 drugs of :func:`drug_table` (stored, real).

    Computed with admet-ai 2.0.1 (Chemprop 2.3.1, RDKit 2026.03.6), ``ADMETModel(
    include_physchem=True, drugbank_path=None)``, by ``scripts/make_admet_table.py``, and
    shipped as ``cellbridge/data/resources/admet_ai_drugs.csv`` because admet-ai pins
    Chemprop and RDKit versions of its own. Serve them to
    :func:`cellbridge.bird.admet_embedding` with :class:`cellbridge.bird.PrecomputedADMET`.

    Returns
    -------
    pandas.DataFrame
        Index the drug names (``"drug"``); column ``smiles``, then one float column per
        ADMET-AI property in ADMET-AI's order.
    """
    path = importlib.resources.files("cellbridge.data") / "resources" / "admet_ai_drugs.csv"
    with path.open("r", encoding="utf-8") as handle:
        table = pd.read_csv(handle, index_col="drug", keep_default_na=False)
    table.attrs["source"] = "admet-ai 2.0.1 (Chemprop 2.3.1, RDKit 2026.03.6)"
    return table


def drug_table() -> pd.DataFrame:
    """The 96 real approved drugs the simulated screen draws from, 8 in each of 12 classes.

    Returns
    -------
    pandas.DataFrame
        Columns ``name``, ``drugbank_id``, ``smiles``, ``atc`` (ATC level-4 code, the
        "mechanism class"), ``atc_level3_name``, ``atc_level4_name``; one row per drug, in
        the order of the shipped file (``cellbridge/data/resources/drugs.csv``, built by
        ``scripts/make_drug_table.py`` from admet-ai's ``drugbank_approved.csv``).
    """
    path = importlib.resources.files("cellbridge.data") / "resources" / "drugs.csv"
    with path.open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


@dataclass(frozen=True)
class PerturbationTruth:
    r"""The parameters :func:`perturbation_screen` drew: what a DE method should recover.

    Attributes
    ----------
    effects
        Drugs x genes, :math:`\Delta_{dg}` (natural log fold change at response strength 1);
        zero outside the genes the drug moves.
    drug_class
        Drug -> ATC level-4 code :math:`k(d)`.
    mechanism
        ATC classes x genes, the class programs :math:`a_{kg}` (zero outside the program).
    potency
        Drug -> :math:`\pi_d`, the scale of the class program in that drug.
    response_strength
        Cell line -> :math:`\rho_l`; the log fold change of drug :math:`d` in line :math:`l`
        is :math:`\rho_l \Delta_{dg}`.
    baseline
        Cell lines x genes, :math:`\eta_{lg}` (log expression before normalisation).
    plate_shift
        Plates x genes, :math:`\tau_{pg}`.
    """

    effects: pd.DataFrame
    drug_class: pd.Series
    mechanism: pd.DataFrame
    potency: pd.Series
    response_strength: pd.Series
    baseline: pd.DataFrame
    plate_shift: pd.DataFrame

    def moved_genes(self, drug: str) -> frozenset[str]:
        """Genes drug ``drug`` moves: its class program together with its own genes."""
        if drug not in self.effects.index:
            raise InputError(
                "drug",
                "not a simulated drug",
                values=[drug],
                fix=f"use one of {list(self.effects.index)[:5]} ...",
            )
        row = self.effects.loc[drug]
        return frozenset(row.index[row.to_numpy() != 0])

    def class_genes(self, atc: str) -> frozenset[str]:
        """Genes of the program shared by every drug of ATC class ``atc``."""
        if atc not in self.mechanism.index:
            raise InputError(
                "atc",
                "not a simulated class",
                values=[atc],
                fix=f"use one of {list(self.mechanism.index)}",
            )
        row = self.mechanism.loc[atc]
        return frozenset(row.index[row.to_numpy() != 0])

    def log_fold_change(self, drug: str, cell_line: str) -> pd.Series:
        r"""True :math:`\rho_l \Delta_{dg}` of ``drug`` vs control in ``cell_line``, per gene."""
        for field, value, index in (
            ("drug", drug, self.effects.index),
            ("cell_line", cell_line, self.response_strength.index),
        ):
            if value not in index:
                raise InputError(field, "not in the simulated screen", values=[value])
        rho = float(self.response_strength[cell_line])
        return pd.Series(
            self.effects.loc[drug].to_numpy() * rho, index=self.effects.columns, name=drug
        )


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError(name, "must be a positive integer", values=[value])


def _pick_drugs(
    table: pd.DataFrame, n_drugs: int, drugs: Sequence[str] | None, rng: np.random.Generator
) -> pd.DataFrame:
    if drugs is not None:
        if isinstance(drugs, str) or len(drugs) == 0:
            raise InputError("drugs", "must be a non-empty list of drug names", values=[drugs])
        require_unique(drugs, "drugs", what="drug names")
        unknown = [d for d in drugs if d not in set(table["name"])]
        if unknown:
            raise InputError(
                "drugs",
                "not in drug_table()",
                values=unknown,
                fix="choose names from cellbridge.data.drug_table()['name']",
            )
        chosen = table[table["name"].isin(drugs)]
    else:
        _check_sizes(n_drugs=n_drugs)
        if n_drugs > len(table):
            raise InputError(
                "n_drugs",
                f"must be between 1 and {len(table)}",
                values=[n_drugs],
                fix="drug_table() holds the drugs that can be simulated",
            )
        # Round-robin over the classes (class order and order within each class seeded),
        # so that the chosen drugs spread as evenly as possible over the classes.
        classes = sorted(table["atc"].unique())
        queues = [list(rng.permutation(np.flatnonzero(table["atc"] == c))) for c in classes]
        order = rng.permutation(len(classes))
        rows: list[int] = []
        while len(rows) < n_drugs:
            for k in order:
                if queues[k] and len(rows) < n_drugs:
                    rows.append(int(queues[k].pop(0)))
        chosen = table.iloc[rows]
    return chosen.sort_values("name").reset_index(drop=True)


def _signed_effects(
    rng: np.random.Generator, n: int, effect_size: tuple[float, float]
) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=n) * rng.uniform(*effect_size, size=n)


def perturbation_screen(
    *,
    n_cell_lines: int = 4,
    n_drugs: int = 48,
    n_plates: int = 2,
    cells_per_condition: int = 60,
    controls_per_plate: int | None = None,
    n_genes: int = 1000,
    n_mechanism_genes: int = 30,
    n_specific_genes: int = 15,
    effect_size: tuple[float, float] = (0.5, 1.5),
    response_strengths: Sequence[float] | None = None,
    plate_sd: float = 0.1,
    dispersion: float = 0.2,
    library_size: float = 2000.0,
    drugs: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[AnnData, PerturbationTruth]:
    r"""Simulate a single-cell drug screen with real drugs and a known response (seeded).

    The expression is SIMULATED; drug names, DrugBank ids, SMILES and ATC classes are real
    (:func:`drug_table`). Every cell line is on every plate, and every plate holds every
    drug and a DMSO control for every cell line, so DE can be computed against same-plate
    controls as in BiRD §2. Generative model, for gene :math:`g`, cell line :math:`l`,
    plate :math:`p`, drug :math:`d` of ATC class :math:`k(d)` and cell :math:`c`:

    .. math::

        \eta_{lg} &= \beta_g + \gamma_{lg}, \quad
            \beta_g \sim \mathcal{N}(0, 1), \ \gamma_{lg} \sim \mathcal{N}(0, 0.3^2)
            && \text{(cell-line baseline)} \\
        \Delta_{dg} &= \pi_d\, a_{k(d)g} + b_{dg}, \quad \pi_d \sim \mathcal{U}(0.75, 1.25)
            && \text{(drug effect)} \\
        \log \mu_{cg} &= \log L_c - \log \textstyle\sum_h e^{\eta_{lh}}
            + \eta_{lg} + \tau_{pg} + \rho_l \Delta_{dg},
            \quad \tau_{pg} \sim \mathcal{N}(0, \sigma_p^2) \\
        L_c &\sim \mathrm{LogNormal}(\log \bar L, 0.3^2), \qquad
        X_{cg} \sim \mathrm{Poisson}(\lambda_{cg}), \
            \lambda_{cg} \sim \mathrm{Gamma}(1/\phi,\ \phi\, \mu_{cg}),

    so :math:`X_{cg}` is negative binomial with mean :math:`\mu_{cg}` and variance
    :math:`\mu_{cg} + \phi \mu_{cg}^2`, and the expected log fold change of drug :math:`d`
    against same-plate DMSO (:math:`\Delta = 0`) in line :math:`l` is exactly
    :math:`\rho_l \Delta_{dg}`. The class program :math:`a_{k\cdot}` is non-zero on
    ``n_mechanism_genes`` genes drawn per class; each drug adds :math:`b_{d\cdot}` on
    ``n_specific_genes`` genes outside its class program. Non-zero effects are
    :math:`\pm\,\mathcal{U}(\text{effect\_size})` with a random sign. :math:`\rho_l` is the
    cell line's response strength; by default line :math:`i` of :math:`n` has
    :math:`\rho = 1 - 0.75\, i / (n - 1)`, so the last line responds weakly.

    Parameters
    ----------
    n_cell_lines, n_plates, n_genes
        Sizes; names are ``line0``..., ``plate0``..., ``g0000``... (zero-padded).
    n_drugs
        Drugs drawn from :func:`drug_table`, spread over the ATC classes as evenly as
        possible (round-robin over the classes; seeded). Ignored when ``drugs`` is given.
    cells_per_condition
        Cells per (cell line, plate, drug).
    controls_per_plate
        DMSO cells per (cell line, plate); default ``cells_per_condition``.
    n_mechanism_genes, n_specific_genes
        Sizes of each class program and of each drug's own part.
    effect_size
        Range of the absolute non-zero effects (natural log scale).
    response_strengths
        :math:`\rho_l` per cell line (non-negative), instead of the default ramp.
    plate_sd
        :math:`\sigma_p`, the plate-to-plate technical shift.
    dispersion
        :math:`\phi \ge 0` of the negative binomial (0: Poisson).
    library_size
        :math:`\bar L`, about the median total count of a control cell.
    drugs
        Names from :func:`drug_table` to simulate, instead of drawing ``n_drugs``.
    seed
        Same seed, same data. The drug choice, the parameters and the cells use separate
        streams spawned from it, so the truth does not depend on the numbers of cells.

    Returns
    -------
    adata
        Cells x genes. ``X`` holds the raw integer counts (CSR, float32; no other layer).
        ``obs``: ``drug`` (``"DMSO"`` for controls), ``cell_line``, ``plate``, ``control``
        (bool), ``atc`` (``"control"`` for DMSO), ``smiles``, ``drugbank_id``;
        ``uns["cellbridge"]`` has ``provenance`` (says SIMULATED), ``seed`` and
        ``parameters``.
    truth
        The drawn parameters (:class:`PerturbationTruth`).
    """
    _check_sizes(
        n_cell_lines=n_cell_lines,
        n_plates=n_plates,
        n_genes=n_genes,
        cells_per_condition=cells_per_condition,
        n_mechanism_genes=n_mechanism_genes,
        n_specific_genes=n_specific_genes,
    )
    if controls_per_plate is None:
        controls_per_plate = cells_per_condition
    _check_sizes(controls_per_plate=controls_per_plate)
    if n_mechanism_genes + n_specific_genes > n_genes:
        raise InputError(
            "n_genes",
            "too few genes for a class program plus a drug's own genes",
            values=[n_genes, n_mechanism_genes, n_specific_genes],
            fix="raise n_genes or lower n_mechanism_genes/n_specific_genes",
        )
    low, high = (float(v) for v in effect_size)
    if not (np.isfinite([low, high]).all() and 0 < low <= high):
        raise InputError(
            "effect_size", "must be (low, high) with 0 < low <= high", values=[effect_size]
        )
    for name, value in (("plate_sd", plate_sd), ("dispersion", dispersion)):
        if not (np.isfinite(value) and value >= 0):
            raise InputError(name, "must be finite and non-negative", values=[value])
    if not (np.isfinite(library_size) and library_size > 0):
        raise InputError("library_size", "must be positive", values=[library_size])
    if response_strengths is None:
        rho = 1.0 - 0.75 * np.arange(n_cell_lines) / max(n_cell_lines - 1, 1)
    else:
        rho = np.asarray(response_strengths, dtype=float)
        if rho.shape != (n_cell_lines,):
            raise InputError(
                "response_strengths",
                f"needs one value per cell line ({n_cell_lines})",
                values=list(np.ravel(rho)),
            )
        if not (np.isfinite(rho).all() and (rho >= 0).all()):
            raise InputError(
                "response_strengths",
                "must be finite and non-negative",
                values=rho[~(np.isfinite(rho) & (rho >= 0))].tolist(),
            )

    pick_ss, param_ss, cell_ss = np.random.SeedSequence(seed).spawn(3)
    chosen = _pick_drugs(drug_table(), n_drugs, drugs, np.random.default_rng(pick_ss))
    drug_names = chosen["name"].tolist()
    classes = sorted(chosen["atc"].unique())
    genes = [f"g{i:0{max(4, len(str(n_genes - 1)))}d}" for i in range(n_genes)]
    lines = [f"line{i:0{len(str(n_cell_lines - 1))}d}" for i in range(n_cell_lines)]
    plates = [f"plate{i:0{len(str(n_plates - 1))}d}" for i in range(n_plates)]

    rng = np.random.default_rng(param_ss)
    beta = rng.normal(0.0, _BASELINE_SD, n_genes)
    eta = beta + rng.normal(0.0, _LINE_SD, (n_cell_lines, n_genes))
    tau = rng.normal(0.0, plate_sd, (n_plates, n_genes))
    mechanism = np.zeros((len(classes), n_genes))
    for k in range(len(classes)):
        program = rng.choice(n_genes, size=n_mechanism_genes, replace=False)
        mechanism[k, program] = _signed_effects(rng, n_mechanism_genes, (low, high))
    class_of = np.searchsorted(classes, chosen["atc"].to_numpy())
    potency = rng.uniform(*_POTENCY, size=len(drug_names))
    effects = potency[:, None] * mechanism[class_of]
    for d, k in enumerate(class_of):
        outside = np.flatnonzero(mechanism[k] == 0)
        own = rng.choice(outside, size=n_specific_genes, replace=False)
        effects[d, own] = _signed_effects(rng, n_specific_genes, (low, high))

    X, codes = _draw_cells(
        eta,
        tau,
        effects,
        rho,
        cells_per_condition,
        controls_per_plate,
        dispersion,
        library_size,
        np.random.default_rng(cell_ss),
    )
    conditions = [CONTROL, *drug_names]
    meta = {
        "atc": [_CONTROL_ATC, *chosen["atc"]],
        "smiles": [_CONTROL_SMILES, *chosen["smiles"]],
        "drugbank_id": [_CONTROL_DRUGBANK, *chosen["drugbank_id"]],
    }
    obs = pd.DataFrame(
        {
            "drug": pd.Categorical.from_codes(codes[:, 2], categories=pd.Index(conditions)),
            "cell_line": pd.Categorical.from_codes(codes[:, 0], categories=pd.Index(lines)),
            "plate": pd.Categorical.from_codes(codes[:, 1], categories=pd.Index(plates)),
            "control": codes[:, 2] == 0,
        },
        index=[f"c{i:07d}" for i in range(len(codes))],
    )
    for key, values in meta.items():
        obs[key] = pd.Categorical(np.asarray(values, dtype=object)[codes[:, 2]])
    adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))
    adata.uns["cellbridge"] = {
        "provenance": SIMULATED,
        "seed": seed,
        "parameters": {
            "n_genes": n_genes,
            "cells_per_condition": cells_per_condition,
            "controls_per_plate": controls_per_plate,
            "n_mechanism_genes": n_mechanism_genes,
            "n_specific_genes": n_specific_genes,
            "effect_size": [low, high],
            "response_strengths": rho.tolist(),
            "plate_sd": float(plate_sd),
            "dispersion": float(dispersion),
            "library_size": float(library_size),
        },
    }
    truth = PerturbationTruth(
        effects=pd.DataFrame(effects, index=pd.Index(drug_names, name="drug"), columns=genes),
        drug_class=pd.Series(
            chosen["atc"].to_numpy(), index=pd.Index(drug_names, name="drug"), name="atc"
        ),
        mechanism=pd.DataFrame(mechanism, index=pd.Index(classes, name="atc"), columns=genes),
        potency=pd.Series(potency, index=pd.Index(drug_names, name="drug"), name="potency"),
        response_strength=pd.Series(
            rho, index=pd.Index(lines, name="cell_line"), name="response_strength"
        ),
        baseline=pd.DataFrame(eta, index=pd.Index(lines, name="cell_line"), columns=genes),
        plate_shift=pd.DataFrame(tau, index=pd.Index(plates, name="plate"), columns=genes),
    )
    return adata, truth


def _draw_cells(
    eta: np.ndarray,
    tau: np.ndarray,
    effects: np.ndarray,
    rho: np.ndarray,
    cells_per_condition: int,
    controls_per_plate: int,
    dispersion: float,
    library_size: float,
    rng: np.random.Generator,
) -> tuple[sp.csr_matrix, npt.NDArray[np.int64]]:
    """Counts block by block (cell line, plate), so memory stays one block of means."""
    n_lines, n_plates = eta.shape[0], tau.shape[0]
    # Condition 0 is DMSO (no effect), then the drugs in order.
    delta = np.vstack([np.zeros(effects.shape[1]), effects])
    sizes = np.r_[controls_per_plate, np.full(len(effects), cells_per_condition)]
    condition = np.repeat(np.arange(len(delta)), sizes)
    blocks: list[sp.csr_matrix] = []
    codes: list[npt.NDArray[np.int64]] = []
    for line in range(n_lines):
        log_norm = np.log(np.exp(eta[line]).sum())
        for plate in range(n_plates):
            log_mean = eta[line] + tau[plate] + rho[line] * delta - log_norm
            library = library_size * np.exp(rng.normal(0.0, _LIBRARY_SD, len(condition)))
            mu = library[:, None] * np.exp(log_mean[condition])
            if dispersion > 0:
                mu = rng.gamma(1.0 / dispersion, dispersion * mu)
            blocks.append(sp.csr_matrix(rng.poisson(mu).astype(np.float32)))
            codes.append(
                np.column_stack(
                    [np.full(len(condition), line), np.full(len(condition), plate), condition]
                )
            )
    return sp.vstack(blocks, format="csr"), np.vstack(codes)
