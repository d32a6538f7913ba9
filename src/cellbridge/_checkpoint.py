"""Model checkpoints: a directory of ``config.json`` + ``model.safetensors``.

Loading never unpickles. ``config.json`` records the format, the cellbridge version, the
name, shape and dtype of every tensor and the SHA-256 of ``model.safetensors``; a file
that does not match (edited, truncated, swapped for another model's) is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cellbridge import __version__
from cellbridge._io import check_writable_dir, default_mode
from cellbridge.errors import InputError

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "read_checkpoint", "write_checkpoint"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh sibling directory that replaces ``target`` on success.

    The previous ``target`` stays whole until the new one is complete; it is moved aside,
    the new one renamed in, and only then removed.
    """
    parent = check_writable_dir(target.parent, field="output")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        # mkdtemp creates 0700 directories; give the output the mode mkdir() would.
        os.chmod(tmp, default_mode(directory=True))
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_checkpoint(
    path: str | os.PathLike[str], kind: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> Path:
    """Write ``meta`` (JSON-able) and ``tensors`` as a checkpoint directory, atomically."""
    target = Path(path)
    with _atomic_dir(target) as tmp:
        weights = tmp / WEIGHTS_FILE
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, weights)
        header = {
            "format": kind,
            "cellbridge_version": __version__,
            "sha256": _sha256(weights),
            "tensors": {
                k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                for k, v in tensors.items()
            },
            **meta,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(header, indent=2, sort_keys=True))
    return target


def read_checkpoint(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a checkpoint written by :func:`write_checkpoint` and verify it.

    Raises
    ------
    InputError
        Missing files, unreadable JSON, another format, a hash mismatch, or tensors whose
        names, shapes or dtypes differ from ``config.json``.
    """
    root = Path(path)
    config, weights = root / CONFIG_FILE, root / WEIGHTS_FILE
    for file in (config, weights):
        if not file.is_file():
            raise InputError(
                "checkpoint",
                f"{file.name} not found in {str(root)!r}",
                fix="pass a directory written by .save()",
            )
    try:
        meta = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError("checkpoint", f"{CONFIG_FILE} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != kind:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(
            "checkpoint", f"is not a {kind} checkpoint", values=[found], fix="check the path"
        )
    if _sha256(weights) != meta.get("sha256"):
        raise InputError(
            "checkpoint",
            f"{WEIGHTS_FILE} does not match the SHA-256 recorded in {CONFIG_FILE} "
            "(modified, truncated or from another model)",
            values=[str(weights)],
            fix="save the model again; never mix files of two checkpoints",
        )
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise InputError("checkpoint", f"cannot read {WEIGHTS_FILE}: {err}") from None
    expected = meta.get("tensors", {})
    found = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in tensors.items()
    }
    if found != expected:
        diff = sorted(set(found) ^ set(expected)) or [
            k for k in found if found[k] != expected.get(k)
        ]
        raise InputError(
            "checkpoint",
            f"tensors in {WEIGHTS_FILE} differ from {CONFIG_FILE}",
            values=diff,
            fix="save the model again",
        )
    return meta, tensors
