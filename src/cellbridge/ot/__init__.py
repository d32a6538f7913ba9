"""Optimal transport: exact graph W1, the kNN diffusion kernel and log-domain Sinkhorn.

Pure array functions (numpy for W1 and the kernel, torch for Sinkhorn).
"""

from cellbridge.ot.graph import Graph
from cellbridge.ot.graph_emd import graph_emd, pairwise_graph_emd
from cellbridge.ot.kernel import diffusion_kernel
from cellbridge.ot.knn_emd import NeighbourDistances, knn_graph_emd
from cellbridge.ot.marginals import LabelMarginals, marginals_from_counts, marginals_from_labels
from cellbridge.ot.sinkhorn import (
    ot_alignment_loss,
    sinkhorn,
    sinkhorn_potentials,
    squared_euclidean_cost,
)

__all__ = [
    "Graph",
    "LabelMarginals",
    "NeighbourDistances",
    "diffusion_kernel",
    "graph_emd",
    "knn_graph_emd",
    "marginals_from_counts",
    "marginals_from_labels",
    "ot_alignment_loss",
    "pairwise_graph_emd",
    "sinkhorn",
    "sinkhorn_potentials",
    "squared_euclidean_cost",
]
