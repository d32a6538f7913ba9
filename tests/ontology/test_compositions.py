"""Propagated compositions (POPPY §2.1, A.1) against a brute-force count."""

from __future__ import annotations

import logging

import anndata
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.errors import InputError
from cellbridge.ontology import (
    Ontology,
    OntologyGraph,
    assign_programs,
    compositions,
    compositions_from_proportions,
    load_cell_ontology,
    prune,
)

ROOT = "CL:0000000"
# Labels in several spellings, so mapping runs inside the property test too.
POOL = {
    "B cell": "CL:0000236",
    "CL:0000084": "CL:0000084",
    "natural killer cell": "CL:0000623",
    "CD14-positive monocyte": "CL:0001054",
    "dendritic cell": "CL:0000451",
    "CL:0000792": "CL:0000792",
    "naive thymus-derived CD8-positive, alpha-beta T cell": "CL:0000900",
    "neuron": "CL:0000540",
    "hepatocyte": "CL:0000182",
    "T lymphocyte": "CL:0000084",
}


def _adata(samples: list[str], labels: list[str]) -> anndata.AnnData:
    obs = pd.DataFrame(
        {"sample": samples, "cell_type": labels},
        index=[f"c{i}" for i in range(len(labels))],
    )
    return anndata.AnnData(obs=obs)


