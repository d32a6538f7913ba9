"""POPPY: bulk <-> single-cell alignment supervised by Cell Ontology transport."""

from cellbridge.poppy.similarity import ontology_graph_metric, sample_similarity

__all__ = ["ontology_graph_metric", "sample_similarity"]
