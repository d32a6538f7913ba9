"""BiRD similarity and spectral embedding (§2, Eq. 1, Algorithm 1 stages 2-4) vs oracles."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.bird.embedding import (
    DEFAULT_N_COMPONENTS,
    bird_embedding,
    jaccard_similarity,
    load_embedding,
    save_embedding,
    spectral_embedding,
)
from cellbridge.errors import InputError

HYP = settings(max_examples=40, deadline=None, derandomize=True)
LOGGER = "cellbridge.bird.embedding"


def set_oracle(signatures: dict[str, set[str]], drugs: list[str]) -> np.ndarray:
    """Eq. 1 with Python sets, one pair at a time; two empty sets give 0 off the diagonal."""
    n = len(drugs)
    S = np.zeros((n, n))
    for i, u in enumerate(drugs):
        for j, v in enumerate(drugs):
            a, b = set(signatures[u]), set(signatures[v])
            if i == j:
                S[i, j] = 1.0
            elif a | b:
                S[i, j] = len(a & b) / len(a | b)
    return S


def frame(X: np.ndarray, names: list[str] | None = None) -> pd.DataFrame:
    names = names or [f"d{i}" for i in range(len(X))]
    return pd.DataFrame(X, index=names, columns=names)


def psd_matrix(seed: int, n: int, rank: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(n, rank))
    return B @ B.T


def zero_diag(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    np.fill_diagonal(X, 0.0)
    return X


# --- Jaccard similarity (Eq. 1) ---------------------------------------------------------

gene_sets = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.sets(st.sampled_from([f"g{i}" for i in range(12)]), max_size=8),
    min_size=1,
    max_size=12,
)


@HYP
@given(gene_sets)
def test_jaccard_matches_set_oracle(signatures: dict[str, set[str]]) -> None:
    drugs = list(signatures)
    S = jaccard_similarity(signatures)
    assert list(S.index) == drugs and list(S.columns) == drugs
    X = S.to_numpy()
    np.testing.assert_allclose(X, set_oracle(signatures, drugs), rtol=0, atol=1e-15)
    assert np.isfinite(X).all()
    np.testing.assert_array_equal(X, X.T)
    assert (X >= 0).all() and (X <= 1).all()
    np.testing.assert_array_equal(np.diag(X), 1.0)


@HYP
@given(gene_sets, st.randoms(use_true_random=False))
def test_jaccard_drug_order_and_subset(signatures: dict[str, set[str]], rnd: random.Random) -> None:
    drugs = list(signatures)
    rnd.shuffle(drugs)
    subset = drugs[: max(1, len(drugs) // 2)]
    S = jaccard_similarity(signatures, drugs=subset)
    assert list(S.index) == subset
    np.testing.assert_allclose(S.to_numpy(), set_oracle(signatures, subset), atol=1e-15)


def test_jaccard_closed_form_and_empty_sets() -> None:
    sig = {"a": ["g1", "g2", "g2"], "b": {"g2", "g3", "g4"}, "e1": set(), "e2": []}
    S = jaccard_similarity(sig)
    assert S.loc["a", "b"] == pytest.approx(1 / 4)  # {g2} / {g1..g4}; duplicate g2 counts once
    assert S.loc["e1", "e2"] == 0.0 and S.loc["e1", "a"] == 0.0
    assert S.loc["e1", "e1"] == 1.0 and S.loc["e2", "e2"] == 1.0
    assert S.index.name == "drug"


def test_jaccard_all_empty() -> None:
    S = jaccard_similarity({"a": set(), "b": set()})
    np.testing.assert_array_equal(S.to_numpy(), np.eye(2))


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"signatures": {}}, "signatures", None),
        ({"signatures": {"a": "GENE"}}, "signatures", "'a'"),
        ({"signatures": {"a": {"g"}}, "drugs": ["a", "a"]}, "drugs", "'a'"),
        ({"signatures": {"a": {"g"}}, "drugs": ["a", "zz"]}, "drugs", "'zz'"),
        ({"signatures": {"a": {"g"}}, "drugs": "a"}, "drugs", "'a'"),
        ({"signatures": {"a": {"g"}}, "drugs": []}, "signatures", None),
    ],
)
def test_jaccard_refusals(kwargs: dict[str, object], field: str, shown: str | None) -> None:
    with pytest.raises(InputError) as err:
        jaccard_similarity(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
    assert err.value.fix
    if shown is not None:
        assert shown in str(err.value)


# --- spectral embedding (Algorithm 1 lines 9, 12, 13) ------------------------------------


@HYP
@given(st.integers(0, 10_000), st.integers(3, 15), st.integers(1, 6))
def test_exact_when_rank_fits(seed: int, n: int, rank: int) -> None:
    """S = B B^T of rank r <= L is reproduced exactly: E E^T = S (closed form)."""
    rank = min(rank, n - 1)
    S = psd_matrix(seed, n, rank)
    E = spectral_embedding(frame(S), n_components=n - 1, zero_diagonal=False).to_numpy()
    np.testing.assert_allclose(E @ E.T, S, atol=1e-9 * max(1.0, np.abs(S).max()))


@HYP
@given(st.integers(0, 10_000), st.integers(4, 15), st.integers(1, 3))
def test_best_rank_l_psd_approximation(seed: int, n: int, L: int) -> None:
    """Eckart-Young: for PSD S, E E^T is the rank-L truncated SVD of S."""
    S = psd_matrix(seed, n, n)
    E = spectral_embedding(frame(S), n_components=L, zero_diagonal=False).to_numpy()
    U, s, Vt = np.linalg.svd(S)
    best = (U[:, :L] * s[:L]) @ Vt[:L]
    np.testing.assert_allclose(E @ E.T, best, atol=1e-8 * s[0])
    # column norms^2 are the kept eigenvalues, in decreasing order
    np.testing.assert_allclose((E**2).sum(axis=0), s[:L], rtol=1e-9)


@HYP
@given(st.integers(0, 10_000), st.integers(3, 12), st.integers(1, 11))
def test_zero_diagonal_is_a_unit_shift(seed: int, n: int, L: int) -> None:
    """Eq. 1's unit diagonal vs line 9: same eigenvectors, eigenvalues 1 lower, clipped at 0."""
    L = min(L, n - 1)
    rng = np.random.default_rng(seed)
    J = rng.uniform(0, 1, size=(n, n))
    S = (J + J.T) / 2
    np.fill_diagonal(S, 1.0)
    E0 = spectral_embedding(frame(S), n_components=L).to_numpy()
    lam, Q = np.linalg.eigh(S)
    lam, Q = lam[::-1][:L] - 1.0, Q[:, ::-1][:, :L]
    expected = (Q * np.clip(lam, 0, None)) @ Q.T
    np.testing.assert_allclose(E0 @ E0.T, expected, atol=1e-9 * n)
    E_explicit = spectral_embedding(frame(zero_diag(S)), n_components=L, zero_diagonal=False)
    np.testing.assert_allclose(E0, E_explicit.to_numpy(), atol=1e-12)


