"""Baseline drug embeddings that BiRD is compared against — BiRD §1 and §5.1.

The paper benchmarks BiRD against three representations of a drug that do not look at any
transcriptional response (Fig. 3, §5.1): Morgan fingerprints of the chemical structure
(:func:`morgan_embedding`), property predictions of the small-molecule model ADMET-AI
(:func:`admet_embedding`), and a random embedding (:func:`random_embedding`). Each returns a
drugs x features ``pandas.DataFrame`` whose index (named ``"drug"``) holds the drug names, the
same layout as :func:`cellbridge.bird.bird_embedding`, so any of them can stand in for BiRD.

Structures come in as SMILES, one per drug, in a ``pandas.Series`` indexed by drug name (for
the bundled drugs: ``drug_table().set_index("name")["smiles"]``). Every SMILES is parsed with
RDKit before anything is computed; a drug that cannot be read is refused, never skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator

from cellbridge.errors import CellbridgeError, InputError

__all__ = [
    "ADMET_INSTALL_HINT",
    "DEFAULT_MORGAN_BITS",
    "DEFAULT_MORGAN_RADIUS",
    "DEFAULT_RANDOM_DIM",
    "PrecomputedADMET",
    "admet_embedding",
    "morgan_embedding",
    "random_embedding",
]

DEFAULT_MORGAN_RADIUS = 2
"""Default Morgan radius: 2 bonds, the usual ECFP4-like setting (the paper does not fix it)."""

DEFAULT_MORGAN_BITS = 2048
"""Default fingerprint length in bits (the paper does not fix it)."""

DEFAULT_RANDOM_DIM = 32
"""Default dimension of :func:`random_embedding` (the paper does not fix it)."""

ADMET_INSTALL_HINT = "pip install 'cellbridge[admet]'"
"""How to install the optional ADMET-AI dependency."""


# --- shared input checks ------------------------------------------------------------------


def _check_int(value: object, field: str, *, minimum: int) -> int:
    """An ``int`` (not ``bool``) that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(
            field, "is not an integer", values=[value], fix=f"pass an integer >= {minimum}"
        )
    if value < minimum:
        raise InputError(field, f"is below {minimum}", values=[value], fix=f"pass >= {minimum}")
    return int(value)


def _check_names(names: Sequence[object], field: str) -> list[str]:
    """Drug names: a non-empty sequence of distinct non-empty strings."""
    if isinstance(names, str | bytes):
        raise InputError(
            field, "is a single string", values=[names], fix="pass a list of drug names"
        )
    names = list(names)
    if not names:
        raise InputError(field, "holds no drugs", fix="pass at least one drug")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise InputError(
            field,
            "has drug names that are missing, empty or not strings",
            values=bad,
            fix="name every drug with a non-empty string",
        )
    index = pd.Index(names)
    if not index.is_unique:
        raise InputError(
            field,
            "has duplicate drug names",
            values=index[index.duplicated()].unique().tolist(),
            fix="list each drug once",
        )
    return [str(n) for n in names]


def _is_missing(value: object) -> bool:
    """None, NaN, ``pd.NA`` or the empty string."""
    if value is None or value is pd.NA or (isinstance(value, str) and not value):
        return True
    return isinstance(value, float | np.floating) and bool(np.isnan(value))


def _parse_smiles(smiles: pd.Series) -> tuple[list[str], list[str], list[Chem.Mol]]:
    """Validate a drug-name -> SMILES Series and parse every SMILES with RDKit.

    Returns the drug names, the SMILES strings and the molecules, in the Series' order.
    Each kind of problem is raised once, as one :class:`InputError` listing every drug that
    has it: missing or empty SMILES, SMILES that are not strings, SMILES holding whitespace
    (RDKit would read the text after it as the molecule's name and drop it), SMILES RDKit
    cannot parse, and SMILES that parse to a molecule without atoms.
    """
    if not isinstance(smiles, pd.Series):
        raise InputError(
            "smiles",
            "is not a pandas Series",
            values=[type(smiles).__name__],
            fix='pass a Series of SMILES indexed by drug name, e.g. pd.Series({"aspirin": '
            '"CC(=O)Oc1ccccc1C(=O)O"}) or drug_table().set_index("name")["smiles"]',
        )
    names = _check_names(list(smiles.index), "smiles.index")
    values = smiles.tolist()

    missing = [(d, s) for d, s in zip(names, values, strict=True) if _is_missing(s)]
    if missing:
        raise InputError(
            "smiles",
            "has drugs without a SMILES (missing or empty)",
            values=missing,
            fix="give every drug a SMILES or leave those drugs out",
        )
    not_str = [(d, s) for d, s in zip(names, values, strict=True) if not isinstance(s, str)]
    if not_str:
        raise InputError(
            "smiles",
            "has SMILES that are not strings",
            values=not_str,
            fix="pass each SMILES as a str",
        )
    spaced = [(d, s) for d, s in zip(names, values, strict=True) if any(c.isspace() for c in s)]
    if spaced:
        raise InputError(
            "smiles",
            "has SMILES containing whitespace (RDKit would drop the text after it)",
            values=spaced,
            fix="strip the whitespace; a SMILES string holds none",
        )

    mols: list[Chem.Mol] = []
    failed: list[tuple[str, str]] = []
    # RDKit logs every parse failure to stderr; the failures are reported below instead.
    # Logging comes back when the BlockLogs object is released.
    block = rdBase.BlockLogs()
    try:
        for d, s in zip(names, values, strict=True):
            mol = Chem.MolFromSmiles(s)
            if mol is None:
                failed.append((d, s))
            else:
                mols.append(mol)
    finally:
        del block
    if failed:
        raise InputError(
            "smiles",
            "has SMILES that RDKit cannot parse",
            values=failed,
            fix="correct these SMILES (check them with rdkit.Chem.MolFromSmiles) "
            "or leave those drugs out",
        )
    empty = [(d, s) for d, s, m in zip(names, values, mols, strict=True) if m.GetNumAtoms() == 0]
    if empty:
        raise InputError(
            "smiles",
            "has SMILES that describe no atoms",
            values=empty,
            fix="give a SMILES with at least one atom",
        )
    return names, [str(s) for s in values], mols


