"""The README's Python examples run as printed, and show what their comments say."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_an_example_per_method() -> None:
    blocks = _blocks()
    assert any("POPPY" in b for b in blocks) and any("bird" in b for b in blocks)
    assert all(len(b.strip().splitlines()) <= 15 for b in blocks)


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that save write here
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        # the small examples train one epoch on few patients: POPPY says so, rightly
        warnings.filterwarnings("ignore", message="fewer than B - 2 samples")
        exec(compile(_blocks()[index], f"README.md python block {index}", "exec"), namespace)
    if "knn" in namespace:  # the BiRD example: its error is below random's
        mae = namespace["knn"].table.groupby("embedding")["mae"].mean()  # type: ignore[attr-defined]
        assert mae["BiRD"] < mae["random"]
    if "model" in namespace:  # the POPPY example: (16, 128) unit rows
        z = namespace["z"]
        assert z.shape == (16, 128)  # type: ignore[attr-defined]
