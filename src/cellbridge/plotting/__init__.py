"""matplotlib figures; each function returns a Figure and draws nothing on screen."""

from cellbridge.plotting.bird import plot_enrichment, plot_mae_ecdf, plot_win_rates
from cellbridge.plotting.bird_retrieval import (
    plot_cross_line_auroc,
    plot_retrieval_roc,
    plot_separability,
)
from cellbridge.plotting.phenotype import (
    plot_attribution,
    plot_cohort_auroc,
    plot_score_agreement,
)
from cellbridge.plotting.poppy import (
    plot_alignment_metrics,
    plot_bulk_embeddings,
    plot_recall_at_k,
    principal_coordinate,
)
from cellbridge.plotting.similarity import plot_similarity

__all__ = [
    "plot_alignment_metrics",
    "plot_attribution",
    "plot_bulk_embeddings",
    "plot_cohort_auroc",
    "plot_cross_line_auroc",
    "plot_enrichment",
    "plot_mae_ecdf",
    "plot_recall_at_k",
    "plot_retrieval_roc",
    "plot_score_agreement",
    "plot_separability",
    "plot_similarity",
    "plot_win_rates",
    "principal_coordinate",
]
