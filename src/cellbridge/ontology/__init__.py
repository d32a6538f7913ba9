"""Cell Ontology: loading, label mapping, pruning, gene programs and composition signals.

POPPY §2.1 / A.1: per-sample cell-type (and gene-program) proportions become signals on
the pruned Cell Ontology graph, propagated so that the root "cell" holds 1.0.
"""

from cellbridge.ontology.compositions import compositions
from cellbridge.ontology.core import Ontology, Term
from cellbridge.ontology.graph import OntologyGraph, prune
from cellbridge.ontology.io import (
    available_cell_ontology_versions,
    load_cell_ontology,
    read_ontology,
)
from cellbridge.ontology.mapping import LabelMapping, map_labels, normalize_label
from cellbridge.ontology.pbmc68k import pbmc68k_label_mapping, pbmc68k_label_table
from cellbridge.ontology.programs import (
    assign_programs,
    is_program_node,
    nmf_programs,
    program_node_id,
)
from cellbridge.ontology.signals import Compositions, compositions_from_proportions

__all__ = [
    "Compositions",
    "LabelMapping",
    "Ontology",
    "OntologyGraph",
    "Term",
    "assign_programs",
    "available_cell_ontology_versions",
    "compositions",
    "compositions_from_proportions",
    "is_program_node",
    "load_cell_ontology",
    "map_labels",
    "nmf_programs",
    "normalize_label",
    "pbmc68k_label_mapping",
    "pbmc68k_label_table",
    "program_node_id",
    "prune",
    "read_ontology",
]
