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
    principal_coordinate,
)


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
    fig = plot_bulk_embeddings(bulk)
    panels = [ax for ax in fig.axes if ax.get_title() or ax.get_xlabel() == "PC1"]
    assert len(panels) == 4  # 2 embeddings x (cohort, composition)
    for ax, key in zip(panels[:2], ("X_baseline", "X_poppy"), strict=True):
        xy = PCA(n_components=2, random_state=0).fit_transform(bulk.obsm[key])
        points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
        drawn = np.vstack(points)
        np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(xy, axis=0), atol=1e-9)
    one_row = plot_bulk_embeddings(bulk, truth_key=None)
    assert len([ax for ax in one_row.axes if ax.get_xlabel() == "PC1"]) == 2


def test_embedding_plot_refusals() -> None:
    bulk = _bulk()
    with pytest.raises(InputError, match="keys"):
        plot_bulk_embeddings(bulk, keys=("X_missing",))
    with pytest.raises(InputError, match="color_key"):
        plot_bulk_embeddings(bulk, color_key="batch")
    with pytest.raises(InputError, match="bulk"):
        plot_bulk_embeddings(bulk[:2].copy())
