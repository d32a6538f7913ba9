"""GMT I/O, the one-sided Fisher enrichment against scipy.stats.fisher_exact, and the
ranking of per-gene error reductions (BiRD §5.1, Fig. 3C)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact

from cellbridge.bird.gene_sets import enrichment, read_gmt, top_improved_genes, write_gmt
from cellbridge.errors import InputError

# ------------------------------------------------------------------------------ GMT

_name = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="\t\r\n"
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(
    sets=st.dictionaries(
        _name, st.lists(_name, min_size=1, max_size=8, unique=True), min_size=1, max_size=6
    )
)
def test_gmt_round_trip(tmp_path_factory: pytest.TempPathFactory, sets: dict) -> None:
    path = tmp_path_factory.mktemp("gmt") / "sets.gmt"
    write_gmt(sets, path, descriptions={next(iter(sets)): "http://example.org"})
    assert read_gmt(path) == sets


def test_gmt_reads_the_file_as_written(tmp_path: Path) -> None:
    path = tmp_path / "go.gmt"
    path.write_text(
        "RIBOSOME\tna\tRPL3\tRPS6\tRPL3\t\n"  # repeated gene kept once, trailing tab
        "\n"
        "CELL_CYCLE\thttp://x\tCDK1\tCCNB1\r\n",
        encoding="utf-8",
    )
    assert read_gmt(path) == {"RIBOSOME": ["RPL3", "RPS6"], "CELL_CYCLE": ["CDK1", "CCNB1"]}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A\tna\tg1\nB na g1 g2\n", "fields"),  # spaces instead of tabs
        ("A\tna\tg1\nB\tna\t\t\n", "no gene"),
        ("A\tna\tg1\n\tna\tg2\n", "empty gene-set name"),
        ("A\tna\tg1\nA\tna\tg2\n", "repeats the gene-set name of line 1"),
    ],
)
def test_gmt_malformed_line_names_its_number(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.gmt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=problem) as err:
        read_gmt(path)
    assert err.value.field.endswith("line 2")


# ----------------------------------------------------------------------- enrichment


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg written out: min over j >= i of p_(j) m / j, capped at 1."""
    m = len(p)
    order = np.argsort(p)
    q = np.empty(m)
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        q[i] = running
    return q


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_sets=st.integers(1, 8))
def test_enrichment_pvalues_equal_fisher_exact_greater(seed: int, n_sets: int) -> None:
    rng = np.random.default_rng(seed)
    universe = [f"g{i}" for i in range(int(rng.integers(5, 60)))]
    n = int(rng.integers(1, len(universe) + 1))
    genes = list(rng.choice(universe, n, replace=False))
    sets = {}
    for s in range(n_sets):
        size = int(rng.integers(0, len(universe) + 1))
        members = list(rng.choice(universe, size, replace=False))
        sets[f"set{s}"] = [*members, "not_in_universe"]  # outside genes are not counted
    table = enrichment(genes, sets, universe).set_index("set")
    N = len(universe)
    for name, members in sets.items():
        K = len(set(members) & set(universe))
        a = len(set(members) & set(genes))
        row = table.loc[name]
        assert (row["size"], row["overlap"]) == (K, a)
        odds, p = fisher_exact([[a, n - a], [K - a, N - K - n + a]], alternative="greater")
        assert row["pval"] == pytest.approx(p, rel=1e-9, abs=1e-15)
        assert row["expected"] == pytest.approx(n * K / N)
        if K:
            assert row["odds"] == pytest.approx(odds, rel=1e-12) or np.isnan(odds)
            assert row["fold"] == pytest.approx(a / (n * K / N))
        assert row["genes"] == sorted(set(members) & set(genes))
    np.testing.assert_allclose(table["qval"].to_numpy(), _bh(table["pval"].to_numpy()), rtol=1e-12)
    ordered = table.reset_index()
    assert ordered.equals(ordered.sort_values(["pval", "set"], kind="stable"))


def test_enrichment_ranks_a_planted_set_first() -> None:
    universe = [f"g{i:03d}" for i in range(200)]
    sets = {f"random{j}": universe[j * 20 : j * 20 + 20] for j in range(1, 10)}
    sets["planted"] = universe[:20]
    table = enrichment(universe[:15] + universe[100:105], sets, universe)
    assert table.loc[0, "set"] == "planted" and table.loc[0, "qval"] < 1e-10


def test_enrichment_refuses_genes_outside_the_universe() -> None:
    with pytest.raises(InputError, match="not in the universe") as err:
        enrichment(["a", "z"], {"S": ["a"]}, ["a", "b"])
    assert err.value.values == ["z"]
    with pytest.raises(InputError, match="duplicate"):
        enrichment(["a", "a"], {"S": ["a"]}, ["a", "b"])


# --------------------------------------------------------------- top_improved_genes


def test_top_improved_genes_are_the_largest_reductions() -> None:
    rng = np.random.default_rng(4)
    genes = [f"g{i:02d}" for i in range(40)]
    errors = pd.DataFrame(
        rng.uniform(0, 1, (3, 40)).round(1), index=["BiRD", "ADMET", "random"], columns=genes
    )
    got = top_improved_genes(errors, "BiRD", "random", n=10)
    delta = errors.loc["random"] - errors.loc["BiRD"]
    want = sorted(genes, key=lambda g: (-delta[g], g))[:10]
    assert list(got.index) == want
    np.testing.assert_allclose(got.to_numpy(), delta[want].to_numpy())
    assert got.name == "mae_reduction"
    with pytest.raises(InputError, match="not a row"):
        top_improved_genes(errors, "Morgan", "random")
    with pytest.raises(InputError, match="number of genes"):
        top_improved_genes(errors, "BiRD", "random", n=41)
