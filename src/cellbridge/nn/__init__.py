"""Torch building blocks: attention-MIL pooling, projection heads, POPPY's encoders."""

from cellbridge.nn.encoders import BulkTokenEncoder, CellSetEncoder, Standardize
from cellbridge.nn.heads import ProjectionHead
from cellbridge.nn.pooling import AttentionPool, pad_sets

__all__ = [
    "AttentionPool",
    "BulkTokenEncoder",
    "CellSetEncoder",
    "ProjectionHead",
    "Standardize",
    "pad_sets",
]
