"""aggregate_attribution against a pandas oracle; refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellbridge.errors import InputError
from cellbridge.poppy import aggregate_attribution


def _table(seed: int = 0, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "cell_type": rng.choice(["a", "b", "c", "d"], size=n),
            "responder_score": rng.random(n),
        },
        index=[f"c{i}" for i in range(n)],
    )


@pytest.mark.parametrize("seed", range(4))
def test_per_type_statistics_equal_pandas(seed: int) -> None:
    table = _table(seed)
    out = aggregate_attribution(table)
    grouped = table.groupby("cell_type")["responder_score"]
    oracle = pd.DataFrame(
        {
            "n_cells": grouped.size(),
            "mean": grouped.mean(),
            "median": grouped.median(),
            "q25": grouped.quantile(0.25),
            "q75": grouped.quantile(0.75),
        }
    )
    pd.testing.assert_frame_equal(
        out.sort_index(), oracle.sort_index(), check_names=False, check_dtype=False
    )
    assert out["mean"].is_monotonic_decreasing


def test_programs_count_a_cell_in_each_program_it_belongs_to() -> None:
    table = _table(1, n=6)
    member = pd.DataFrame(
        {"P1": [True, True, False, False, True, False], "P2": [True] * 6},
        index=table.index,
    )
    out = aggregate_attribution(table, by=member)
    scores = table["responder_score"].to_numpy()
    assert out.loc["P1", "n_cells"] == 3
    assert out.loc["P1", "mean"] == pytest.approx(scores[[0, 1, 4]].mean())
    assert out.loc["P2", "mean"] == pytest.approx(scores.mean())


def test_refusals() -> None:
    table = _table()
    with pytest.raises(InputError, match="score_key"):
        aggregate_attribution(table, score_key="missing")
    with pytest.raises(InputError, match="by"):
        aggregate_attribution(table, by="tissue")
    with pytest.raises(InputError, match="c0"):
        aggregate_attribution(table, by=pd.DataFrame({"P": [True]}, index=["x"]))
    bad = table.copy()
    bad.iloc[2, 1] = np.nan
    with pytest.raises(InputError, match="c2"):
        aggregate_attribution(bad)
