"""Small seeded trainings for tests/test_ddp.py, run by torchrun (2 processes) or in-process.

``python _ddp_job.py JOB OUTDIR``: JOB is ``poppy``, ``bird`` or ``gradient``. Under
torchrun (``WORLD_SIZE`` > 1) the training uses Lightning's ``ddp`` strategy on CPU (gloo)
with one process per torchrun worker; otherwise one process. Every process writes its
final weights (``JOB-rankR.safetensors``) and training history (``JOB-rankR.json``).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from safetensors.torch import save_file

#: The same data and options in every mode; only the strategy differs.
POPPY_OPTIONS: dict[str, object] = {
    "cell_key": "X_pca",
    "assay_key": "assay",
    "batch_size": 5,  # odd: shards of 3 and 2 items (padding of the gather)
    "max_cells": 16,
    "val_fraction": 0.25,
    "max_epochs": 3,
    "dropout": 0.2,  # each item gets its single-process mask (_ShardedDropout)
    "seed": 3,
}
BIRD_OPTIONS: dict[str, object] = {
    "cell_key": "X_pca",
    "drugs_per_batch": 7,  # 35 rows per batch: shards of 18 and 17
    "cells_per_drug": 5,
    "max_epochs": 3,
    "patience": 100,
    # At the default 3e-2, AdamW's first steps (update ~ lr * sign(gradient)) turn the
    # float32 round-off between any two reductions into 3e-4 weight differences after 18
    # steps; at 3e-3 they stay at round-off (6e-8).
    "learning_rate": 3e-3,
    "seed": 3,
}


def _overrides() -> dict[str, object]:
    """Extra options from ``CELLBRIDGE_DDP_JOB_OPTIONS`` (JSON, e.g. for a manual check)."""
    return dict(json.loads(os.environ.get("CELLBRIDGE_DDP_JOB_OPTIONS", "{}")))


def _world() -> tuple[int, int, dict[str, object]]:
    """(rank, world size, Lightning options) of this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world == 1:
        return 0, 1, {"accelerator": "cpu", "devices": 1, "strategy": "auto"}
    devices = int(os.environ["LOCAL_WORLD_SIZE"])
    return rank, world, {"accelerator": "cpu", "devices": devices, "strategy": "ddp"}


def run_poppy() -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """POPPY stage 1 on 12 semi-synthetic patients; (weights, history)."""
    from cellbridge.poppy import POPPY, POPPYConfig, pbmc_split

    split = pbmc_split(
        n_patients=12, cells_per_patient=30, k=7, n_tumours=0, programs=False, seed=0
    )
    options = {**POPPY_OPTIONS, **_overrides(), **_world()[2]}
    config = POPPYConfig(**options)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        # the sampler's documented fallbacks on tiny data (tests/poppy/test_model.py)
        warnings.filterwarnings("ignore", "fewer than B - 2", UserWarning)
        warnings.filterwarnings("ignore", "an anchor has no", UserWarning)
        model = POPPY(config).fit(
            split.cells_train, split.bulk_train, split.similarity_train, progress=False
        )
    assert model.net is not None and model.history is not None
    return model.net.state_dict(), asdict(model.history)


def bird_data() -> tuple[AnnData, pd.DataFrame]:
    """20 drugs x 12 cells around a random linear image of each drug's embedding."""
    rng = np.random.default_rng(0)
    n_drugs, per_drug, d_in, d_drug = 20, 12, 10, 6
    drugs = rng.normal(size=(n_drugs, d_drug))
    codes = np.repeat(np.arange(n_drugs), per_drug)
    x = drugs[codes] @ rng.normal(size=(d_drug, d_in)) + 0.5 * rng.normal(size=(codes.size, d_in))
    names = [f"drug{k}" for k in range(n_drugs)]
    obs = pd.DataFrame(
        {
            "drug": [names[k] for k in codes],
            "cell_line": "line0",
            "control": np.zeros(codes.size, dtype=bool),
        },
        index=[f"cell{i}" for i in range(codes.size)],
    )
    cells = AnnData(obs=obs)
    cells.obsm["X_pca"] = x.astype(np.float32)
    return cells, pd.DataFrame(drugs, index=names)


def run_bird() -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """A BiRD aligner (linear head, Sinkhorn loss); (weights and calibrated output, history)."""
    from cellbridge.bird.align import AlignConfig, Aligner

    cells, embedding = bird_data()
    options = {**BIRD_OPTIONS, **_overrides(), **_world()[2]}
    config = AlignConfig(**options)  # type: ignore[arg-type]
    aligner = Aligner(config).fit(cells, embedding, progress=False)
    assert aligner.projection is not None and aligner.history is not None
    weights = dict(aligner.projection.state_dict())
    weights["transform"] = torch.from_numpy(aligner.transform(cells))
    return weights, asdict(aligner.history)


def run_gradient() -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """The gradient of a batch-coupled loss through gather_batch and DDP's average.

    A linear map of a global batch of 7 rows (shards of 4 and 3), a loss that couples all
    rows (log-sum-exp of the Gram matrix); under torchrun the parameter gradients after
    DDP's all-reduce are written, in one process the full-batch gradients.
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from cellbridge._lightning import Shard, gather_batch

    rank, world, _ = _world()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    torch.manual_seed(1)
    model = torch.nn.Linear(5, 3).double()
    if world > 1:
        dist.init_process_group("gloo")
        net: torch.nn.Module = DistributedDataParallel(model)
        local = x[Shard(rank, world).take(range(7))]
    else:
        net, local = model, x
    z = gather_batch(net(local), 7, world)
    loss = torch.logsumexp(z @ z.T, dim=1).mean() + (z**2).sum()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    grads["z"] = z.detach()
    if world > 1:
        dist.destroy_process_group()
    return grads, {"loss": float(loss.detach())}


def main(job: str, outdir: Path) -> None:
    """Run ``job`` and write this process's weights and history under ``outdir``."""
    torch.set_num_threads(int(os.environ.get("CELLBRIDGE_DDP_JOB_THREADS", "1")))
    weights, history = {"poppy": run_poppy, "bird": run_bird, "gradient": run_gradient}[job]()
    rank = _world()[0]
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    save_file(tensors, outdir / f"{job}-rank{rank}.safetensors")
    (outdir / f"{job}-rank{rank}.json").write_text(json.dumps(history))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
