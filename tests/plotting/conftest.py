"""Shared by the figure tests."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import pytest


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """Figures stay open in pyplot until closed; more than 20 open would warn."""
    yield
    plt.close("all")