# --- Morgan fingerprints ------------------------------------------------------------------


def morgan_embedding(
    smiles: pd.Series,
    *,
    radius: int = DEFAULT_MORGAN_RADIUS,
    n_bits: int = DEFAULT_MORGAN_BITS,
) -> pd.DataFrame:
    """Morgan (circular, ECFP-like) fingerprints as a drug embedding — the paper's Morgan-FP.

    Each drug is the bit vector of RDKit's Morgan fingerprint generator
    (``rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)``, with
    RDKit's defaults otherwise: no chirality, atom invariants of ECFP, bond types included):
    bit ``j`` is 1 when some atom environment of up to ``radius`` bonds hashes to ``j``.

    Parameters
    ----------
    smiles
        SMILES strings indexed by drug name (unique, non-empty strings). Every SMILES must be
        a non-empty string without whitespace that RDKit parses to at least one atom.
    radius
        Largest environment radius in bonds, ``>= 0``. Radius 2 resembles ECFP4.
    n_bits
        Fingerprint length, ``>= 1``.

    Returns
    -------
    pandas.DataFrame
        Drugs x bits, float64 holding 0.0 and 1.0; index the drug names in the order of
        ``smiles`` (named ``"drug"``), columns ``"morgan_0"`` ... ``f"morgan_{n_bits - 1}"``.
        Drugs with the same structure get the same row.

    Raises
    ------
    InputError
        ``smiles`` not a Series; duplicate, missing or non-string drug names; missing, empty,
        non-string or whitespace-holding SMILES; SMILES RDKit cannot parse (all of them listed
        together with their drug names); ``radius`` or ``n_bits`` out of range.

    Examples
    --------
    >>> fp = morgan_embedding(pd.Series({"ethanol": "CCO", "methanol": "CO"}), n_bits=64)
    >>> fp.shape, fp.index.name, fp.columns[0]
    ((2, 64), 'drug', 'morgan_0')
    """
    radius = _check_int(radius, "radius", minimum=0)
    n_bits = _check_int(n_bits, "n_bits", minimum=1)
    names, _, mols = _parse_smiles(smiles)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    bits = np.zeros((len(mols), n_bits), dtype=np.float64)
    for i, mol in enumerate(mols):
        bits[i] = generator.GetFingerprintAsNumPy(mol)
    return pd.DataFrame(
        bits,
        index=pd.Index(names, name="drug"),
        columns=pd.Index([f"morgan_{j}" for j in range(n_bits)]),
    )


# --- ADMET-AI -----------------------------------------------------------------------------


def _admet_model_class() -> Any:
    """``admet_ai.ADMETModel``, or an InputError with the install hint when unavailable."""
    try:
        from admet_ai import ADMETModel
    except ImportError as err:
        raise InputError(
            "admet_ai",
            "the optional package admet-ai (ADMET-AI) cannot be imported",
            values=[str(err)],
            fix=ADMET_INSTALL_HINT,
        ) from err
    return ADMETModel


