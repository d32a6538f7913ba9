"""POPPY: bulk <-> single-cell alignment supervised by Cell Ontology transport."""

from cellbridge.poppy.loss import (
    ContrastiveLoss,
    contrastive_loss_terms,
    multi_positive_contrastive_loss,
)
from cellbridge.poppy.sampler import CrossCohortSampler, sample_batch
from cellbridge.poppy.similarity import ontology_graph_metric, sample_similarity

__all__ = [
    "ContrastiveLoss",
    "CrossCohortSampler",
    "contrastive_loss_terms",
    "multi_positive_contrastive_loss",
    "ontology_graph_metric",
    "sample_batch",
    "sample_similarity",
]
