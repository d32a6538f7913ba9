"""Torch building blocks: attention-MIL pooling, projection heads, POPPY's encoders and
phenotype head."""

from cellbridge.nn.cross_attention import PhenotypeHead
from cellbridge.nn.encoders import BulkTokenEncoder, CellSetEncoder, Standardize
from cellbridge.nn.heads import ProjectionHead
from cellbridge.nn.pooling import AttentionPool, pad_sets

__all__ = [
    "AttentionPool",
    "BulkTokenEncoder",
    "CellSetEncoder",
    "PhenotypeHead",
    "ProjectionHead",
    "Standardize",
    "pad_sets",
]