class PrecomputedADMET:
    """Stored ADMET-AI predictions behind ``ADMETModel.predict``'s interface.

    Pass as ``model=`` to :func:`admet_embedding`, e.g. with
    :func:`cellbridge.data.admet_predictions` (ADMET-AI's predictions for the drugs of the
    simulated screen), or with predictions a user made in an environment with admet-ai.

    Parameters
    ----------
    table
        One row per molecule: a ``smiles`` column and one numeric column per property.
    """

    def __init__(self, table: pd.DataFrame) -> None:
        if "smiles" not in table.columns:
            raise InputError(
                "table",
                "needs a 'smiles' column next to the property columns",
                values=list(table.columns)[:10],
            )
        by_smiles = table.drop_duplicates("smiles").set_index("smiles")
        self.table = by_smiles.drop(columns=[c for c in ("drug", "name") if c in by_smiles])

    def predict(self, smiles: list[str]) -> pd.DataFrame:
        """The stored rows of ``smiles``, indexed by SMILES, as ``ADMETModel.predict``."""
        missing = [s for s in smiles if s not in self.table.index]
        if missing:
            raise InputError(
                "smiles",
                "have no stored ADMET-AI predictions",
                values=missing,
                fix="predict them with admet-ai (pip install 'cellbridge[admet]')",
            )
        return self.table.loc[list(smiles)]


def _zscore(X: np.ndarray) -> np.ndarray:
    """Per-column ``(x - mean) / std`` (population std, ``ddof=0``); constant columns -> 0."""
    Z = np.zeros_like(X)
    varying = X.max(axis=0) > X.min(axis=0)
    cols = X[:, varying]
    mean = cols.mean(axis=0)
    std = cols.std(axis=0)
    Z[:, varying] = (cols - mean) / std
    return Z


def admet_embedding(
    smiles: pd.Series,
    *,
    standardize: bool = True,
    include_physchem: bool = True,
    drugbank_percentiles: bool = False,
    model: Any | None = None,
) -> pd.DataFrame:
    """ADMET-AI property predictions as a drug embedding — the paper's ADMET-AI baseline.

    ADMET-AI (Swanson et al., 2024; the optional package ``admet-ai``, installed with
    ``pip install 'cellbridge[admet]'``) predicts absorption, distribution, metabolism,
    excretion and toxicity properties of a molecule with Chemprop models whose weights ship
    inside the package, so it runs offline. The drug embedding is the vector of these
    predictions, one column per property, in the column order ADMET-AI returns.

    Standardisation (``standardize=True``). The properties live on unrelated scales
    (probabilities, log solubilities, molecular weights in Daltons), so each column is
    z-scored across the drugs passed in: ``(x - mean) / std`` with the population standard
    deviation (``ddof=0``). A column that takes one value for every drug carries no
    information about how the drugs differ; it is set to 0 rather than divided by zero, and
    kept so that the columns do not depend on the drug set. The z-scores depend on which drugs
    are embedded together: embed all drugs of a comparison in one call.

    Parameters
    ----------
    smiles
        SMILES strings indexed by drug name, checked as in :func:`morgan_embedding`. Every
        SMILES is parsed with RDKit first, so ADMET-AI (which skips molecules it cannot read)
        never sees one it would drop. Drugs sharing a SMILES are predicted once and share a row.
    standardize
        Z-score each property across the drugs (above). ``False`` returns the raw predictions.
    include_physchem
        Also return the physicochemical properties ADMET-AI computes with RDKit (molecular
        weight, logP, hydrogen-bond donors and acceptors, Lipinski, QED, stereo centres, TPSA);
        ADMET-AI's default. Ignored when ``model`` is given.
    drugbank_percentiles
        Also return ADMET-AI's percentile of every property among approved DrugBank drugs
        (columns ending ``_drugbank_approved_percentile``). Off by default: a percentile is a
        monotone transform of a property already in the embedding and would count it twice.
        Ignored when ``model`` is given.
    model
        A ready ``admet_ai.ADMETModel`` (or any object with its ``predict(smiles=list)``
        method), e.g. one set up for a GPU; its own settings then decide the columns. Default:
        ``ADMETModel(include_physchem=include_physchem)``, with ``drugbank_path=None`` unless
        ``drugbank_percentiles``. Loading the models takes a few seconds: pass one to reuse it.

    Returns
    -------
    pandas.DataFrame
        Drugs x properties, float64; index the drug names in the order of ``smiles`` (named
        ``"drug"``), columns ADMET-AI's property names.

    Raises
    ------
    InputError
        Invalid ``smiles`` (as in :func:`morgan_embedding`); fewer than two drugs with
        ``standardize=True``; admet-ai not installed (fix: ``pip install 'cellbridge[admet]'``);
        non-numeric or non-finite predictions (listed as drug, property pairs).
    CellbridgeError
        ADMET-AI returned rows for other molecules than those asked for, or duplicate
        property names.
    """
    names, values, _ = _parse_smiles(smiles)
    if standardize and len(names) < 2:
        raise InputError(
            "smiles",
            "z-scoring across drugs needs at least two drugs",
            values=names,
            fix="embed all drugs together, or pass standardize=False",
        )
    if model is None:
        ADMETModel = _admet_model_class()
        kwargs: dict[str, Any] = {"include_physchem": include_physchem}
        if not drugbank_percentiles:
            kwargs["drugbank_path"] = None
        model = ADMETModel(**kwargs)

    unique = list(dict.fromkeys(values))
    predictions = model.predict(smiles=unique)
    if not isinstance(predictions, pd.DataFrame):
        raise CellbridgeError(
            "admet-ai returned a "
            f"{type(predictions).__name__} instead of a DataFrame for a list of SMILES"
        )
    returned = [str(s) for s in predictions.index]
    if returned != unique:
        lost = [s for s in unique if s not in set(returned)]
        extra = [s for s in returned if s not in set(unique)]
        raise CellbridgeError(
            "admet-ai returned predictions for other molecules than asked for: "
            f"missing {lost[:5]}, unexpected {extra[:5]}, {len(returned)} rows for "
            f"{len(unique)} SMILES"
        )
    if not predictions.columns.is_unique:
        dup = predictions.columns[predictions.columns.duplicated()].unique().tolist()
        raise CellbridgeError(f"admet-ai returned duplicate property names: {dup}")
    columns = [str(c) for c in predictions.columns]
    try:
        P = predictions.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(
            "smiles",
            "admet-ai returned non-numeric predictions",
            values=[c for c in columns if not pd.api.types.is_numeric_dtype(predictions[c])],
            fix="pass a model whose predict returns numbers only",
        ) from err

    row_of = {s: i for i, s in enumerate(unique)}
    X = P[[row_of[s] for s in values]]
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.nonzero(bad)
        raise InputError(
            "smiles",
            "admet-ai predicted non-finite values for these (drug, property) pairs",
            values=[(names[i], columns[j]) for i, j in zip(r.tolist(), c.tolist(), strict=True)],
            fix="leave these drugs out",
        )
    if standardize:
        X = _zscore(X)
    return pd.DataFrame(X, index=pd.Index(names, name="drug"), columns=pd.Index(columns))


