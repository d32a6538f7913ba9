"""Data: bulk constructions, perturbation replicates, splits, readers, the embedded data."""

from cellbridge.data.bulk import (
    cancer_normal_tumours,
    log1p_cpm,
    matched_bulk,
    mix_profiles,
    pseudobulk,
    random_tumours,
    stack_profiles,
)
from cellbridge.data.datasets import PbmcPatients, pbmc68k, pbmc_patients
from cellbridge.data.perturbation import (
    PerturbationTruth,
    admet_predictions,
    drug_table,
    perturbation_screen,
)
from cellbridge.data.readers import read_cells
from cellbridge.data.readers_3ca import read_3ca, read_3ca_study
from cellbridge.data.readers_tahoe import iter_tahoe_plates, read_tahoe_plate
from cellbridge.data.readers_tahoe_parquet import read_tahoe_parquet
from cellbridge.data.replicates import pseudobulk_replicates
from cellbridge.data.splits import (
    assert_disjoint,
    assign_split,
    leave_one_group_out,
    split_by_group,
)
from cellbridge.data.store import CellStore
from cellbridge.data.store_writer import CellStoreWriter

__all__ = [
    "CellStore",
    "CellStoreWriter",
    "PbmcPatients",
    "PerturbationTruth",
    "admet_predictions",
    "assert_disjoint",
    "assign_split",
    "cancer_normal_tumours",
    "drug_table",
    "iter_tahoe_plates",
    "leave_one_group_out",
    "log1p_cpm",
    "matched_bulk",
    "mix_profiles",
    "pbmc68k",
    "pbmc_patients",
    "perturbation_screen",
    "pseudobulk",
    "pseudobulk_replicates",
    "random_tumours",
    "read_3ca",
    "read_3ca_study",
    "read_cells",
    "read_tahoe_parquet",
    "read_tahoe_plate",
    "split_by_group",
    "stack_profiles",
]
