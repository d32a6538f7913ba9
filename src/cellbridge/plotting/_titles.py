"""Figure titles that carry the provenance of the data (simulated / semi-synthetic / real)."""

from __future__ import annotations

import textwrap

import pandas as pd


def table_provenance(frame: pd.DataFrame, data: str | None = None) -> str | None:
    """``data`` when given, else the first value of a ``data`` column, else
    ``frame.attrs["data"]``; ``None`` when the table records none."""
    if data is not None:
        return data
    if "data" in frame and frame["data"].notna().any():
        return str(frame["data"].dropna().iloc[0])
    value = frame.attrs.get("data")
    return str(value) if value else None


def with_provenance(title: str, data: str | None, width: int = 80) -> str:
    """The title, with ``data: <provenance>`` wrapped under it (``width`` characters)."""
    if not data:
        return title
    return textwrap.fill(title, width) + "\n" + textwrap.fill(f"data: {data}", width)