# --- random -------------------------------------------------------------------------------


def _row_seed(seed: int, drug: str) -> np.ndarray:
    """Eight 32-bit words of ``sha256(f"{seed}:{drug}")`` (UTF-8), little-endian."""
    digest = hashlib.sha256(f"{seed}:{drug}".encode()).digest()
    return np.frombuffer(digest, dtype="<u4").astype(np.uint32)


def random_embedding(
    drugs: Sequence[str], *, dim: int = DEFAULT_RANDOM_DIM, seed: int = 0
) -> pd.DataFrame:
    """Standard-normal random drug embedding, reproducible per drug — the random baseline.

    Row ``d`` is ``numpy.random.default_rng(words).standard_normal(dim)`` where ``words``
    are the SHA-256 digest of the UTF-8 text ``f"{seed}:{d}"`` read as eight little-endian
    unsigned 32-bit integers. A drug's row therefore depends only on ``(seed, drug name,
    dim)``: it is the same whatever other drugs are listed and in whatever order (``dim``
    only truncates or extends it), and unlike Python's ``hash`` it does not change between
    processes. The stream is NumPy's PCG64 ``standard_normal``; NumPy keeps it stable in
    practice but does not promise that for every future version.

    Parameters
    ----------
    drugs
        Distinct drug names (non-empty strings).
    dim
        Embedding dimension, ``>= 1``.
    seed
        Any integer; different seeds give independent embeddings.

    Returns
    -------
    pandas.DataFrame
        Drugs x ``dim``, float64, index ``drugs`` in the given order (named ``"drug"``),
        columns ``"random_0"`` ... ``f"random_{dim - 1}"``.

    Raises
    ------
    InputError
        No drugs, a bare string, duplicate or non-string names; ``dim`` below 1; a
        non-integer ``seed``.

    Examples
    --------
    >>> a = random_embedding(["x", "y", "z"], dim=4, seed=1)
    >>> b = random_embedding(["z", "x"], dim=4, seed=1)
    >>> bool((a.loc[["z", "x"]] == b).all().all())
    True
    """
    names = _check_names(drugs, "drugs")
    dim = _check_int(dim, "dim", minimum=1)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputError("seed", "is not an integer", values=[seed], fix="pass an int")
    seed = int(seed)
    X = np.empty((len(names), dim), dtype=np.float64)
    for i, d in enumerate(names):
        X[i] = np.random.default_rng(_row_seed(seed, d)).standard_normal(dim)
    return pd.DataFrame(
        X,
        index=pd.Index(names, name="drug"),
        columns=pd.Index([f"random_{j}" for j in range(dim)]),
    )
