"""Phenotype figures (POPPY Figure 4b-d): what they draw is the data they were given."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer
from scipy.stats import spearmanr

from cellbridge.errors import InputError
from cellbridge.plotting import plot_attribution, plot_cohort_auroc, plot_score_agreement


def _table() -> pd.DataFrame:
    """Three cohorts x three methods, rows in a scrambled order, every value distinct."""
    rng = np.random.default_rng(0)
    rows = []
    for cohort in ("Gide", "Riaz", "Liu"):
        for method in ("POPPY", "BulkFormer", "POPPY w/o stage 1"):
            auroc = rng.uniform(0.45, 0.85)
            rows.append((cohort, method, auroc, auroc - rng.uniform(0.05, 0.2), auroc + 0.1))
    table = pd.DataFrame(rows, columns=["cohort", "method", "auroc", "low", "high"])
    table["data"] = "semi-synthetic (test)"
    return table.iloc[[4, 0, 8, 1, 5, 2, 3, 6, 7]].reset_index(drop=True)


def _dashed_at(ax: Axes, value: float) -> bool:
    return any(
        line.get_linestyle() == "--" and np.allclose(line.get_ydata(), value)
        for line in ax.get_lines()
    )


def test_auroc_bars_and_error_bars_are_the_table() -> None:
    table = _table()
    fig = plot_cohort_auroc(table)
    ax = fig.axes[0]
    cohorts = ["Riaz", "Gide", "Liu"]  # order of first appearance in the table
    methods = ["BulkFormer", "POPPY", "POPPY w/o stage 1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == cohorts
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.get_label() for c in containers] == methods
    for m, container in enumerate(containers):
        rows = table[table["method"] == methods[m]].set_index("cohort")
        centres = [p.get_x() + p.get_width() / 2 for p in container.patches]
        drawn_cohorts = [cohorts[round(c)] for c in centres]
        want = rows.loc[drawn_cohorts]
        heights = [p.get_height() for p in container.patches]
        np.testing.assert_allclose(heights, want["auroc"], rtol=0, atol=1e-12)
        # Bars of one cohort sit side by side, method m at offset (m - 1) * width.
        offsets = np.array(centres) - np.array([cohorts.index(c) for c in drawn_cohorts])
        np.testing.assert_allclose(offsets, (m - 1) * 0.8 / 3, atol=1e-12)
        assert container.errorbar is not None
        segments = container.errorbar.lines[2][0].get_segments()
        ends = np.array([[seg[0][1], seg[1][1]] for seg in segments])
        np.testing.assert_allclose(ends, want[["low", "high"]], rtol=0, atol=1e-12)
    assert _dashed_at(ax, 0.5)
    assert "semi-synthetic (test)" in ax.get_title()


def test_a_method_missing_for_a_cohort_leaves_a_gap() -> None:
    table = _table()
    table = table[~((table["cohort"] == "Liu") & (table["method"] == "POPPY"))]
    ax = plot_cohort_auroc(table, title="two of three").axes[0]
    counts = {c.get_label(): len(c.patches) for c in ax.containers if isinstance(c, BarContainer)}
    assert counts == {"BulkFormer": 3, "POPPY": 2, "POPPY w/o stage 1": 3}
    assert ax.get_title().startswith("two of three")


@pytest.mark.parametrize("drop", ["cohort", "method", "auroc", "low", "high"])
def test_auroc_plot_refuses_tables_without_its_columns(drop: str) -> None:
    with pytest.raises(InputError, match=f"table: lacks columns \\('{drop}'\\)"):
        plot_cohort_auroc(_table().drop(columns=drop))


def test_auroc_plot_refusals() -> None:
    with pytest.raises(InputError, match="table: is empty"):
        plot_cohort_auroc(_table().iloc[:0])
    table = _table()
    table.loc[2, "low"] = np.nan
    with pytest.raises(InputError, match=r"non-finite auroc/low/high in rows \(2\)"):
        plot_cohort_auroc(table)
    table = _table()
    table.loc[3, "low"] = table.loc[3, "auroc"] + 0.01
    with pytest.raises(InputError, match=r"low <= auroc <= high\), rows \(3\)"):
        plot_cohort_auroc(table)
    table = pd.concat([_table(), _table().iloc[[0]]], ignore_index=True)
    repeated = r"repeated \(cohort, method\) pairs \(\('Riaz', 'BulkFormer'\)\)"
    with pytest.raises(InputError, match=repeated):
        plot_cohort_auroc(table)


def _cells() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    centre = {"T cell": 0.7, "NK cell": 0.65, "B cell": 0.52, "malignant": 0.3, "myeloid": 0.45}
    types = rng.choice(list(centre), size=400)
    score = np.clip(rng.normal([centre[t] for t in types], 0.1), 0, 1)
    return pd.DataFrame({"cell_type": types, "responder_score": score})


def test_attribution_boxes_are_sorted_by_mean_and_show_each_group() -> None:
    cells = _cells()
    ax = plot_attribution(cells).axes[0]
    means = cells.groupby("cell_type")["responder_score"].mean().sort_values(ascending=False)
    assert [t.get_text() for t in ax.get_xticklabels()] == means.index.tolist()
    marks = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(marks) == 1
    np.testing.assert_allclose(marks[0].get_offsets(), np.c_[np.arange(1, 6), means], atol=1e-12)
    for position, group in enumerate(means.index, start=1):
        values = cells.loc[cells["cell_type"] == group, "responder_score"]
        drawn = np.concatenate(
            [
                np.asarray(line.get_ydata(), dtype=float)
                for line in ax.get_lines()
                if np.isclose(np.mean(np.asarray(line.get_xdata(), dtype=float)), position)
            ]
        )
        for q in (25, 50, 75):  # quartile box and median line
            assert np.isclose(drawn, np.percentile(values, q), atol=1e-12).any()
    assert _dashed_at(ax, 0.5)


def test_attribution_uses_the_given_keys() -> None:
    cells = _cells().rename(columns={"cell_type": "program", "responder_score": "s"})
    ax = plot_attribution(cells, group_key="program", score_key="s").axes[0]
    assert ax.get_xlabel() == "program"
    assert ax.get_ylabel() == "s"
    assert "400 cells" in ax.get_title()


def test_attribution_refusals() -> None:
    with pytest.raises(InputError, match=r"scores: lacks columns \('responder_score'\)"):
        plot_attribution(_cells().drop(columns="responder_score"))
    with pytest.raises(InputError, match=r"scores: lacks columns \('cell_type_fine'\)"):
        plot_attribution(_cells(), group_key="cell_type_fine")
    with pytest.raises(InputError, match="scores: is empty"):
        plot_attribution(_cells().iloc[:0])
    cells = _cells()
    cells.loc[7, "responder_score"] = np.nan
    with pytest.raises(InputError, match=r"responder_score'\]: 1 missing .* \(7\)"):
        plot_attribution(cells)
    cells = _cells()
    cells.loc[9, "cell_type"] = None
    with pytest.raises(InputError, match=r"cell_type'\]: 1 cells without a group"):
        plot_attribution(cells)


def _title_rho(title: str) -> float:
    match = re.search(r"Spearman rho = (-?\d\.\d{3}) \(n = (\d+)\)", title)
    assert match is not None, title
    return float(match.group(1))


@pytest.mark.parametrize("seed", range(3))
def test_agreement_title_is_scipys_spearman(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=300)
    y = np.round(0.6 * x + 0.4 * rng.uniform(size=300), 1)  # with ties
    fig = plot_score_agreement(x, y, xlabel="label enrichment", ylabel="attention score")
    ax = fig.axes[0]
    assert _title_rho(ax.get_title()) == round(float(spearmanr(x, y).statistic), 3)
    assert "(n = 300)" in ax.get_title()
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_array_equal(points[0].get_offsets(), np.c_[x, y])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("label enrichment", "attention score")


def test_agreement_keeps_the_given_title_and_sign() -> None:
    x = np.arange(10.0)
    ax = plot_score_agreement(x, -(x**3), xlabel="a", ylabel="b", title="Gide").axes[0]
    first, second = ax.get_title().split("\n")
    assert first == "Gide"
    assert _title_rho(second) == -1.0


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([0.1, 0.2, 0.3], [0.1, 0.2], r"y: has 2 entries but x has 3"),
        ([0.1, 0.2], [0.3, 0.4], r"x: needs at least 3 cells"),
        ([0.1, np.nan, 0.3], [0.1, 0.2, 0.3], r"x: 1 missing or non-finite values.*\(1\)"),
        ([0.1, 0.2, 0.3], [0.1, 0.2, np.inf], r"y: 1 missing or non-finite values.*\(2\)"),
        ([0.5, 0.5, 0.5], [0.1, 0.2, 0.3], r"x: is constant"),
        ([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], r"y: is constant"),
        ([], [], r"x: needs at least 3 cells"),
    ],
)
def test_agreement_refusals(x: list[float], y: list[float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        plot_score_agreement(np.array(x), np.array(y), xlabel="a", ylabel="b")
