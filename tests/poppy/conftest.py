"""Shared POPPY fixtures: the embedded semi-synthetic pbmc patients, split by patient."""

from __future__ import annotations

import pytest

from cellbridge.poppy import PbmcSplit, pbmc_split


def make_split(n_patients: int, cells_per_patient: int, k: int, seed: int = 0) -> PbmcSplit:
    """Train on 2/3 of the patients (pseudobulk + in-silico bulk), test on the rest.

    Held-out pseudobulk carries ``obsp["emd"]``; no programs or tumours (kept fast).
    """
    return pbmc_split(
        n_patients=n_patients,
        cells_per_patient=cells_per_patient,
        k=k,
        n_tumours=0,
        programs=False,
        seed=seed,
    )


@pytest.fixture(scope="session")
def tiny() -> PbmcSplit:
    """12 patients x 30 cells: for mechanics (resume, save/load), not for quality."""
    return make_split(12, 30, k=7)