def _brute_force(cl: Ontology, samples: list[str], types: list[str], node: str, s: str) -> float:
    cells = [t for smp, t in zip(samples, types, strict=True) if smp == s]
    hits = sum(node == t or node in cl.ancestors(t) for t in cells)
    return hits / len(cells)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.sampled_from(sorted(POOL))),
        min_size=1,
        max_size=40,
    )
)
def test_matches_brute_force(cells: list[tuple[str, str]]) -> None:
    cl = load_cell_ontology()
    samples = [s for s, _ in cells]
    labels = [lab for _, lab in cells]
    types = [POOL[lab] for lab in labels]
    comp = compositions(_adata(samples, labels))
    assert comp.proportions.index.tolist() == sorted(set(samples))
    assert comp.counts.to_dict() == {s: samples.count(s) for s in set(samples)}
    expected_nodes = {ROOT}.union(*({t} | cl.ancestors(t) for t in types))
    assert set(comp.proportions.columns) == expected_nodes
    for s in comp.proportions.index:
        for node in comp.proportions.columns:
            got = comp.proportions.loc[s, node]
            assert got == pytest.approx(_brute_force(cl, samples, types, node, s), abs=1e-12)
    assert (comp.proportions[ROOT] == 1.0).all()
    # A parent holds at least what each child holds.
    values = comp.proportions.to_numpy()
    child, parent = comp.graph.edges[:, 0], comp.graph.edges[:, 1]
    assert (values[:, parent] >= values[:, child] - 1e-12).all()
    signals = comp.signals()
    assert signals.dtype == np.float64
    np.testing.assert_allclose(signals.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(signals, values / values.sum(axis=1, keepdims=True))


def test_programs_count_members_under_their_type() -> None:
    labels = ["B cell", "B cell", "B cell", "T cell", "T cell", "B cell"]
    samples = ["s1", "s1", "s1", "s1", "s2", "s2"]
    adata = _adata(samples, labels)
    member = pd.DataFrame(
        {"MP1": [True, True, False, True, False, False], "MP2": [False] * 5 + [True]},
        index=adata.obs_names,
    )
    comp = compositions(adata, programs=member)
    props = comp.proportions
    assert props.loc["s1", "CL:0000236/program:MP1"] == pytest.approx(2 / 4)
    assert props.loc["s1", "CL:0000084/program:MP1"] == pytest.approx(1 / 4)
    assert props.loc["s2", "CL:0000236/program:MP2"] == pytest.approx(1 / 2)
    assert "CL:0000084/program:MP2" not in props.columns  # no T cell is in MP2
    # Program members are not counted twice in the types above them.
    assert props.loc["s1", "CL:0000236"] == pytest.approx(3 / 4)
    assert (props[ROOT] == 1.0).all()


def test_programs_from_loadings_end_to_end() -> None:
    rng = np.random.default_rng(4)
    adata = _adata(["s1"] * 20 + ["s2"] * 20, ["B cell"] * 40)
    loadings = pd.DataFrame({"MP1": rng.normal(size=40)}, index=adata.obs_names)
    member = assign_programs(loadings)
    comp = compositions(adata, programs=member)
    for s in ("s1", "s2"):
        expected = member.loc[adata.obs["sample"] == s, "MP1"].mean()
        assert comp.proportions.loc[s, "CL:0000236/program:MP1"] == pytest.approx(expected)


def test_shared_graph_and_drop(caplog: pytest.LogCaptureFixture) -> None:
    cl = load_cell_ontology()
    graph = prune(cl, ["CL:0000236", "CL:0000084", "CL:0000623"])
    adata = _adata(["a", "a", "a", "b"], ["B cell", "weird", "weird", "T cell"])
    with caplog.at_level(logging.WARNING, logger="cellbridge.ontology"):
        comp = compositions(adata, graph=graph, strict=False)
    assert comp.graph is graph
    assert list(comp.proportions.columns) == list(graph.nodes)
    assert comp.dropped == {"weird": 2}
    assert comp.counts.to_dict() == {"a": 1, "b": 1}
    assert comp.proportions.loc["a", "CL:0000623"] == 0.0
    assert "weird" in caplog.text


def test_categorical_samples_keep_category_order() -> None:
    adata = _adata(["y", "x", "y"], ["B cell"] * 3)
    adata.obs["sample"] = pd.Categorical(adata.obs["sample"], categories=["y", "x"])
    assert compositions(adata).proportions.index.tolist() == ["y", "x"]


def test_error_paths() -> None:
    adata = _adata(["a", "a", "b"], ["B cell", "T cell", "B cell"])
    with pytest.raises(InputError, match="'donor'"):
        compositions(adata, sample_key="donor")
    with pytest.raises(InputError, match=r"b \(1 cells\)"):
        compositions(adata, min_cells=2)
    with pytest.raises(InputError, match="min_cells"):
        compositions(adata, min_cells=0)
    with pytest.raises(InputError, match="'zebra'"):
        compositions(_adata(["a", "b"], ["B cell", "zebra"]))
    nan_labels = _adata(["a", "b", "b"], ["B cell", "T cell", "T cell"])
    nan_labels.obs["cell_type"] = pd.Series(
        [np.nan, "T cell", np.nan], index=nan_labels.obs_names, dtype=object
    )
    with pytest.raises(InputError, match=r"'a: 1', 'b: 1'"):
        compositions(nan_labels)
    dup = _adata(["a", "a"], ["B cell", "B cell"])
    dup.obs_names = ["c0", "c0"]
    with pytest.raises(InputError, match="'c0'"):
        compositions(dup)
    empty = _adata(["a", "a"], ["B cell", "B cell"])
    empty.obs["sample"] = pd.Categorical(["a", "a"], categories=["a", "ghost"])
    with pytest.raises(InputError, match=r"ghost \(0 cells\)"):
        compositions(empty)
    no_sample = _adata(["a", "a"], ["B cell", "B cell"])
    no_sample.obs["sample"] = pd.Series(["a", None], index=no_sample.obs_names, dtype=object)
    with pytest.raises(InputError, match="'c1'"):
        compositions(no_sample)
    only_weird = _adata(["a", "b"], ["B cell", "weird"])
    with pytest.raises(InputError, match=r"b \(0 cells\)"):
        compositions(only_weird, strict=False)


def test_graph_and_programs_must_fit_the_data() -> None:
    graph = prune(load_cell_ontology(), ["CL:0000236"])
    adata = _adata(["a", "a"], ["B cell", "T cell"])
    with pytest.raises(InputError, match="CL:0000084"):
        compositions(adata, graph=graph)
    member = pd.DataFrame({"MP1": [True, False]}, index=adata.obs_names)
    with pytest.raises(InputError, match="CL:0000236/program:MP1"):
        compositions(_adata(["a", "a"], ["B cell", "B cell"]), graph=graph, programs=member)
    with pytest.raises(InputError, match="'c1'"):
        compositions(adata, programs=member.iloc[:1])
    with pytest.raises(InputError, match="MP1"):
        compositions(adata, programs=member.astype(float))
    twice = pd.concat([member, member], axis=1)
    with pytest.raises(InputError, match="MP1"):
        compositions(adata, programs=twice)


def test_from_proportions_matches_brute_force() -> None:
    cl = load_cell_ontology()
    types = ["CL:0000236", "CL:0000084", "CL:0001054"]
    graph = prune(cl, [*types, "CL:0000623"])
    props = pd.DataFrame(
        [[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]], index=["bulk1", "bulk2"], columns=types
    )
    comp = compositions_from_proportions(props, graph)
    assert list(comp.proportions.columns) == list(graph.nodes)
    for s in props.index:
        for node in graph.nodes:
            expected = sum(props.loc[s, t] for t in types if node == t or node in cl.ancestors(t))
            assert comp.proportions.loc[s, node] == pytest.approx(expected, abs=1e-12)
    assert (comp.proportions[ROOT] == 1.0).all()
    assert comp.counts.tolist() == [0, 0] and comp.dropped == {}
    np.testing.assert_allclose(comp.signals().sum(axis=1), 1.0)


def test_from_proportions_rescales_within_tolerance() -> None:
    graph = prune(load_cell_ontology(), ["CL:0000236", "CL:0000084"])
    props = pd.DataFrame({"CL:0000236": [0.5 + 5e-7], "CL:0000084": [0.5]}, index=["b"])
    comp = compositions_from_proportions(props, graph)
    assert comp.proportions.loc["b", ROOT] == pytest.approx(1.0, abs=1e-12)
    assert comp.proportions.loc["b", "CL:0000084"] == pytest.approx(0.5 / (1 + 5e-7), abs=1e-12)


def test_types_must_lie_below_the_graph_root() -> None:
    # Hand-built graph: B cell is a node but has no edge to the root.
    graph = OntologyGraph((ROOT, "CL:0000236"), ("cell", "B cell"), np.zeros((0, 2)), (), 0)
    props = pd.DataFrame({"CL:0000236": [1.0]}, index=["b"])
    with pytest.raises(InputError, match="CL:0000236"):
        compositions_from_proportions(props, graph)
    with pytest.raises(InputError, match="CL:0000236"):
        compositions(_adata(["a"], ["B cell"]), graph=graph)


def test_from_proportions_duplicate_names() -> None:
    graph = prune(load_cell_ontology(), ["CL:0000236"])
    props = pd.DataFrame([[0.5, 0.5]], index=["b"], columns=["CL:0000236", "CL:0000236"])
    with pytest.raises(InputError, match="CL:0000236"):
        compositions_from_proportions(props, graph)


@pytest.mark.parametrize(
    ("row", "columns", "expected"),
    [
        ([0.5, 0.6], ["CL:0000236", "CL:0000084"], "bulk1"),
        ([-0.5, 1.5], ["CL:0000236", "CL:0000084"], "bulk1"),
        ([np.nan, 1.0], ["CL:0000236", "CL:0000084"], "bulk1"),
        ([0.5, 0.5], ["CL:0000236", "CL:0000540"], "CL:0000540"),
        ([0.5, 0.5], ["CL:0000236", "CL:0000236/program:MP1"], "program:MP1"),
    ],
)
def test_from_proportions_errors(row: list[float], columns: list[str], expected: str) -> None:
    graph = prune(
        load_cell_ontology(), ["CL:0000236", "CL:0000084"], programs={"CL:0000236": ["MP1"]}
    )
    props = pd.DataFrame([[0.5, 0.5], row], index=["ok", "bulk1"], columns=columns)
    with pytest.raises(InputError, match=expected) as err:
        compositions_from_proportions(props, graph)
    assert "'ok" not in str(err.value)
