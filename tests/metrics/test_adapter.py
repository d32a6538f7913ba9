"""The AnnData adapter reads its keys and returns what the array functions return."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from cellbridge.errors import InputError
from cellbridge.metrics import (
    batch_silhouette,
    distance_correlation,
    embedding_metrics,
    improvement,
)


@pytest.fixture
def bulk() -> ad.AnnData:
    rng = np.random.default_rng(0)
    n = 40
    comp = rng.dirichlet(np.ones(4), size=n)
    cohort = np.array(["c1", "c2", "c3", "c4"])[np.arange(n) % 4]
    assay = np.where(np.arange(n) % 3 == 0, "bulk", "pseudobulk")
    obs = pd.DataFrame(
        {"cohort": cohort, "assay": assay}, index=pd.Index([f"s{i}" for i in range(n)])
    )
    adata = ad.AnnData(X=rng.normal(size=(n, 3)).astype(np.float32), obs=obs)
    adata.obsm["X_poppy"] = comp @ rng.normal(size=(4, 6)) + 0.05 * rng.normal(size=(n, 6))
    adata.obsm["X_base"] = rng.normal(size=(n, 6)) + 2.0 * (cohort == "c1")[:, None]
    adata.obsp["emd"] = cdist(comp, comp, metric="cityblock")
    return adata


def direct(adata: ad.AnnData, key: str) -> pd.DataFrame:
    X = adata.obsm[key]
    cohorts = adata.obs["cohort"].to_numpy()
    corr = distance_correlation(X, adata.obsp["emd"], groups=cohorts)
    rows = [("distance_spearman", s, v) for s, v in zip(corr["subset"], corr["value"], strict=True)]
    rows.append(("batch_silhouette", "cohort", batch_silhouette(X, cohorts)))
    rows.append(("batch_silhouette", "assay", batch_silhouette(X, adata.obs["assay"].to_numpy())))
    return pd.DataFrame(rows, columns=["metric", "subset", "value"])


def test_matches_the_array_functions(bulk: ad.AnnData) -> None:
    got = embedding_metrics(bulk, assay_key="assay")
    assert got.columns.tolist() == ["metric", "subset", "n", "value", "note"]
    want = direct(bulk, "X_poppy")
    pd.testing.assert_frame_equal(got[["metric", "subset", "value"]], want)
    assert got["n"].tolist() == [4 * 45, 780 - 180, 780, 40, 40]
    assert (got["note"] == "").all()


def test_without_assay_has_no_assay_row(bulk: ad.AnnData) -> None:
    got = embedding_metrics(bulk)
    assert got["subset"].tolist() == ["within", "across", "all", "cohort"]


def test_baseline_side_by_side(bulk: ad.AnnData) -> None:
    got = embedding_metrics(bulk, baseline_key="X_base", assay_key="assay")
    assert got.columns.tolist() == [
        "metric",
        "subset",
        "n",
        "value",
        "note",
        "baseline",
        "change",
        "percent_change",
    ]
    new, old = direct(bulk, "X_poppy"), direct(bulk, "X_base")
    np.testing.assert_allclose(got["baseline"], old["value"], rtol=1e-12)
    np.testing.assert_allclose(
        got["percent_change"], improvement(new, old)["percent_change"], rtol=1e-12
    )
    # the composition-driven embedding preserves distances better than noise
    assert (got.loc[got["metric"] == "distance_spearman", "percent_change"] > 0).all()


@pytest.mark.parametrize(
    ("kwargs", "field", "available"),
    [
        ({"key": "X_scGPT"}, "key", "X_base"),
        ({"baseline_key": "X_nope"}, "baseline_key", "X_poppy"),
        ({"truth_key": "w1"}, "truth_key", "emd"),
        ({"cohort_key": "study"}, "cohort_key", "assay"),
        ({"assay_key": "platform"}, "assay_key", "cohort"),
    ],
)
def test_missing_keys_list_the_available_ones(
    bulk: ad.AnnData, kwargs: dict, field: str, available: str
) -> None:
    with pytest.raises(InputError) as err:
        embedding_metrics(bulk, **kwargs)
    assert err.value.field == field
    assert available in str(err.value)


def test_bad_values_are_refused(bulk: ad.AnnData) -> None:
    bulk.obsm["X_poppy"][3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        embedding_metrics(bulk)


def test_zero_baseline_keeps_the_row_with_a_note(
    bulk: ad.AnnData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cellbridge.metrics import adapter

    real = adapter.batch_silhouette

    def fake(X: np.ndarray, batch: np.ndarray) -> float:
        return 0.0 if X is bulk.obsm["X_base"] else real(X, batch)

    monkeypatch.setattr(adapter, "batch_silhouette", fake)
    got = embedding_metrics(bulk, baseline_key="X_base").set_index("subset")
    assert np.isnan(got.loc["cohort", "percent_change"])
    assert got.loc["cohort", "change"] == pytest.approx(got.loc["cohort", "value"])
    assert got.loc["cohort", "note"] == "baseline is 0: no percent change"
    assert got.loc["all", "note"] == ""
