"""Atomic writes: the final name holds either the old file or the complete new one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellbridge._io import atomic_path, check_writable_dir
from cellbridge.errors import InputError


def test_success_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible until the rename
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_directory_is_an_input_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(InputError, match="not writable"):
        check_writable_dir(ro, field="--out")


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create"):
        check_writable_dir(blocker / "sub", field="--out")


def test_checkpoint_directory_is_replaced_whole_with_the_default_mode(tmp_path: Path) -> None:
    import torch

    from cellbridge._checkpoint import read_checkpoint, write_checkpoint

    target = tmp_path / "model"
    write_checkpoint(target, "test", {"n": 1}, {"w": torch.zeros(2)})
    write_checkpoint(target, "test", {"n": 2}, {"w": torch.ones(3)})
    meta, tensors = read_checkpoint(target, "test")
    assert meta["n"] == 2 and torch.equal(tensors["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no leftovers
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask
    # fails half-way, inside the temporary directory: the previous checkpoint survives
    with pytest.raises(AttributeError):
        write_checkpoint(target, "test", {"n": 3}, {"w": "not a tensor"})  # type: ignore[dict-item]
    assert read_checkpoint(target, "test")[0]["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
