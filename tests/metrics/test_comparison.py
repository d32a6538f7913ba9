"""Percent change against a baseline: closed forms, joins on names, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellbridge.errors import InputError
from cellbridge.metrics import improvement


def table(
    values: list[float], subsets: tuple[str, ...] = ("within", "across", "all")
) -> pd.DataFrame:
    return pd.DataFrame({"metric": "corr", "subset": list(subsets), "value": values})


def test_closed_form_and_negative_baseline() -> None:
    got = improvement(table([0.52, 0.1, 0.8]), table([0.4, -0.1, 0.8]))
    assert got.columns.tolist() == [
        "metric",
        "subset",
        "new",
        "baseline",
        "change",
        "percent_change",
    ]
    # (0.52 - 0.4) / 0.4 = +30%; (0.1 - -0.1) / |-0.1| = +200%; no change = 0%
    np.testing.assert_allclose(got["percent_change"], [30.0, 200.0, 0.0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["change"], [0.12, 0.2, 0.0], rtol=1e-12, atol=1e-15)


def test_joins_on_names_not_row_order() -> None:
    new = table([0.5, 0.2, 0.9])
    old = table([0.25, 0.1, 0.9]).iloc[::-1]
    got = improvement(new, old)
    assert got["subset"].tolist() == ["within", "across", "all"]
    np.testing.assert_allclose(got["percent_change"], [100.0, 100.0, 0.0], atol=1e-12)


def test_nan_stays_nan() -> None:
    got = improvement(table([np.nan, 0.2, 0.3]), table([0.1, np.nan, 0.3]))
    assert got["percent_change"].isna().tolist() == [True, True, False]


def test_custom_keys_and_value_column() -> None:
    new = pd.DataFrame({"k": [1, 5], "recall": [0.5, 0.9]})
    old = pd.DataFrame({"k": [5, 1], "recall": [0.6, 0.25]})
    got = improvement(new, old, on=["k"], value="recall")
    np.testing.assert_allclose(got["percent_change"], [100.0, 50.0], rtol=1e-12)


@pytest.mark.parametrize(
    ("new", "old", "field"),
    [
        (table([0.1, 0.2, 0.3]), table([0.0, 0.2, 0.3]), "baseline"),
        (table([0.1, 0.2, 0.3]), table([0.1, 0.2], ("within", "across")), "baseline"),
        (table([0.1, 0.2], ("within", "across")), table([0.1, 0.2, 0.3]), "baseline"),
        (table([0.1, 0.2, 0.3], ("all", "all", "within")), table([0.1, 0.2, 0.3]), "new"),
        (table([0.1, 0.2, 0.3]).drop(columns="value"), table([0.1, 0.2, 0.3]), "new"),
        (table([0.1, 0.2, 0.3]), table([0.1, 0.2, 0.3]).drop(columns="subset"), "baseline"),
    ],
)
def test_bad_input(new: pd.DataFrame, old: pd.DataFrame, field: str) -> None:
    with pytest.raises(InputError) as err:
        improvement(new, old)
    assert err.value.field == field
