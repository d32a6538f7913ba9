"""A training run killed for real (SIGKILL, no clean-up) resumes from its checkpoint
folder to the same model as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

from cellbridge.cli.main import app
from cellbridge.data import pbmc_patients
from cellbridge.poppy import sample_similarity

runner = CliRunner()
EPOCHS = 40


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kill-resume")
    data = pbmc_patients(n_patients=12, cells_per_patient=30, seed=0)
    paths = {"cells": root / "cells.h5ad", "bulk": root / "bulk.h5ad", "sim": root / "s.h5ad"}
    data.cells.write_h5ad(paths["cells"])
    data.pseudobulk.write_h5ad(paths["bulk"])
    sample_similarity(data.cells, k=5).write_h5ad(paths["sim"])
    return paths


def _train(files: dict[str, Path], output: Path, checkpoints: Path) -> list[str]:
    return [
        "poppy",
        "train",
        str(files["cells"]),
        str(files["bulk"]),
        str(files["sim"]),
        "-o",
        str(output),
        "--checkpoint-dir",
        str(checkpoints),
        "--cell-key",
        "X_pca",
        "--batch-size",
        "4",
        "--max-epochs",
        str(EPOCHS),
        "--patience",
        str(EPOCHS),
        "--no-progress",
    ]


def test_sigkill_mid_training_then_rerun_gives_the_uninterrupted_model(
    files: dict[str, Path], tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="fewer than B - 2 samples")
        whole = runner.invoke(app, _train(files, tmp_path / "whole", tmp_path / "ck_whole"))
    assert whole.exit_code == 0, whole.output

    checkpoints = tmp_path / "ck_cut"
    words = _train(files, tmp_path / "cut", checkpoints)
    code = "import sys; from cellbridge.cli.main import app; sys.argv[0] = 'cellbridge'; app()"
    with subprocess.Popen(
        [sys.executable, "-c", code, *words],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # the same torch thread count as this process, whose runs it is compared with
        # (other thread counts round differently)
        env={
            **os.environ,
            "PYTHONWARNINGS": "ignore",
            "OMP_NUM_THREADS": str(torch.get_num_threads()),
        },
    ) as child:
        try:
            deadline = time.monotonic() + 300
            while not (checkpoints / "last.ckpt").exists() and time.monotonic() < deadline:
                assert child.poll() is None, "the run ended before its first checkpoint"
                time.sleep(0.02)
            time.sleep(0.3)  # a little further into training, maybe mid-checkpoint
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the run finished before it was killed"
    assert not (tmp_path / "cut").exists()  # no model under the final name

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="fewer than B - 2 samples")
        resumed = runner.invoke(app, words)
    assert resumed.exit_code == 0, resumed.output
    ours = load_file(tmp_path / "cut" / "model.safetensors")
    theirs = load_file(tmp_path / "whole" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert (ours[name] == theirs[name]).all(), name
