"""Baseline drug embeddings (BiRD §5.1: Morgan-FP, ADMET-AI, random) vs independent oracles."""

from __future__ import annotations

import hashlib
import sys
import types
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import rdMolDescriptors

from cellbridge.bird.baselines import (
    ADMET_INSTALL_HINT,
    DEFAULT_MORGAN_BITS,
    DEFAULT_RANDOM_DIM,
    admet_embedding,
    morgan_embedding,
    random_embedding,
)
from cellbridge.data import drug_table
from cellbridge.errors import CellbridgeError, InputError


@pytest.fixture(scope="module")
def drugs() -> pd.Series:
    """The 96 real drugs shipped with cellbridge: name -> SMILES."""
    return drug_table().set_index("name")["smiles"]


def legacy_on_bits(smiles: str, radius: int, n_bits: int) -> set[int]:
    """On bits from RDKit's older functional Morgan API (not the generator the code uses)."""
    mol = Chem.MolFromSmiles(smiles)
    block = rdBase.BlockLogs()  # the legacy call logs a deprecation notice
    try:
        fp = rdMolDescriptors.GetMorganFingerprintAsBitVect(mol, radius, nBits=n_bits)
    finally:
        del block
    return set(fp.GetOnBits())


def tanimoto(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum() / (a | b).sum())


# --- Morgan fingerprints ------------------------------------------------------------------


def test_morgan_layout_defaults(drugs: pd.Series) -> None:
    fp = morgan_embedding(drugs)
    assert fp.shape == (96, DEFAULT_MORGAN_BITS)
    assert fp.index.name == "drug"
    assert fp.index.tolist() == drugs.index.tolist()
    assert fp.columns[0] == "morgan_0" and fp.columns[-1] == f"morgan_{DEFAULT_MORGAN_BITS - 1}"
    assert fp.dtypes.eq(np.float64).all()
    assert set(np.unique(fp.to_numpy()).tolist()) == {0.0, 1.0}
    # every real drug parses and sets some bits
    assert (fp.sum(axis=1) > 0).all()


@pytest.mark.parametrize(("radius", "n_bits"), [(0, 2048), (1, 512), (2, 2048), (3, 1024)])
def test_morgan_bits_equal_legacy_rdkit(drugs: pd.Series, radius: int, n_bits: int) -> None:
    fp = morgan_embedding(drugs, radius=radius, n_bits=n_bits)
    assert fp.shape == (len(drugs), n_bits)
    for name, smiles in drugs.items():
        got = set(np.flatnonzero(fp.loc[name].to_numpy()).tolist())
        assert got == legacy_on_bits(smiles, radius, n_bits), name


def test_morgan_tanimoto_matches_rdkit(drugs: pd.Series) -> None:
    fp = morgan_embedding(drugs)
    names = drugs.index[:12].tolist()
    vecs = {}
    for n in names:
        block = rdBase.BlockLogs()
        try:
            vecs[n] = rdMolDescriptors.GetMorganFingerprintAsBitVect(
                Chem.MolFromSmiles(drugs[n]), 2, nBits=2048
            )
        finally:
            del block
    for i, u in enumerate(names):
        for v in names[i:]:
            expected = DataStructs.TanimotoSimilarity(vecs[u], vecs[v])
            got = tanimoto(fp.loc[u].to_numpy(), fp.loc[v].to_numpy())
            assert got == pytest.approx(expected, abs=1e-12)


def test_morgan_identical_molecules_tanimoto_one() -> None:
    # the same molecule written three ways, and a different one
    smiles = pd.Series(
        {"ethanol": "CCO", "ethanol_rev": "OCC", "ethanol_h": "[CH3][CH2][OH]", "propanol": "CCCO"}
    )
    fp = morgan_embedding(smiles).to_numpy()
    assert tanimoto(fp[0], fp[1]) == 1.0
    assert tanimoto(fp[0], fp[2]) == 1.0
    assert tanimoto(fp[0], fp[3]) < 1.0


