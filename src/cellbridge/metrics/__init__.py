"""Metrics: pure array functions returning numbers or tidy DataFrames; one AnnData adapter."""

from cellbridge.metrics.adapter import embedding_metrics
from cellbridge.metrics.classification import AurocCI, auroc_with_ci
from cellbridge.metrics.comparison import improvement
from cellbridge.metrics.correlation import distance_correlation
from cellbridge.metrics.enrichment import label_enrichment
from cellbridge.metrics.integration import (
    batch_silhouette,
    batch_silhouette_per_label,
    silhouette_label,
    silhouette_samples,
)
from cellbridge.metrics.retrieval import recall_at_k
from cellbridge.metrics.separability import isolated_labels, kmeans_nmi_ari, separability

__all__ = [
    "AurocCI",
    "auroc_with_ci",
    "batch_silhouette",
    "batch_silhouette_per_label",
    "distance_correlation",
    "embedding_metrics",
    "improvement",
    "isolated_labels",
    "kmeans_nmi_ari",
    "label_enrichment",
    "recall_at_k",
    "separability",
    "silhouette_label",
    "silhouette_samples",
]
