"""Splits by group (BiRD A.1): disjoint parts, sizes that follow the fractions, LOGO folds."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbridge.data.splits import (
    assert_disjoint,
    assign_split,
    leave_one_group_out,
    split_by_group,
)
from cellbridge.errors import InputError

HYP = settings(max_examples=60, deadline=None, derandomize=True)

group_lists = st.lists(st.text(min_size=1, max_size=4), min_size=3, max_size=60)
fraction_triples = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)).filter(
    lambda w: sum(w) > 0
)


def _fractions(weights: tuple[int, ...]) -> tuple[float, ...]:
    total = sum(weights)
    return tuple(w / total for w in weights)


@HYP
@given(groups=group_lists, weights=fraction_triples, seed=st.integers(0, 2**16))
def test_parts_are_disjoint_cover_all_groups_and_follow_the_fractions(
    groups: list[str], weights: tuple[int, int, int], seed: int
) -> None:
    fractions = _fractions(weights)
    distinct = sorted(set(groups))
    needed = sum(f > 0 for f in fractions)
    if len(distinct) < needed:
        with pytest.raises(InputError, match="non-empty parts"):
            split_by_group(groups, fractions=fractions, seed=seed)
        return
    split = split_by_group(groups, fractions=fractions, seed=seed)
    # every group exactly once, so no group is in two parts
    assert list(split.index) == distinct
    assert split.index.is_unique
    assert_disjoint(split)
    sizes = split.value_counts().reindex(["train", "val", "test"]).to_numpy()
    n = len(distinct)
    assert sizes.sum() == n
    target = np.array(fractions) * n
    assert ((sizes >= 1) | (target == 0)).all()
    assert (sizes[target == 0] == 0).all()
    if (target[target > 0] >= 1).all():
        assert (np.abs(sizes - target) < 1 + 1e-9).all()


@HYP
@given(groups=group_lists.filter(lambda g: len(set(g)) >= 3), seed=st.integers(0, 2**16))
def test_split_is_seeded_and_ignores_input_order(groups: list[str], seed: int) -> None:
    first = split_by_group(groups, seed=seed)
    again = split_by_group(list(reversed(groups)), seed=seed)
    pd.testing.assert_series_equal(first, again)


def test_known_sizes_and_seeds_differ() -> None:
    drugs = [f"drug{i:02d}" for i in range(48)]
    split = split_by_group(drugs, seed=0)
    # 38.4, 4.8, 4.8 -> floors 38, 4, 4; the two remainders of .8 get the two left over
    assert split.value_counts().to_dict() == {"train": 38, "val": 5, "test": 5}
    assert split_by_group(drugs[:10]).value_counts().to_dict() == {
        "train": 8,
        "val": 1,
        "test": 1,
    }
    # too few groups for plain rounding: 2.4, 0.3, 0.3 -> each non-zero part gets one
    assert split_by_group(["a", "b", "c"]).value_counts().to_dict() == {
        "train": 1,
        "val": 1,
        "test": 1,
    }
    assert not split_by_group(drugs, seed=1).equals(split)
    assert list(split.cat.categories) == ["train", "val", "test"]


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"fractions": (0.8, 0.1)}, "fractions", "0.8"),
        ({"fractions": (0.8, 0.3, -0.1)}, "fractions", "-0.1"),
        ({"fractions": (0.8, 0.1, 0.2)}, "fractions", "0.2"),
        ({"fractions": (0.8, float("nan"), 0.2)}, "fractions", "nan"),
        ({"names": ("train", "train", "test")}, "names", "'train'"),
    ],
)
def test_bad_fractions_and_names_are_refused(
    kwargs: dict[str, object], field: str, shown: str
) -> None:
    with pytest.raises(InputError, match=shown) as err:
        split_by_group([f"d{i}" for i in range(20)], **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_bad_groups_are_refused() -> None:
    with pytest.raises(InputError, match="non-empty parts") as err:
        split_by_group(["a", "b"])
    assert err.value.values == ["a", "b"]
    with pytest.raises(InputError, match="missing group labels"):
        split_by_group(["a", None, "b", "c"])
    with pytest.raises(InputError, match="mixed types") as err:
        split_by_group(["a", 1, "b", 2])
    assert err.value.values == ["int", "str"]
    # a zero fraction needs no group
    split = split_by_group(["a", "b"], fractions=(0.5, 0.5, 0.0))
    assert split.value_counts().to_dict() == {"train": 1, "val": 1, "test": 0}


def _replicates() -> AnnData:
    rows = [
        (drug, line, r)
        for drug in [f"drug{i:02d}" for i in range(20)] + ["DMSO"]
        for line in ("refA", "refB", "line1", "line2")
        for r in range(3)
    ]
    obs = pd.DataFrame(rows, columns=["drug", "cell_line", "replicate"])
    obs.index = [f"{d}|{c}|{r}" for d, c, r in rows]
    return AnnData(X=np.zeros((len(obs), 2), dtype=np.float32), obs=obs)


def test_assign_split_keeps_reference_lines_out_and_drugs_in_one_part(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adata = _replicates()
    split = assign_split(
        adata, group_key="drug", exclude=["refA", "refB"], exclude_key="cell_line", seed=3
    )
    parts = adata.obs["split"]
    assert list(parts.cat.categories) == ["train", "val", "test", "reference"]
    reference = adata.obs["cell_line"].isin(["refA", "refB"]).to_numpy()
    assert (parts[reference] == "reference").all()
    assert (parts[~reference] != "reference").all()
    # each drug of the evaluation lines sits in exactly the part split_by_group gave it
    evaluated = adata.obs[~reference]
    assert (
        evaluated["split"].astype(str) == split.loc[evaluated["drug"]].astype(str).to_numpy()
    ).all()
    assert_disjoint(adata, group_key="drug")
    assert split.value_counts().to_dict() == {"train": 17, "val": 2, "test": 2}
    assert adata.uns["split"]["excluded"] == ["refA", "refB"]
    with caplog.at_level(logging.INFO, logger="cellbridge.data.splits"):
        assign_split(adata, group_key="drug", seed=3)
    assert "replacing obs['split']" in caplog.text
    assert (adata.obs["split"] != "reference").all()


def test_assign_split_refuses_bad_input() -> None:
    adata = _replicates()
    with pytest.raises(InputError, match="do not occur") as err:
        assign_split(adata, exclude=["refA", "A549"], exclude_key="cell_line")
    assert err.value.values == ["A549"]
    with pytest.raises(InputError, match="not an obs column") as err:
        assign_split(adata, group_key="compound")
    assert err.value.values == ["compound"]
    with pytest.raises(InputError, match="one string"):
        assign_split(adata, exclude="refA", exclude_key="cell_line")
    with pytest.raises(InputError, match="also a part name"):
        assign_split(adata, excluded_name="test")
    assert "split" not in adata.obs


def test_assert_disjoint_names_the_leaking_groups() -> None:
    obs = pd.DataFrame(
        {
            "drug": ["a", "a", "b", "b", "c", "c"],
            "split": ["train", "test", "val", "val", "train", "reference"],
        }
    )
    with pytest.raises(InputError, match="1 groups are in more than one part") as err:
        assert_disjoint(obs)
    assert err.value.values == ["a: ['test', 'train']"]
    with pytest.raises(InputError, match="2 groups"):
        assert_disjoint(obs, ignore=())
    with pytest.raises(InputError, match="missing columns") as err:
        assert_disjoint(obs, group_key="compound")
    assert err.value.values == ["compound"]
    leaky = pd.Series(["train", "test"], index=["x", "x"])
    with pytest.raises(InputError, match="x: "):
        assert_disjoint(leaky)


@HYP
@given(labels=st.lists(st.sampled_from(["c1", "c2", "c3", "c4"]), min_size=1, max_size=40))
def test_logo_folds_partition_the_rows(labels: list[str]) -> None:
    if len(set(labels)) < 2:
        with pytest.raises(InputError, match="at least two groups"):
            leave_one_group_out(labels)
        return
    folds = leave_one_group_out(labels)
    assert [name for name, _, _ in folds] == sorted(set(labels))
    tests = np.concatenate([test for _, _, test in folds])
    assert sorted(tests.tolist()) == list(range(len(labels)))
    for name, train, test in folds:
        assert np.intersect1d(train, test).size == 0
        assert np.union1d(train, test).tolist() == list(range(len(labels)))
        assert {labels[i] for i in test} == {name}
        assert name not in {labels[i] for i in train}


def test_logo_refuses_missing_labels() -> None:
    with pytest.raises(InputError, match="missing group labels"):
        leave_one_group_out(pd.Series(["a", np.nan, "b"]))