def test_morgan_closed_forms_symmetric_molecules() -> None:
    # Methane has one atom and no neighbours: one environment at every radius.
    # In benzene all six atoms are equivalent: one new environment per radius at most.
    smiles = pd.Series({"methane": "C", "benzene": "c1ccccc1"})
    for radius in range(4):
        fp = morgan_embedding(smiles, radius=radius)
        assert fp.loc["methane"].sum() == 1
        assert 1 <= fp.loc["benzene"].sum() <= radius + 1
    assert morgan_embedding(smiles, radius=0).loc["benzene"].sum() == 1


def test_morgan_fold_and_radius_nesting(drugs: pd.Series) -> None:
    # fpSize folds the hash modulo n_bits, so 1024 bits are 2048 bits OR-ed in halves
    big = morgan_embedding(drugs, n_bits=2048).to_numpy().astype(bool)
    small = morgan_embedding(drugs, n_bits=1024).to_numpy().astype(bool)
    np.testing.assert_array_equal(small, big[:, :1024] | big[:, 1024:])
    # a larger radius keeps every environment of the smaller one
    r1 = morgan_embedding(drugs, radius=1).to_numpy().astype(bool)
    r2 = morgan_embedding(drugs, radius=2).to_numpy().astype(bool)
    assert not (r1 & ~r2).any()
    assert (r2.sum(axis=1) > r1.sum(axis=1)).all()


def test_morgan_invalid_smiles_listed_together(capfd: pytest.CaptureFixture[str]) -> None:
    smiles = pd.Series({"ok": "CCO", "ring": "C1CC", "valence": "CC(C)(C)(C)C", "ok2": "CO"})
    with pytest.raises(InputError, match="cannot parse") as err:
        morgan_embedding(smiles)
    assert err.value.field == "smiles"
    assert err.value.values == [("ring", "C1CC"), ("valence", "CC(C)(C)(C)C")]
    assert "ring" in str(err.value) and "CC(C)(C)(C)C" in str(err.value)
    assert "SMILES Parse Error" not in capfd.readouterr().err
    # RDKit's logging is back afterwards
    Chem.MolFromSmiles("C1CC")
    assert "C1CC" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("smiles", "match"),
    [
        (pd.Series({"a": "CCO", "b": ""}), "without a SMILES"),
        (pd.Series({"a": "CCO", "b": np.nan}), "without a SMILES"),
        (pd.Series({"a": "CCO", "b": None}), "without a SMILES"),
        (pd.Series({"a": "CCO", "b": 5}), "not strings"),
        (pd.Series({"a": "CCO", "b": "CC O"}), "whitespace"),
        (pd.Series({"a": "CCO", "b": " CCO"}), "whitespace"),
        (pd.Series([], dtype=object), "no drugs"),
        (pd.Series(["CCO", "CO"], index=["x", "x"]), "duplicate drug names"),
        (pd.Series(["CCO", "CO"], index=["x", None]), "missing, empty or not strings"),
        (pd.Series(["CCO", "CO"]), "missing, empty or not strings"),
    ],
)
def test_morgan_refuses_bad_input(smiles: pd.Series, match: str) -> None:
    with pytest.raises(InputError, match=match):
        morgan_embedding(smiles)


def test_morgan_refuses_non_series_and_bad_options() -> None:
    with pytest.raises(InputError, match="not a pandas Series"):
        morgan_embedding({"a": "CCO"})  # type: ignore[arg-type]
    ok = pd.Series({"a": "CCO"})
    for kwargs, field in [
        ({"radius": -1}, "radius"),
        ({"radius": 1.5}, "radius"),
        ({"n_bits": 0}, "n_bits"),
        ({"n_bits": True}, "n_bits"),
    ]:
        with pytest.raises(InputError) as err:
            morgan_embedding(ok, **kwargs)
        assert err.value.field == field


def test_morgan_duplicate_structures_share_row() -> None:
    fp = morgan_embedding(pd.Series({"a": "CCO", "b": "CCO", "c": "CCN"}))
    np.testing.assert_array_equal(fp.loc["a"], fp.loc["b"])


