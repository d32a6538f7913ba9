"""Frozen embedding sources (obsm key, PCA stand-in) and frozen gene-token encoders."""

from cellbridge.encoders.embeddings import bulk_embeddings, cell_embeddings, log_normalised
from cellbridge.encoders.frozen import freeze
from cellbridge.encoders.standin import PCAStandIn
from cellbridge.encoders.tokens import GeneTokenEncoder, ScaledGeneEmbeddings, align_genes

__all__ = [
    "GeneTokenEncoder",
    "PCAStandIn",
    "ScaledGeneEmbeddings",
    "align_genes",
    "bulk_embeddings",
    "cell_embeddings",
    "freeze",
    "log_normalised",
]
