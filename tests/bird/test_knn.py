"""k-NN post-perturbation prediction (BiRD Eq. 4, §5.1) against brute-force oracles, and a
learning test on the simulated screen: BiRD predicts held-out drugs better than random."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.bird import (
    PrecomputedADMET,
    admet_embedding,
    bird_embedding,
    differential_response,
    jaccard_similarity,
    morgan_embedding,
)
from cellbridge.bird.gene_sets import enrichment, top_improved_genes
from cellbridge.bird.knn import (
    drug_profiles,
    knn_evaluation,
    knn_predict,
    mae_ecdf,
    nearest_training_drugs,
    win_rates,
)
from cellbridge.data import admet_predictions, perturbation_screen, split_by_group
from cellbridge.errors import InputError

# ---------------------------------------------------------------------------- oracles


def _oracle_predict(
    E: pd.DataFrame, P: pd.DataFrame, train: list[str], test: list[str], k: int
) -> np.ndarray:
    """Eq. 4 written out: sort training drugs by (squared distance, name), mean of the first k."""
    out = []
    for d in test:
        e = E.loc[d].to_numpy()
        ranked = sorted(train, key=lambda t: (float(np.sum((E.loc[t].to_numpy() - e) ** 2)), t))
        out.append(np.mean([P.loc[t].to_numpy() for t in ranked[:k]], axis=0))
    return np.asarray(out)


def _random_problem(
    seed: int, n_train: int, n_test: int, dims: int, genes: int, integer: bool
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    names = [f"drug{i:03d}" for i in range(n_train + n_test)]
    order = rng.permutation(len(names))
    train = [names[i] for i in order[:n_train]]
    test = [names[i] for i in order[n_train:]]
    coords = (
        rng.integers(-2, 3, (len(names), dims)) if integer else rng.normal(size=(len(names), dims))
    )
    E = pd.DataFrame(coords.astype(float), index=names)
    P = pd.DataFrame(rng.normal(size=(len(names), genes)), index=names)
    return E, P, train, test


# ------------------------------------------------------------------- knn_predict (Eq. 4)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_train=st.integers(1, 12),
    n_test=st.integers(1, 5),
    dims=st.integers(1, 4),
    genes=st.integers(1, 6),
    k_frac=st.floats(0, 1),
    integer=st.booleans(),
)
def test_knn_predict_equals_the_brute_force_oracle(
    seed: int, n_train: int, n_test: int, dims: int, genes: int, k_frac: float, integer: bool
) -> None:
    # integer coordinates in {-2..2} make exact distance ties common: they go by name
    E, P, train, test = _random_problem(seed, n_train, n_test, dims, genes, integer)
    k = 1 + round(k_frac * (n_train - 1))
    got = knn_predict(E, P, train, test, k=k)
    assert list(got.index) == test and list(got.columns) == list(P.columns)
    np.testing.assert_allclose(got.to_numpy(), _oracle_predict(E, P, train, test, k), rtol=1e-12)
    # the order of the training drugs never changes the answer (ties go by name)
    again = knn_predict(E, P, train[::-1], test, k=k)
    np.testing.assert_array_equal(got.to_numpy(), again.to_numpy())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_train=st.integers(1, 10), dims=st.integers(1, 5))
def test_k1_returns_the_nearest_training_profile_exactly(
    seed: int, n_train: int, dims: int
) -> None:
    E, P, train, test = _random_problem(seed, n_train, 4, dims, 7, integer=False)
    got = knn_predict(E, P, train, test, k=1)
    for d in test:
        dist = np.linalg.norm(E.loc[train].to_numpy() - E.loc[d].to_numpy(), axis=1)
        nearest = train[int(np.argmin(dist))]
        np.testing.assert_array_equal(got.loc[d].to_numpy(), P.loc[nearest].to_numpy())


def test_k_equal_to_all_training_drugs_is_their_mean() -> None:
    E, P, train, test = _random_problem(3, 6, 3, 2, 4, integer=False)
    got = knn_predict(E, P, train, test, k=6)
    want = np.tile(P.loc[train].to_numpy().mean(axis=0), (3, 1))
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-12)


def test_ties_are_broken_by_drug_name() -> None:
    # b and a are both at distance 1 from q; c at 2. k=1 takes "a", whatever the order.
    E = pd.DataFrame({"x": [1.0, -1.0, 2.0, 0.0]}, index=["b", "a", "c", "q"])
    P = pd.DataFrame({"g": [10.0, 20.0, 30.0]}, index=["b", "a", "c"])
    assert knn_predict(E, P, ["b", "a", "c"], ["q"], k=1).loc["q", "g"] == 20.0
    assert knn_predict(E, P, ["c", "b", "a"], ["q"], k=2).loc["q", "g"] == 15.0
    nn = nearest_training_drugs(E, ["c", "b", "a"], ["q"], k=3)
    assert nn.loc["q"].tolist() == ["a", "b", "c"]


def test_knn_predict_refuses_bad_input() -> None:
    E, P, train, test = _random_problem(0, 5, 2, 2, 3, integer=False)
    with pytest.raises(InputError, match="no embedding") as err:
        knn_predict(E.drop(index=test[0]), P, train, test)
    assert err.value.values == [test[0]]
    with pytest.raises(InputError, match="also training drugs"):
        knn_predict(E, P, train, [*test, train[0]], k=2)
    with pytest.raises(InputError, match="no profile"):
        knn_predict(E, P.drop(index=train[1]), train, test, k=2)
    with pytest.raises(InputError, match="exceeds"):
        knn_predict(E, P, train, test, k=6)
    with pytest.raises(InputError, match="positive"):
        knn_predict(E, P, train, test, k=0)
    with pytest.raises(InputError, match="single string"):
        knn_predict(E, P, train, test[0], k=2)
    bad = E.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(InputError, match="finite"):
        knn_predict(bad, P, train, test, k=2)


# ------------------------------------------------------------------------ drug_profiles


def _counts_adata(sparse: bool) -> anndata.AnnData:
    rng = np.random.default_rng(5)
    n = 60
    X = rng.poisson(3.0, (n, 8)).astype(np.float32)
    X[:, 0] += 1  # no empty cell
    obs = pd.DataFrame(
        {
            "drug": rng.choice(["DMSO", "d1", "d2", "d3"], n),
            "cell_line": rng.choice(["A", "B"], n),
        },
        index=[f"c{i}" for i in range(n)],
    )
    obs["control"] = obs["drug"] == "DMSO"
    return anndata.AnnData(
        X=sp.csr_matrix(X) if sparse else X,
        obs=obs,
        var=pd.DataFrame(index=[f"g{j}" for j in range(8)]),
    )


@pytest.mark.parametrize("sparse", [False, True])
def test_drug_profiles_are_means_of_log_normalised_treated_cells(sparse: bool) -> None:
    adata = _counts_adata(sparse)
    got = drug_profiles(adata)
    X = np.asarray(adata.X.toarray() if sparse else adata.X, dtype=np.float64)
    logn = np.log1p(1e4 * X / X.sum(axis=1, keepdims=True))
    frame = pd.DataFrame(logn, columns=adata.var_names)
    frame[["drug", "cell_line"]] = adata.obs[["drug", "cell_line"]].to_numpy()
    treated = frame[~adata.obs["control"].to_numpy()]
    assert sorted(got) == ["A", "B"]
    for line, table in got.items():
        want = treated[treated["cell_line"] == line].groupby("drug").mean(numeric_only=True)
        assert list(table.index) == list(want.index) and "DMSO" not in table.index
        np.testing.assert_allclose(table.to_numpy(), want.to_numpy(), rtol=1e-12)


def test_drug_profiles_refuses_a_non_boolean_control_column() -> None:
    adata = _counts_adata(False)
    adata.obs["control"] = adata.obs["control"].astype(int)
    with pytest.raises(InputError, match="boolean"):
        drug_profiles(adata)


# ----------------------------------------------------------------------- knn_evaluation


def _profiles_problem() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], list, list]:
    rng = np.random.default_rng(11)
    drugs = [f"d{i}" for i in range(12)]
    genes = [f"g{j}" for j in range(9)]
    profiles = {
        line: pd.DataFrame(rng.normal(size=(12, 9)), index=drugs, columns=genes)
        for line in ("ref", "L1", "L2")
    }
    embeddings = {
        "one": pd.DataFrame(rng.normal(size=(12, 3)), index=drugs),
        "two": pd.DataFrame(rng.normal(size=(12, 5)), index=drugs),
    }
    return profiles, embeddings, drugs[:8], drugs[8:]


def test_evaluation_mae_and_per_gene_errors_equal_their_definitions() -> None:
    profiles, embeddings, train, test = _profiles_problem()
    res = knn_evaluation(
        embeddings,
        profiles,
        train_drugs=train,
        test_drugs=test,
        evaluation_lines=["L1", "L2"],
        reference_lines=["ref"],
        k=3,
    )
    assert list(res.table.columns) == ["embedding", "cell_line", "drug", "mae"]
    assert len(res.table) == 2 * 2 * 4
    for name, E in embeddings.items():
        errors = []
        for line in ("L1", "L2"):
            P = profiles[line]
            pred = _oracle_predict(E, P, train, test, 3)
            abs_err = np.abs(pred - P.loc[test].to_numpy())
            errors.append(abs_err)
            rows = res.table[(res.table["embedding"] == name) & (res.table["cell_line"] == line)]
            assert rows["drug"].tolist() == test
            np.testing.assert_allclose(rows["mae"].to_numpy(), abs_err.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(
            res.per_gene.loc[name].to_numpy(), np.vstack(errors).mean(axis=0), rtol=1e-12
        )
        assert res.neighbours[name].shape == (4, 3)


def test_a_reference_line_among_the_evaluation_lines_is_refused() -> None:
    profiles, embeddings, train, test = _profiles_problem()
    with pytest.raises(InputError, match="reference lines") as err:
        knn_evaluation(
            embeddings,
            profiles,
            train_drugs=train,
            test_drugs=test,
            evaluation_lines=["L1", "ref"],
            reference_lines=["ref"],
        )
    assert err.value.values == ["ref"]


def test_overlapping_train_and_test_drugs_are_refused() -> None:
    profiles, embeddings, train, test = _profiles_problem()
    with pytest.raises(InputError, match="also training drugs") as err:
        knn_evaluation(
            embeddings,
            profiles,
            train_drugs=train,
            test_drugs=[*test, train[2]],
            evaluation_lines=["L1"],
            reference_lines=["ref"],
        )
    assert err.value.values == [train[2]]


def test_evaluation_refuses_missing_drugs_and_lines() -> None:
    profiles, embeddings, train, test = _profiles_problem()
    kwargs = {"train_drugs": train, "test_drugs": test, "reference_lines": ["ref"]}
    with pytest.raises(InputError, match="no embedding"):
        knn_evaluation(
            {"one": embeddings["one"].drop(index=test[0])},
            profiles,
            evaluation_lines=["L1"],
            **kwargs,  # type: ignore[arg-type]
        )
    with pytest.raises(InputError, match="test drugs have no profile"):
        short = {**profiles, "L1": profiles["L1"].drop(index=test[1])}
        knn_evaluation(embeddings, short, evaluation_lines=["L1"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="have no profiles"):
        knn_evaluation(embeddings, profiles, evaluation_lines=["L9"], **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------- win rates and ECDF


def _table(mae: np.ndarray, names: list[str]) -> pd.DataFrame:
    """A k-NN table from an array settings x methods."""
    rows = []
    for s, values in enumerate(mae):
        for name, value in zip(names, values, strict=True):
            rows.append((name, f"L{s % 3}", f"d{s}", float(value)))
    return pd.DataFrame(rows, columns=["embedding", "cell_line", "drug", "mae"])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), m=st.integers(2, 5))
def test_win_rates_match_the_definition_and_are_complementary(seed: int, n: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    mae = rng.integers(0, 3, (n, m)) / 10  # few values: many ties
    names = [f"m{i}" for i in range(m)]
    W = win_rates(_table(mae, names).sample(frac=1.0, random_state=seed % 2**31))
    assert sorted(W.index) == names
    W = W.loc[names, names]
    for a in range(m):
        for b in range(m):
            if a == b:
                assert np.isnan(W.iloc[a, b])
                continue
            want = (
                sum(
                    1.0 if x < y else 0.5 if x == y else 0.0
                    for x, y in zip(mae[:, a], mae[:, b], strict=True)
                )
                / n
            )
            assert W.iloc[a, b] == pytest.approx(want, abs=1e-12)
            assert W.iloc[a, b] + W.iloc[b, a] == pytest.approx(1.0, abs=1e-12)


def test_a_dominating_method_wins_every_setting() -> None:
    rng = np.random.default_rng(2)
    mae = rng.uniform(0.5, 1.0, (25, 3))
    mae[:, 1] = mae.min(axis=1) - 0.1
    W = win_rates(_table(mae, ["a", "best", "c"]))
    assert W.loc["best", ["a", "c"]].tolist() == [1.0, 1.0]
    assert W.loc[["a", "c"], "best"].tolist() == [0.0, 0.0]


def test_win_rates_refuse_methods_scored_on_different_settings() -> None:
    table = _table(np.arange(12.0).reshape(6, 2), ["a", "b"]).iloc[1:]
    with pytest.raises(InputError, match="not scored for every embedding"):
        win_rates(table)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40))
def test_ecdf_is_monotone_ends_at_one_and_counts_settings(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    mae = np.round(rng.uniform(0, 1, (n, 2)), 1)
    table = _table(mae, ["a", "b"])
    curves = mae_ecdf(table)
    for j, name in enumerate(["a", "b"]):
        c = curves[curves["embedding"] == name]
        assert np.all(np.diff(c["mae"]) > 0) and np.all(np.diff(c["ecdf"]) > 0)
        assert c["ecdf"].iloc[-1] == 1.0 and (c["n"] == n).all()
        want = np.searchsorted(np.sort(mae[:, j]), c["mae"].to_numpy(), side="right") / n
        np.testing.assert_allclose(c["ecdf"].to_numpy(), want, rtol=1e-12)
    per_line = mae_ecdf(table, by="cell_line")
    assert (per_line.groupby(["embedding", "cell_line"])["ecdf"].max() == 1.0).all()


# ------------------------------------------------- learning test on the simulated screen


@pytest.fixture(scope="module")
def screen_result():  # type: ignore[no-untyped-def]
    adata, truth = perturbation_screen(n_drugs=48, n_cell_lines=4, cells_per_condition=30, seed=0)
    refs = ["line0", "line1"]
    sig = differential_response(adata, reference_lines=refs, top_k=40)
    E = bird_embedding(
        {line: jaccard_similarity(sig.for_line(line)) for line in refs}, n_components=8
    )
    rng = np.random.default_rng(0)
    R = pd.DataFrame(rng.normal(size=E.shape), index=E.index, columns=E.columns)
    smiles = adata.obs.drop_duplicates("drug").set_index("drug")["smiles"].astype(str)
    M = morgan_embedding(smiles.loc[E.index])
    # ADMET-AI's real predictions for these drugs, stored (admet-ai pins its own RDKit)
    A = admet_embedding(smiles.loc[E.index], model=PrecomputedADMET(admet_predictions()))
    split = split_by_group(E.index, fractions=(0.75, 0.25), names=("train", "test"), seed=0)
    result = knn_evaluation(
        {"BiRD": E, "Morgan": M, "ADMET-AI": A, "random": R},
        adata,
        train_drugs=list(split.index[split == "train"]),
        test_drugs=list(split.index[split == "test"]),
        evaluation_lines=["line2", "line3"],
        reference_lines=refs,
        k=3,
    )
    return result, truth


def test_bird_predicts_held_out_drugs_better_than_every_baseline(screen_result) -> None:  # type: ignore[no-untyped-def]
    res, _ = screen_result
    mean = res.table.groupby("embedding")["mae"].mean()
    W = win_rates(res.table)
    # measured: BiRD 0.1266, Morgan 0.1284, ADMET-AI 0.1288, random 0.1310; BiRD wins
    # 62.5 %, 70.8 % and 75 % of the 24 (drug, line) settings against them
    for other in ("Morgan", "ADMET-AI", "random"):
        assert mean["BiRD"] < mean[other], mean
        assert W.loc["BiRD", other] > 0.5, W
    assert len(res.table) == 4 * 2 * 12
    assert res.data is not None and "SIMULATED" in res.data
    assert res.table.attrs["data"] == res.data


def test_genes_bird_improves_most_are_the_simulated_mechanism_programs(screen_result) -> None:  # type: ignore[no-untyped-def]
    # Fig. 3C on the simulation: the known class programs are the gene sets
    res, truth = screen_result
    top = top_improved_genes(res.per_gene, "BiRD", "random", n=100)
    programs = {
        atc: list(truth.mechanism.columns[truth.mechanism.loc[atc] != 0])
        for atc in truth.mechanism.index
    }
    table = enrichment(list(top.index), programs, list(res.per_gene.columns))
    # measured: 7 of the 12 programs at q <= 0.05, the best 20 of 30 genes (q = 2.5e-13)
    assert (table["qval"] <= 0.05).sum() >= 3, table
    assert table.loc[0, "qval"] < 1e-6, table
