"""sample_similarity: compositions -> exact W1 -> kernel, checked against oracles."""

from __future__ import annotations

import numpy as np
import ot
import pandas as pd
import pytest
from anndata import AnnData

from cellbridge.errors import InputError
from cellbridge.ontology import load_cell_ontology
from cellbridge.ot import diffusion_kernel
from cellbridge.poppy import ontology_graph_metric, proportion_similarity, sample_similarity


def _cells(assign: dict[str, list[str]]) -> AnnData:
    obs = pd.DataFrame(
        [(s, t) for s, types in assign.items() for t in types], columns=["sample", "cell_type"]
    )
    obs.index = [f"c{i}" for i in range(len(obs))]
    return AnnData(X=np.zeros((len(obs), 2), dtype=np.float32), obs=obs)


@pytest.fixture(scope="module")
def small() -> AnnData:
    rng = np.random.default_rng(0)
    types = ["CL:0000236", "CL:0000624", "CL:0000625", "CL:0000623", "CL:0001054", "CL:0000451"]
    assign = {f"s{i}": list(rng.choice(types, size=int(rng.integers(5, 30)))) for i in range(12)}
    return _cells(assign)


def test_matches_pot_on_shortest_path_metric(small: AnnData) -> None:
    sim = sample_similarity(small, k=4)
    info = sim.uns["cellbridge"]
    edges = np.asarray(info["graph_edges_child_parent"])
    n = sim.n_vars
    A = np.full((n, n), np.inf)
    np.fill_diagonal(A, 0)
    A[edges[:, 0], edges[:, 1]] = A[edges[:, 1], edges[:, 0]] = 1
    # Floyd-Warshall written out: an oracle independent of scipy's shortest_path.
    for m in range(n):
        A = np.minimum(A, A[:, [m]] + A[[m], :])
    P = np.ascontiguousarray(sim.layers["signal"])
    expected = np.array([[ot.emd2(P[i], P[j], A) for j in range(len(P))] for i in range(len(P))])
    np.testing.assert_allclose(sim.obsp["emd"], expected, atol=1e-9, rtol=0)
    K = diffusion_kernel(expected, k=4)
    np.testing.assert_allclose(sim.obsp["similarity"].toarray(), K.toarray(), atol=1e-9)


def test_composition_columns_are_propagated_fractions(small: AnnData) -> None:
    sim = sample_similarity(small, k=3)
    onto = load_cell_ontology()
    for s in ["s0", "s5"]:
        types = small.obs.loc[small.obs["sample"] == s, "cell_type"].tolist()
        for node in ["CL:0000000", "CL:0000084", "CL:0000236"]:
            expected = np.mean([node == t or node in onto.ancestors(t) for t in types])
            assert sim[s, node].X.item() == pytest.approx(expected)
    np.testing.assert_allclose(sim.layers["signal"].sum(axis=1), 1.0)


def test_identical_compositions_have_zero_distance_and_full_similarity() -> None:
    cells = _cells(
        {
            "a": ["CL:0000236", "CL:0000623"],
            "b": ["CL:0000623", "CL:0000236"],
            "c": ["CL:0000236", "CL:0000236", "CL:0000451"],
        }
    )
    sim = sample_similarity(cells, k=1)
    D = sim.obsp["emd"]
    assert D[0, 1] == pytest.approx(0.0, abs=1e-12)
    assert D[0, 2] > 0
    assert sim.obsp["similarity"][0, 1] == pytest.approx(1.0)


def test_metric_graph_is_the_pruned_ontology(small: AnnData) -> None:
    sim = sample_similarity(small, k=3)
    from cellbridge.ontology import compositions

    comp = compositions(small)
    g = ontology_graph_metric(comp.graph)
    assert g.n_nodes == sim.n_vars
    assert g.n_edges == len(sim.uns["cellbridge"]["graph_relations"])
    assert not g.is_tree()  # T cells have several parents in the CL


def test_unknown_labels_are_refused_with_the_field_named() -> None:
    cells = _cells({"a": ["B cell", "not a cell type at all"], "b": ["B cell"]})
    with pytest.raises(InputError, match="not a cell type at all"):
        sample_similarity(cells, k=1)


def test_non_strict_drops_and_reports_counts() -> None:
    cells = _cells({"a": ["B cell", "mystery", "mystery"], "b": ["natural killer cell"]})
    sim = sample_similarity(cells, k=1, strict=False)
    assert sim.uns["cellbridge"]["dropped_cells"] == {"mystery": 2}
    assert sim.obs.loc["a", "n_cells"] == 1


def test_proportions_give_the_same_similarity_as_the_counted_cells(small: AnnData) -> None:
    """Oracle: a sample known by its cell-type fractions is the sample of counted cells."""
    counted = sample_similarity(small, k=4)
    fractions = pd.crosstab(small.obs["sample"], small.obs["cell_type"], normalize="index")
    fractions.index = fractions.index.astype(str)
    fractions.columns = fractions.columns.astype(str)
    from_props = proportion_similarity(fractions, k=4)
    assert list(from_props.obs_names) == list(counted.obs_names)
    assert list(from_props.var_names) == list(counted.var_names)
    np.testing.assert_allclose(from_props.obsp["emd"], counted.obsp["emd"], atol=1e-9)
    np.testing.assert_allclose(
        from_props.obsp["similarity"].toarray(), counted.obsp["similarity"].toarray(), atol=1e-9
    )
    assert (from_props.obs["n_cells"] == 0).all()


def test_proportions_that_do_not_sum_to_one_are_refused() -> None:
    props = pd.DataFrame({"CL:0000236": [0.5, 0.7], "CL:0000624": [0.5, 0.2]}, index=["t0", "t1"])
    with pytest.raises(InputError, match="t1"):
        proportion_similarity(props, k=1)


def test_knn_distances_give_the_same_kernel_without_the_full_matrix() -> None:
    """distances='knn' (large cohorts): the kernel and each row's k nearest are those of
    the full matrix, bit for bit."""
    rng = np.random.default_rng(5)
    types = ["CL:0000236", "CL:0000624", "CL:0000625", "CL:0000623", "CL:0001054", "CL:0000451"]
    assign = {f"s{i}": list(rng.choice(types, size=int(rng.integers(5, 40)))) for i in range(60)}
    assign["s59"] = assign["s0"]  # a duplicate: distance 0, stored explicitly
    cells = _cells(assign)
    full = sample_similarity(cells, k=6)
    knn = sample_similarity(cells, k=6, distances="knn", n_jobs=2)
    assert "emd" not in knn.obsp
    np.testing.assert_array_equal(
        knn.obsp["similarity"].toarray(), full.obsp["similarity"].toarray()
    )
    D = full.obsp["emd"].copy()
    np.fill_diagonal(D, np.inf)
    sigma = np.partition(D, 5, axis=1)[:, 5]
    np.testing.assert_array_equal(knn.obs["sigma"].to_numpy(), sigma)
    stored = knn.obsp["emd_knn"].tocoo()
    assert np.array_equal(
        np.sort(stored.row * 60 + stored.col), np.flatnonzero((sigma[:, None] >= D).ravel())
    )
    np.testing.assert_array_equal(stored.data, full.obsp["emd"][stored.row, stored.col])
    assert knn.uns["cellbridge"]["params"]["distances"] == "knn"


def test_knn_distances_refuse_a_dask_client_and_unknown_modes(small: AnnData) -> None:
    with pytest.raises(InputError, match="client"):
        sample_similarity(small, k=4, distances="knn", client="local")
    with pytest.raises(InputError, match="distances"):
        sample_similarity(small, k=4, distances="some")  # type: ignore[arg-type]