def test_negative_eigenvalues_give_zero_columns(caplog: pytest.LogCaptureFixture) -> None:
    """S0 = J - I (n = 3): eigenvalues 2, -1, -1. L = 2 keeps -1 -> a column of zeros."""
    S = frame(np.ones((3, 3)), ["a", "b", "c"])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        E = spectral_embedding(S, n_components=2)
    assert list(E.columns) == ["e1", "e2"]
    assert np.isfinite(E.to_numpy()).all()
    np.testing.assert_allclose(E["e1"], np.sqrt(2 / 3), rtol=1e-12)
    np.testing.assert_array_equal(E["e2"], 0.0)
    assert "1 of 2 kept eigenvalues are negative" in caplog.text
    assert "e2" in caplog.text


def test_no_warning_when_kept_eigenvalues_positive(caplog: pytest.LogCaptureFixture) -> None:
    S = frame(np.ones((3, 3)))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        spectral_embedding(S, n_components=1)
    assert caplog.text == ""


def test_default_n_components_capped(caplog: pytest.LogCaptureFixture) -> None:
    assert DEFAULT_N_COMPONENTS == 32
    S = jaccard_similarity({f"d{i}": {f"g{i}", f"g{i + 1}"} for i in range(6)})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        E = spectral_embedding(S)
    assert E.shape == (6, 5)
    assert "exceeds n_drugs - 1 = 5" in caplog.text
    big = jaccard_similarity({f"d{i}": {f"g{i}", f"g{i + 1}"} for i in range(40)})
    assert spectral_embedding(big).shape == (40, 32)


