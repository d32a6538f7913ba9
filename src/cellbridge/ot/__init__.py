"""Optimal transport: exact graph W1 and the kNN diffusion kernel. Pure array functions."""

from cellbridge.ot.graph import Graph
from cellbridge.ot.graph_emd import graph_emd, pairwise_graph_emd
from cellbridge.ot.kernel import diffusion_kernel

__all__ = ["Graph", "diffusion_kernel", "graph_emd", "pairwise_graph_emd"]