# --- ADMET-AI, via a stand-in admet_ai module ---------------------------------------------


class FakeADMETModel:
    """Mimics ``admet_ai.ADMETModel``: a DataFrame indexed by SMILES, one column per property."""

    init_calls: ClassVar[list[dict[str, Any]]] = []
    predict_calls: ClassVar[list[list[str]]] = []

    def __init__(self, **kwargs: Any) -> None:
        FakeADMETModel.init_calls.append(kwargs)

    def predict(self, smiles: list[str]) -> pd.DataFrame:
        FakeADMETModel.predict_calls.append(list(smiles))
        return pd.DataFrame(
            {
                "molecular_weight": [float(len(s)) * 10.0 for s in smiles],
                "AMES": [s.count("C") / 10.0 for s in smiles],
                "constant": [0.3] * len(smiles),
            },
            index=list(smiles),
        )


@pytest.fixture
def fake_admet(monkeypatch: pytest.MonkeyPatch) -> type[FakeADMETModel]:
    module = types.ModuleType("admet_ai")
    module.ADMETModel = FakeADMETModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "admet_ai", module)
    FakeADMETModel.init_calls = []
    FakeADMETModel.predict_calls = []
    return FakeADMETModel


SMALL = pd.Series({"ethanol": "CCO", "propanol": "CCCO", "glycine": "NCC(=O)O", "urea": "NC(N)=O"})


def raw_predictions(smiles: pd.Series) -> np.ndarray:
    """What FakeADMETModel predicts, written out per drug."""
    return np.array([[len(s) * 10.0, s.count("C") / 10.0, 0.3] for s in smiles])


def test_admet_standardized_matches_scipy_zscore(fake_admet: type[FakeADMETModel]) -> None:
    emb = admet_embedding(SMALL)
    assert emb.index.tolist() == SMALL.index.tolist() and emb.index.name == "drug"
    assert emb.columns.tolist() == ["molecular_weight", "AMES", "constant"]
    raw = raw_predictions(SMALL)
    expected = scipy.stats.zscore(raw[:, :2], axis=0, ddof=0)
    np.testing.assert_allclose(emb.to_numpy()[:, :2], expected, rtol=1e-12, atol=1e-12)
    # constant column -> 0, not NaN
    assert (emb["constant"] == 0.0).all()
    # the default model: physchem on, DrugBank percentiles off
    assert fake_admet.init_calls == [{"include_physchem": True, "drugbank_path": None}]
    assert fake_admet.predict_calls == [SMALL.tolist()]


def test_admet_raw_and_options(fake_admet: type[FakeADMETModel]) -> None:
    emb = admet_embedding(
        SMALL, standardize=False, include_physchem=False, drugbank_percentiles=True
    )
    np.testing.assert_array_equal(emb.to_numpy(), raw_predictions(SMALL))
    assert fake_admet.init_calls == [{"include_physchem": False}]


def test_admet_single_drug_raw_only(fake_admet: type[FakeADMETModel]) -> None:
    one = SMALL.iloc[:1]
    with pytest.raises(InputError, match="at least two drugs"):
        admet_embedding(one)
    emb = admet_embedding(one, standardize=False)
    np.testing.assert_array_equal(emb.to_numpy(), raw_predictions(one))


def test_admet_duplicate_smiles_predicted_once(fake_admet: type[FakeADMETModel]) -> None:
    smiles = pd.Series({"a": "CCO", "b": "CCCO", "a_again": "CCO"})
    emb = admet_embedding(smiles, standardize=False)
    assert fake_admet.predict_calls == [["CCO", "CCCO"]]
    np.testing.assert_array_equal(emb.loc["a"], emb.loc["a_again"])
    np.testing.assert_array_equal(emb.to_numpy(), raw_predictions(smiles))