@HYP
@given(st.integers(0, 10_000), st.integers(3, 12), st.randoms(use_true_random=False))
def test_permuting_drugs_permutes_rows(seed: int, n: int, rnd: random.Random) -> None:
    """The sign convention makes the embedding equivariant under reordering the drugs."""
    S = frame(zero_diag(psd_matrix(seed, n, n)))
    names = list(S.index)
    rnd.shuffle(names)
    L = min(3, n - 1)
    E = spectral_embedding(S, n_components=L)
    E_perm = spectral_embedding(S.loc[names, names], n_components=L)
    assert list(E_perm.index) == names
    pd.testing.assert_frame_equal(E_perm.loc[list(E.index)], E, atol=1e-8, rtol=0)
    # largest-|entry| positive in every column (zeroed negative-eigenvalue columns aside)
    X = E.to_numpy()
    live = np.abs(X).max(axis=0) > 0
    assert (X[np.abs(X).argmax(axis=0), np.arange(L)][live] > 0).all()


def test_sign_tie_broken_by_drug_name() -> None:
    """J - I: the top eigenvector is constant, every entry tied; result positive either order."""
    S = frame(np.ones((4, 4)), ["d", "b", "a", "c"])
    E = spectral_embedding(S, n_components=1)
    assert (E["e1"] > 0).all()


def test_misaligned_columns_are_reordered_to_index() -> None:
    S = frame(psd_matrix(3, 5, 5))
    shuffled = S[list(reversed(S.columns))]
    pd.testing.assert_frame_equal(
        spectral_embedding(shuffled, n_components=2), spectral_embedding(S, n_components=2)
    )


def _asym() -> pd.DataFrame:
    X = np.ones((3, 3))
    X[0, 1] = 0.5
    return frame(X)


def _nonfinite() -> pd.DataFrame:
    X = np.ones((3, 3))
    X[1, 2] = X[2, 1] = np.nan
    return frame(X)


@pytest.mark.parametrize(
    ("S", "n_components", "field", "problem"),
    [
        (pd.DataFrame(np.ones((2, 3))), 1, "S", "not square"),
        (_asym(), 1, "S", "not symmetric"),
        (_nonfinite(), 1, "S", "non-finite"),
        (frame(np.ones((2, 2)), ["a", "a"]), 1, "S.index", "duplicate"),
        (pd.DataFrame(np.ones((2, 2)), index=["a", "b"], columns=["a", "c"]), 1, "S", "different"),
        (frame(np.ones((1, 1))), 1, "S", "fewer than 2"),
        (frame(np.ones((3, 3))), 0, "n_components", "at least 1"),
        (frame(np.ones((3, 3))), -2, "n_components", "at least 1"),
        (frame(np.ones((3, 3))), 1.5, "n_components", "not an integer"),
        (np.ones((3, 3)), 1, "S", "DataFrame"),
    ],
)
def test_spectral_refusals(S: object, n_components: object, field: str, problem: str) -> None:
    with pytest.raises(InputError) as err:
        spectral_embedding(S, n_components=n_components)  # type: ignore[arg-type]
    assert err.value.field == field
    assert problem in err.value.problem


def test_refusal_names_bad_values() -> None:
    with pytest.raises(InputError) as err:
        spectral_embedding(_nonfinite(), n_components=1)
    assert len(err.value.values) == 2  # (d1, d2) and (d2, d1)
    bad = err.value.values[0]
    assert isinstance(bad, tuple) and bad[:2] == ("d1", "d2") and np.isnan(bad[2])
    with pytest.raises(InputError) as err:
        spectral_embedding(_asym(), n_components=1)
    assert err.value.values == [("d0", "d1", 0.5, 1.0)]


