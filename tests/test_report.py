"""The self-contained HTML report: figures embedded as PNG, tables from DataFrames,
nothing fetched from outside, text escaped, written atomically."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from tests.conftest import CHROMIUM_MISSING, Renderer

from cellbridge.errors import InputError
from cellbridge.report import ReportSection, render_report, write_report


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.tables = 0
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values)
        if tag == "table":
            self.tables += 1
        if tag == "script":
            self.scripts += 1
        for key in ("href", "src"):
            value = values.get(key) or ""
            if value.startswith(("http:", "https:", "//")):
                self.links.append(value)


def parse(text: str) -> _Collect:
    parser = _Collect()
    parser.feed(text)
    return parser


def pngs(parser: _Collect) -> list[bytes]:
    out = []
    for image in parser.images:
        src = image["src"] or ""
        assert src.startswith("data:image/png;base64,"), src[:40]
        out.append(base64.b64decode(src.split(",", 1)[1]))
    return out


def test_figures_and_tables_are_embedded(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    on_disk = tmp_path / "f.png"
    fig.savefig(on_disk)
    table = pd.DataFrame({"auroc": [0.91234, 0.5]}, index=["BiRD", "random"])
    sections = [
        ReportSection("A <b>title</b>", ["x < y & z"], [("live", fig), ("file", on_disk)]),
        ReportSection("Tables", tables=[("scores", table)]),
    ]
    text = render_report(sections, title="t", provenance=["SIMULATED screen"])
    parsed = parse(text)
    images = pngs(parsed)
    assert len(images) == 2 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in images)
    assert images[1] == on_disk.read_bytes()
    assert parsed.tables == 1 and "0.9123" in text and "BiRD" in text
    assert parsed.links == [] and parsed.scripts == 0
    assert "A &lt;b&gt;title&lt;/b&gt;" in text and "x &lt; y &amp; z" in text
    assert "SIMULATED screen" in text
    plt.close(fig)
    path = write_report(tmp_path / "r.html", sections, provenance=["SIMULATED"])
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_every_figure_renders_in_headless_chromium(
    tmp_path: Path, rendered_images: Renderer | None
) -> None:
    if rendered_images is None:
        pytest.skip(CHROMIUM_MISSING)
    figures = []
    for k in range(3):
        fig, ax = plt.subplots()
        ax.bar([0, 1], [k, 1])
        figures.append((f"figure {k}", fig))
    path = write_report(tmp_path / "r.html", [ReportSection("s", figures=figures)])
    for _, fig in figures:
        plt.close(fig)
    assert rendered_images(path, tmp_path) == (3, 3)


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        render_report([], title="t")
    fake = tmp_path / "not.png"
    fake.write_text("hello")
    with pytest.raises(InputError, match="PNG"):
        render_report([ReportSection("s", figures=[("x", fake)])], title="t")