def test_admet_invalid_smiles_refused_before_model(fake_admet: type[FakeADMETModel]) -> None:
    with pytest.raises(InputError, match="cannot parse") as err:
        admet_embedding(pd.Series({"a": "CCO", "bad": "C1CC"}))
    assert err.value.values == [("bad", "C1CC")]
    assert fake_admet.init_calls == [] and fake_admet.predict_calls == []


def test_admet_given_model_needs_no_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "admet_ai", None)
    FakeADMETModel.predict_calls = []
    emb = admet_embedding(SMALL, model=FakeADMETModel(), standardize=False)
    np.testing.assert_array_equal(emb.to_numpy(), raw_predictions(SMALL))


def test_admet_missing_package_names_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "admet_ai", None)  # makes `import admet_ai` fail
    with pytest.raises(InputError, match="admet-ai") as err:
        admet_embedding(SMALL)
    assert err.value.fix == ADMET_INSTALL_HINT == "pip install 'cellbridge[admet]'"
    assert "pip install 'cellbridge[admet]'" in str(err.value)
    assert isinstance(err.value.__cause__, ImportError)


class DroppingModel:
    """Skips a molecule, as admet-ai does with ones it cannot read."""

    def predict(self, smiles: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"p": np.arange(len(smiles) - 1.0)}, index=smiles[1:])


class NaNModel:
    def predict(self, smiles: list[str]) -> pd.DataFrame:
        values = [np.nan if s == "CCCO" else 1.0 for s in smiles]
        return pd.DataFrame({"p": values, "q": 2.0}, index=smiles)


def test_admet_refuses_lost_rows_and_nan() -> None:
    with pytest.raises(CellbridgeError, match="other molecules"):
        admet_embedding(SMALL, model=DroppingModel())
    with pytest.raises(InputError, match="non-finite") as err:
        admet_embedding(SMALL, model=NaNModel())
    assert err.value.values == [("propanol", "p")]


# --- random -------------------------------------------------------------------------------


def oracle_row(seed: int, drug: str, dim: int) -> np.ndarray:
    """The documented recipe, written out: SHA-256 words seed a PCG64 Generator."""
    words = np.frombuffer(hashlib.sha256(f"{seed}:{drug}".encode()).digest(), dtype="<u4")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words))).standard_normal(dim)


def test_random_matches_recipe_and_layout() -> None:
    names = ["Sorafenib", "Sunitinib", "β-lactam", "x"]
    emb = random_embedding(names, dim=8, seed=3)
    assert emb.shape == (4, 8) and emb.index.name == "drug"
    assert emb.index.tolist() == names
    assert emb.columns.tolist() == [f"random_{j}" for j in range(8)]
    for d in names:
        np.testing.assert_array_equal(emb.loc[d].to_numpy(), oracle_row(3, d, 8))
    assert random_embedding(names).shape == (4, DEFAULT_RANDOM_DIM)


def test_random_order_and_subset_independent(drugs: pd.Series) -> None:
    names = drugs.index.tolist()
    full = random_embedding(names, seed=7)
    rng = np.random.default_rng(0)
    subset = [names[i] for i in rng.permutation(len(names))[:20]]
    part = random_embedding(subset, seed=7)
    pd.testing.assert_frame_equal(part, full.loc[subset])
    pd.testing.assert_frame_equal(random_embedding(names, seed=7), full)
    # a longer dim extends each row
    longer = random_embedding(subset, seed=7, dim=64)
    np.testing.assert_array_equal(longer.to_numpy()[:, :DEFAULT_RANDOM_DIM], part.to_numpy())


def test_random_seed_changes_rows_and_is_standard_normal() -> None:
    names = [f"drug{i}" for i in range(400)]
    a = random_embedding(names, seed=0, dim=50).to_numpy()
    b = random_embedding(names, seed=1, dim=50).to_numpy()
    assert not np.allclose(a, b)
    # 20,000 draws: mean 0 and variance 1 within ~5 standard errors
    for x in (a, b):
        assert abs(x.mean()) < 5 / np.sqrt(x.size)
        assert abs(x.var() - 1.0) < 5 * np.sqrt(2 / x.size)
        assert scipy.stats.kstest(x.ravel(), "norm").pvalue > 1e-3
    # rows of different drugs are uncorrelated
    corr = np.corrcoef(a)[np.triu_indices(len(names), 1)]
    assert np.abs(corr).max() < 0.75