# --- concatenation across lines (Algorithm 1 stage 4) ------------------------------------


def _lines() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    drugs = [f"drug{i}" for i in range(8)]
    genes = [f"g{j}" for j in range(30)]
    out = {}
    for line in ("A549", "SK-MEL-2", "A-172"):
        sig = {d: set(rng.choice(genes, size=6, replace=False).tolist()) for d in drugs}
        out[line] = jaccard_similarity(sig)
    return out


def test_bird_embedding_concatenates_lines() -> None:
    lines = _lines()
    # rows of a later line in another order are aligned to the first line's drugs
    names = list(reversed(lines["A-172"].index))
    lines["A-172"] = lines["A-172"].loc[names, names]
    E = bird_embedding(lines, n_components=3)
    assert E.shape == (8, 9)
    assert list(E.index) == list(lines["A549"].index)
    assert E.index.name == "drug"
    assert list(E.columns[:3]) == ["A549_1", "A549_2", "A549_3"]
    assert list(E.columns[-3:]) == ["A-172_1", "A-172_2", "A-172_3"]
    for line, S in lines.items():
        part = E[[f"{line}_{i}" for i in (1, 2, 3)]].to_numpy()
        alone = spectral_embedding(S, n_components=3).loc[E.index].to_numpy()
        np.testing.assert_allclose(part, alone, atol=1e-12)
    # Gram matrix of the fused embedding is the sum of the per-line Gram matrices
    X = E.to_numpy()
    total = sum(
        (lambda e: e @ e.T)(spectral_embedding(S, n_components=3).loc[E.index].to_numpy())
        for S in lines.values()
    )
    np.testing.assert_allclose(X @ X.T, total, atol=1e-12)


def test_bird_embedding_refusals() -> None:
    lines = _lines()
    with pytest.raises(InputError) as err:
        bird_embedding({})
    assert err.value.field == "similarities"
    keep = list(lines["A-172"].index[:-1])
    lines["A-172"] = lines["A-172"].loc[keep, keep]
    with pytest.raises(InputError) as err:
        bird_embedding(lines, n_components=2)
    assert err.value.field == "similarities['A-172']"
    assert err.value.values == ["missing drug7"]
    with pytest.raises(InputError) as err:
        bird_embedding({"x": _asym()}, n_components=1)
    assert err.value.field == "similarities['x']"
    with pytest.raises(InputError) as err:
        bird_embedding(_lines(), n_components=0)
    assert err.value.field == "n_components"


# --- persistence ------------------------------------------------------------------------


def test_parquet_round_trip(tmp_path: Path) -> None:
    E = bird_embedding(_lines(), n_components=4)
    path = tmp_path / "bird.parquet"
    save_embedding(E, path)
    back = load_embedding(path)
    pd.testing.assert_frame_equal(back, E)
    assert [p.name for p in tmp_path.iterdir()] == ["bird.parquet"]  # no temporary left
    save_embedding(E.iloc[:3], path)  # replaced in place
    pd.testing.assert_frame_equal(load_embedding(path), E.iloc[:3])


def test_save_refusals(tmp_path: Path) -> None:
    E = pd.DataFrame([[1.0, np.inf]], index=["a"], columns=["x", "y"])
    with pytest.raises(InputError) as err:
        save_embedding(E, tmp_path / "e.parquet")
    assert err.value.values == [("a", "y")]
    with pytest.raises(InputError):
        save_embedding(
            pd.DataFrame([[1.0], [2.0]], index=["a", "a"], columns=["x"]), tmp_path / "e"
        )
    with pytest.raises(InputError):
        save_embedding(pd.DataFrame([[1.0]], index=["a"], columns=[0]), tmp_path / "e")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError) as err:
        load_embedding(tmp_path / "missing.parquet")
    assert err.value.field == "path"
