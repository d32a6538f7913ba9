"""cellbridge.distributed: the client= argument, and what a local cluster leaves behind."""

from __future__ import annotations

import operator
import os

import pytest

from cellbridge.distributed import dask_client, map_chunks
from cellbridge.errors import InputError


def test_local_cluster_maps_in_order_and_leaves_the_environment_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dask's nanny sets OMP_NUM_THREADS=1 (and more) in the calling process before it
    spawns workers; later subprocesses (torchrun, a resumed training run) would inherit
    it. The local cluster must not leave that behind."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = dict(os.environ)
    with dask_client("local") as client:
        assert client is not None
        # a function the workers can import (not one of this test module)
        assert map_chunks(client, operator.sub, [3, 1, 2], shared=[10]) == [-7, -9, -8]
        assert os.environ.get("OMP_NUM_THREADS") == "3"  # restored once workers are up
    assert dict(os.environ) == before


def test_none_is_no_dask_and_bad_values_are_refused() -> None:
    with dask_client(None) as client:
        assert client is None
    for bad in ("remote", 2):
        with pytest.raises(InputError) as err, dask_client(bad):  # type: ignore[arg-type]
            pass
        assert err.value.field == "client"
    with pytest.raises(InputError) as err, dask_client("local", n_workers=0):
        pass
    assert err.value.field == "n_workers"
