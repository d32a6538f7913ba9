"""BiRD k-NN figures (Fig. 3A-C): what they draw is the data they were given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from cellbridge.bird.gene_sets import enrichment
from cellbridge.bird.knn import mae_ecdf, win_rates
from cellbridge.errors import InputError
from cellbridge.plotting.bird import plot_enrichment, plot_mae_ecdf, plot_win_rates


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for line in ("L1", "L2", "L3"):
        for d in range(10):
            base = rng.uniform(0.2, 0.4)
            for name, shift in (("BiRD", 0.0), ("Morgan", 0.03), ("random", 0.05)):
                rows.append((name, line, f"d{d}", base + shift + rng.normal(0, 0.02)))
    table = pd.DataFrame(rows, columns=["embedding", "cell_line", "drug", "mae"])
    table.attrs["data"] = "SIMULATED (test)"
    return table


def test_ecdf_curves_are_the_ecdf_of_the_table() -> None:
    table = _table()
    fig = plot_mae_ecdf(table)
    ax = fig.axes[0]
    curves = mae_ecdf(table)
    lines = ax.get_lines()
    assert [line.get_label().split(" ")[0] for line in lines] == ["BiRD", "Morgan", "random"]
    for line in lines:
        name = line.get_label().split(" ")[0]
        c = curves[curves["embedding"] == name]
        np.testing.assert_allclose(line.get_ydata()[1:], c["ecdf"].to_numpy())
        np.testing.assert_allclose(line.get_xdata()[1:], c["mae"].to_numpy())
    assert len(ax.collections) == 3  # one band per embedding across the 3 cell lines
    assert "SIMULATED (test)" in ax.get_title()


def test_win_rate_heatmap_annotates_the_percentages() -> None:
    table = _table()
    W = win_rates(table)
    fig = plot_win_rates(W, data="SIMULATED (test)")
    ax = fig.axes[0]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(texts) == 6  # the diagonal is blank
    for (i, j), text in texts.items():
        assert text.get_text() == f"{100 * W.iloc[i, j]:.1f}%"
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(np.ma.filled(image, np.nan), 100 * W.to_numpy(), equal_nan=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(W.index)
    assert "SIMULATED (test)" in ax.get_title()
    # a k-NN table is accepted too, and gives the same figure text
    again = plot_win_rates(table).axes[0]
    assert sorted(t.get_text() for t in again.texts) == sorted(t.get_text() for t in ax.texts)


def test_win_rate_heatmap_refuses_a_non_square_matrix() -> None:
    with pytest.raises(InputError, match="square"):
        plot_win_rates(pd.DataFrame([[0.5, 0.4]], index=["a"], columns=["a", "b"]))


def test_enrichment_bars_are_minus_log10_q() -> None:
    universe = [f"g{i:03d}" for i in range(120)]
    sets = {f"set{j:02d}": universe[j * 6 : j * 6 + 12] for j in range(19)}
    table = enrichment(universe[:10] + universe[50:55], sets, universe)
    fig = plot_enrichment(table, top=5, data="SIMULATED (test)")
    ax = fig.axes[0]
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    assert len(bars.patches) == 5
    top = table.head(5)
    np.testing.assert_allclose(
        [p.get_width() for p in bars.patches], -np.log10(top["qval"].to_numpy())
    )
    assert [t.get_text() for t in ax.get_yticklabels()] == top["set"].tolist()
    assert "SIMULATED (test)" in ax.get_title()
    with pytest.raises(InputError, match="lacks columns"):
        plot_enrichment(table.drop(columns="qval"))
