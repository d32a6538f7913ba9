"""Shared POPPY fixtures: the embedded semi-synthetic pbmc patients, split by patient."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from anndata import AnnData

from cellbridge.data import log1p_cpm, pbmc_patients, stack_profiles
from cellbridge.poppy import sample_similarity


@dataclass
class Split:
    cells_train: AnnData
    cells_test: AnnData
    bulk_train: AnnData
    bulk_test: AnnData
    similarity_train: AnnData
    emd_test: np.ndarray


def make_split(n_patients: int, cells_per_patient: int, k: int, seed: int = 0) -> Split:
    """Train on 2/3 of the patients (pseudobulk + in-silico bulk), test on the rest."""
    data = pbmc_patients(n_patients=n_patients, cells_per_patient=cells_per_patient, seed=seed)
    samples = np.asarray(data.pseudobulk.obs_names)
    test = set(np.random.default_rng(seed).permutation(samples)[: n_patients // 3])
    train = [s for s in samples if s not in test]
    held = [s for s in samples if s in test]
    in_train = data.cells.obs["sample"].isin(train).to_numpy()
    cells_train, cells_test = data.cells[in_train].copy(), data.cells[~in_train].copy()
    bulk_train = stack_profiles(
        {
            "pseudobulk": data.pseudobulk[train].copy(),
            "in-silico bulk": log1p_cpm(data.insilico_bulk[train].copy()),
        }
    )
    bulk_test = data.pseudobulk[held].copy()
    emd = sample_similarity(cells_test, k=min(5, len(held) - 1)).obsp["emd"]
    return Split(
        cells_train, cells_test, bulk_train, bulk_test, sample_similarity(cells_train, k=k), emd
    )


@pytest.fixture(scope="session")
def tiny() -> Split:
    """12 patients x 30 cells: for mechanics (resume, save/load), not for quality."""
    return make_split(12, 30, k=7)
