"""POPPY figures: what they draw is the data they were given; bad input is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from matplotlib.collections import PathCollection
from scipy.spatial.distance import pdist, squareform
from sklearn.decomposition import PCA

from cellbridge.errors import InputError
from cellbridge.plotting import (
    plot_alignment_metrics,
    plot_bulk_embeddings,
    plot_recall_at_k,
    principal_coordinate,
)
from cellbridge.plotting.poppy import project_2d


def _metrics() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "truth": ["cell types", "cell types", ""],
            "metric": ["distance_spearman", "distance_spearman", "recall@5"],
            "subset": ["within", "all", "bulk->cells"],
            "value": [0.7, 0.8, 0.6],
            "baseline": [0.5, 0.55, 0.3],
            "data": "semi-synthetic (test)",
        }
    )


def test_metric_bars_are_the_values_and_baselines() -> None:
    fig = plot_alignment_metrics(_metrics())
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, [0.5, 0.55, 0.3, 0.7, 0.8, 0.6])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        "distance_spearman · cell types · within",
        "distance_spearman · cell types · all",
        "recall@5 · bulk->cells",
    ]
    assert "semi-synthetic" in ax.get_title()


@pytest.mark.parametrize("drop", ["value", "baseline", "metric"])
def test_metric_plot_refuses_tables_without_its_columns(drop: str) -> None:
    with pytest.raises(InputError, match=drop):
        plot_alignment_metrics(_metrics().drop(columns=drop))
    with pytest.raises(InputError, match="empty"):
        plot_alignment_metrics(_metrics().iloc[:0])


@pytest.mark.parametrize("seed", range(5))
def test_principal_coordinate_recovers_points_on_a_line(seed: int) -> None:
    """Closed form: for points on a line, classical MDS returns them, centred, up to sign."""
    x = np.random.default_rng(seed).normal(size=12)
    coord = principal_coordinate(np.abs(x[:, None] - x[None, :]))
    centred = x - x.mean()
    sign = np.sign(coord @ centred)
    np.testing.assert_allclose(sign * coord, centred, atol=1e-9)
    assert coord[np.argmax(np.abs(coord))] > 0  # sign fixed, reproducible


def test_principal_coordinate_refuses_bad_matrices() -> None:
    with pytest.raises(InputError, match="distances"):
        principal_coordinate(np.zeros((3, 4)))
    with pytest.raises(InputError, match="distances"):
        principal_coordinate(np.array([[0.0, np.nan], [np.nan, 0.0]]))


def _bulk() -> AnnData:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 5))
    bulk = AnnData(
        X=X, obs=pd.DataFrame({"cohort": list("aaabbbccc")}, index=[f"s{i}" for i in range(9)])
    )
    bulk.obsm["X_baseline"] = rng.normal(size=(9, 6))
    bulk.obsm["X_poppy"] = rng.normal(size=(9, 4))
    bulk.obsp["emd"] = squareform(pdist(X))
    return bulk


def test_embedding_panels_show_the_pca_of_each_embedding() -> None:
    bulk = _bulk()
    fig = plot_bulk_embeddings(bulk, projection="pca")
    panels = [ax for ax in fig.axes if ax.get_title() or ax.get_xlabel() == "PC1"]
    assert len(panels) == 4  # 2 embeddings x (cohort, composition)
    for ax, key in zip(panels[:2], ("X_baseline", "X_poppy"), strict=True):
        xy = PCA(n_components=2, random_state=0).fit_transform(bulk.obsm[key])
        points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
        drawn = np.vstack(points)
        np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(xy, axis=0), atol=1e-9)
    one_row = plot_bulk_embeddings(bulk, truth_key=None, projection="pca")
    assert len([ax for ax in one_row.axes if ax.get_xlabel() == "PC1"]) == 2


def test_umap_panels_separate_what_the_embedding_separates() -> None:
    """The default projection is UMAP (seeded: the same points twice); two clusters far
    apart in an embedding stay apart in its panel, and the bottom row is coloured by the
    values of ``value_key``."""
    rng = np.random.default_rng(1)
    n = 24
    bulk = AnnData(
        X=np.zeros((n, 2)),
        obs=pd.DataFrame(
            {"cohort": ["a", "b"] * (n // 2), "t_cell_fraction": rng.random(n)},
            index=[f"s{i}" for i in range(n)],
        ),
    )
    cluster = np.repeat([0, 1], n // 2)
    bulk.obsm["X_baseline"] = rng.normal(size=(n, 8))
    bulk.obsm["X_poppy"] = rng.normal(size=(n, 8)) + 12.0 * cluster[:, None]
    fig = plot_bulk_embeddings(bulk, value_key="t_cell_fraction")
    panels = [ax for ax in fig.axes if ax.get_xlabel() == "UMAP1"]
    assert len(panels) == 4
    poppy_top = np.vstack(
        [c.get_offsets() for c in panels[1].collections if isinstance(c, PathCollection)]
    )
    xy = project_2d(bulk.obsm["X_poppy"])
    np.testing.assert_allclose(np.sort(poppy_top, axis=0), np.sort(xy, axis=0), atol=1e-6)
    np.testing.assert_allclose(project_2d(bulk.obsm["X_poppy"]), xy)  # seeded
    centre = xy[cluster == 0].mean(axis=0), xy[cluster == 1].mean(axis=0)
    nearest = np.argmin([np.linalg.norm(xy - c, axis=1) for c in centre], axis=0)
    assert (nearest == cluster).all()
    bottom = next(c for c in panels[3].collections if isinstance(c, PathCollection))
    np.testing.assert_allclose(bottom.get_array(), bulk.obs["t_cell_fraction"])
    with pytest.raises(InputError, match="value_key"):
        plot_bulk_embeddings(bulk, value_key="missing")
    bulk.obs.loc["s3", "t_cell_fraction"] = np.nan
    with pytest.raises(InputError, match="s3"):
        plot_bulk_embeddings(bulk, value_key="t_cell_fraction")
    with pytest.raises(InputError, match="projection"):
        project_2d(xy, method="tsne")


def test_recall_curve_is_the_table_and_chance() -> None:
    table = pd.DataFrame(
        {
            "metric": ["recall@10", "recall@1", "recall@5", "distance_spearman"],
            "subset": ["bulk->cells"] * 3 + ["all"],
            "n": [20, 20, 20, 190],
            "value": [0.8, 0.2, 0.7, 0.8],
            "baseline": [0.5, 0.05, 0.3, 0.6],
        }
    )
    ax = plot_recall_at_k(table).axes[0]
    poppy, baseline, chance = ax.get_lines()
    np.testing.assert_array_equal(poppy.get_xdata(), [1, 5, 10])
    np.testing.assert_allclose(poppy.get_ydata(), [0.2, 0.7, 0.8])
    np.testing.assert_allclose(baseline.get_ydata(), [0.05, 0.3, 0.5])
    np.testing.assert_allclose(chance.get_ydata(), [1 / 20, 5 / 20, 10 / 20])
    with pytest.raises(InputError, match="recall"):
        plot_recall_at_k(table.iloc[3:])


def test_embedding_plot_refusals() -> None:
    bulk = _bulk()
    with pytest.raises(InputError, match="keys"):
        plot_bulk_embeddings(bulk, keys=("X_missing",))
    with pytest.raises(InputError, match="color_key"):
        plot_bulk_embeddings(bulk, color_key="batch")
    with pytest.raises(InputError, match="bulk"):
        plot_bulk_embeddings(bulk[:2].copy())
