"""Atomic output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cellbridge.errors import InputError

__all__ = ["atomic_path", "check_writable_dir", "default_mode"]


def check_writable_dir(path: str | os.PathLike[str], *, field: str) -> Path:
    """Create ``path`` if needed and check that files can be written in it."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(field, f"cannot create directory {str(out)!r}: {err.strerror}") from err
    if not os.access(out, os.W_OK):
        raise InputError(
            field, f"directory {str(out)!r} is not writable", fix="choose another output directory"
        )
    return out


@contextlib.contextmanager
def output_directory(path: str | os.PathLike[str], *, field: str) -> Iterator[Path]:
    """:func:`check_writable_dir`, undone on failure: a directory this call created is
    removed (with whatever the failed run wrote in it), so a failed run leaves no output;
    a directory that existed before is left as it was apart from atomically written files.
    """
    existed = Path(path).exists()
    directory = check_writable_dir(path, field=field)
    try:
        yield directory
    except BaseException:
        if not existed:
            shutil.rmtree(directory, ignore_errors=True)
        raise


def default_mode(*, directory: bool) -> int:
    """The mode a plain ``open()`` / ``mkdir()`` gives under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``target`` in one rename.

    A crash or an exception leaves ``target`` as it was (absent, or the previous file)
    and removes the temporary file, so no half-written output ever has the final name.
    """
    target = Path(target)
    check_writable_dir(target.parent if str(target.parent) else ".", field="output")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the mode a plain open() would.
        os.chmod(tmp_path, default_mode(directory=False))
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
