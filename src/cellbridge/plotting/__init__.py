"""matplotlib figures; each function returns a Figure and draws nothing on screen."""

from cellbridge.plotting.poppy import (
    plot_alignment_metrics,
    plot_bulk_embeddings,
    principal_coordinate,
)
from cellbridge.plotting.similarity import plot_similarity

__all__ = [
    "plot_alignment_metrics",
    "plot_bulk_embeddings",
    "plot_similarity",
    "principal_coordinate",
]
