"""One self-contained HTML report: sections of text, figures (PNG, embedded) and tables.

Figures are embedded as base64 ``data:`` URIs and the style sheet is inline, so the file
opens anywhere without the run's directory or a network. Tables are rendered from the
DataFrames the API returns (``DataFrame.to_html``, values escaped).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from cellbridge._io import atomic_path
from cellbridge._version import __version__
from cellbridge.errors import InputError

__all__ = ["ReportSection", "render_report", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
.provenance { background: #fff4d6; border: 1px solid #e8c66a; padding: .6em 1em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
table.dataframe { border-collapse: collapse; font-size: .85em; margin: .8em 0; }
table.dataframe th, table.dataframe td { border: 1px solid #ccc; padding: .25em .5em;
       text-align: right; }
table.dataframe th { background: #f3f3f3; }
"""


@dataclass
class ReportSection:
    """One section of the report.

    Attributes
    ----------
    title
        Heading.
    text
        Paragraphs (plain text; escaped).
    figures
        ``(caption, figure)`` pairs: a matplotlib Figure or the path of a PNG file.
    tables
        ``(caption, DataFrame)`` pairs.
    """

    title: str
    text: list[str] = field(default_factory=list)
    figures: list[tuple[str, Figure | Path]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)


def _png(figure: Figure | Path) -> bytes:
    if isinstance(figure, Figure):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    data = Path(figure).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise InputError("figures", "is not a PNG file", values=[str(figure)])
    return data


def render_report(
    sections: list[ReportSection], *, title: str, provenance: list[str] | None = None
) -> str:
    """The report as one HTML string (figures embedded, no external resource).

    Parameters
    ----------
    sections
        The sections, in order; at least one.
    title
        Page title and heading.
    provenance
        Lines naming where the data came from, shown in a box under the heading.
    """
    if not sections:
        raise InputError("sections", "is empty", fix="pass at least one ReportSection")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>cellbridge {html.escape(__version__)}</p>",
    ]
    if provenance:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in provenance)
        parts.append(f'<div class="provenance"><strong>Data</strong><ul>{items}</ul></div>')
    for number, section in enumerate(sections, start=1):
        parts.append(f'<section id="s{number}"><h2>{html.escape(section.title)}</h2>')
        parts += [f"<p>{html.escape(text)}</p>" for text in section.text]
        for caption, figure in section.figures:
            encoded = base64.b64encode(_png(figure)).decode("ascii")
            label = html.escape(caption)
            parts.append(
                f'<figure><img alt="{label}" src="data:image/png;base64,{encoded}">'
                f"<figcaption>{label}</figcaption></figure>"
            )
        for caption, table in section.tables:
            parts.append(f"<p><strong>{html.escape(caption)}</strong></p>")
            parts.append(table.to_html(float_format=lambda v: f"{v:.4g}", border=0))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    path: str | Path,
    sections: list[ReportSection],
    *,
    title: str = "cellbridge report",
    provenance: list[str] | None = None,
) -> Path:
    """Write :func:`render_report` to ``path`` atomically; returns the path.

    Parameters
    ----------
    path
        The HTML file to write (replaced if it exists).
    sections, title, provenance
        As for :func:`render_report`.
    """
    text = render_report(sections, title=title, provenance=provenance)
    target = Path(path)
    with atomic_path(target) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return target
