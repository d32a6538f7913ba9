"""The hand-checked Cell Ontology ids of scanpy's ``pbmc68k_reduced`` ``bulk_labels``.

The ten labels name sorted PBMC populations ("CD14+ Monocyte", "CD34+", ...) that no
automatic rule maps safely; the table in ``data/pbmc68k_bulk_labels.tsv`` was reviewed
by hand against CL v2026-03-26, with the reason for each choice in its ``note`` column
(see ``docs/ontology.md``).
"""

from __future__ import annotations

import csv
import io
from importlib import resources

__all__ = ["pbmc68k_label_mapping", "pbmc68k_label_table"]

_TABLE = "pbmc68k_bulk_labels.tsv"


def pbmc68k_label_table() -> list[dict[str, str]]:
    """The rows of the mapping table: ``label``, ``cl_id``, ``cl_label``, ``note``."""
    text = (resources.files("cellbridge.ontology") / "data" / _TABLE).read_text(encoding="utf-8")
    return [dict(row) for row in csv.DictReader(io.StringIO(text), delimiter="\t")]


def pbmc68k_label_mapping() -> dict[str, str]:
    """``bulk_labels`` label -> CL id, for :func:`~cellbridge.ontology.map_labels`.

    Examples
    --------
    >>> pbmc68k_label_mapping()["CD14+ Monocyte"]
    'CL:0001054'
    """
    return {row["label"]: row["cl_id"] for row in pbmc68k_label_table()}