@pytest.mark.parametrize(
    ("drugs_arg", "kwargs", "field"),
    [
        ([], {}, "drugs"),
        ("aspirin", {}, "drugs"),
        (["a", "a"], {}, "drugs"),
        (["a", 3], {}, "drugs"),
        (["a", ""], {}, "drugs"),
        (["a"], {"dim": 0}, "dim"),
        (["a"], {"seed": 1.5}, "seed"),
        (["a"], {"seed": True}, "seed"),
    ],
)
def test_random_refuses_bad_input(drugs_arg: Any, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as err:
        random_embedding(drugs_arg, **kwargs)
    assert err.value.field == field


# --- ADMET-AI's stored predictions for the simulated screen's drugs --------------------


def test_stored_admet_predictions_cover_the_drug_table() -> None:
    """96 drugs with their SMILES; the RDKit-computed physicochemical columns equal
    RDKit's own descriptors (an independent check that rows and molecules match)."""
    from rdkit.Chem import Descriptors

    from cellbridge.data import admet_predictions, drug_table

    table = admet_predictions()
    drugs = drug_table().set_index("name")
    assert list(table.index) == list(drugs.index)
    assert (table["smiles"] == drugs["smiles"]).all()
    assert table.drop(columns="smiles").shape[1] == 52
    assert np.isfinite(table.drop(columns="smiles").to_numpy(dtype=float)).all()
    weights = [Descriptors.MolWt(Chem.MolFromSmiles(s)) for s in table["smiles"]]
    np.testing.assert_allclose(table["molecular_weight"], weights, rtol=1e-6)
    assert "admet-ai" in table.attrs["source"]


def test_precomputed_admet_serves_rows_by_smiles_and_refuses_unknown_ones() -> None:
    from cellbridge.bird import PrecomputedADMET
    from cellbridge.data import admet_predictions

    table = admet_predictions()
    smiles = table["smiles"].iloc[:5]
    emb = admet_embedding(smiles, model=PrecomputedADMET(table), standardize=False)
    np.testing.assert_array_equal(emb.to_numpy(), table.iloc[:5, 1:].to_numpy(dtype=float))
    assert list(emb.columns) == list(table.columns[1:])
    z = admet_embedding(smiles, model=PrecomputedADMET(table))
    raw = table.iloc[:5, 1:].to_numpy(dtype=float)
    sd = raw.std(axis=0)
    want = np.divide(raw - raw.mean(axis=0), sd, out=np.zeros_like(raw), where=sd > 0)
    np.testing.assert_allclose(z.to_numpy(), want, atol=1e-12)
    with pytest.raises(InputError, match="no stored ADMET-AI predictions"):
        admet_embedding(
            pd.Series({"ethanol": "CCO"}), model=PrecomputedADMET(table), standardize=False
        )
    with pytest.raises(InputError, match="smiles"):
        PrecomputedADMET(table.drop(columns="smiles"))


# admet-ai's own stack (Chemprop, Lightning) warns about its dependencies' deprecations
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stored_predictions_equal_the_admet_ai_package() -> None:
    """Runs where admet-ai is installed (it pins its own Chemprop and RDKit, so not in
    cellbridge's test environment): the stored table is what the package predicts."""
    pytest.importorskip("admet_ai", reason="admet-ai is not installed (optional extra)")
    from cellbridge.data import admet_predictions

    table = admet_predictions().iloc[:8]
    live = admet_embedding(table["smiles"], standardize=False)
    # Chemprop runs in float32 and batches differently for 8 molecules than for 96, so
    # the last digits move (measured: 1.9e-6 at most)
    np.testing.assert_allclose(
        live.to_numpy(), table.drop(columns="smiles").to_numpy(dtype=float), rtol=1e-4, atol=1e-5
    )
