"""Data construction and the embedded demo data."""

from cellbridge.data.datasets import pbmc68k, pbmc_patients

__all__ = ["pbmc68k", "pbmc_patients"]
