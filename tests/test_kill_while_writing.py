"""A process killed (SIGKILL: no clean-up runs) while writing leaves the previous output
intact: every writer of cellbridge's outputs, killed at a random moment of a write loop,
leaves the final name holding the old content or the complete new one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

# Each writer: code that writes ``tag`` to ``target`` (big enough that a write takes a
# while), and code that reads ``target`` back and returns the tag it holds.
WRITERS: dict[str, tuple[str, str]] = {
    "h5ad": (
        """
        import anndata, numpy as np
        from cellbridge.cli.similarity import write_h5ad
        def write(target, tag):
            a = anndata.AnnData(np.full((3000, 400), 1.0))
            a.uns["tag"] = tag
            write_h5ad(a, target)
        """,
        """
        import anndata
        def read(target):
            a = anndata.read_h5ad(target)
            assert a.shape == (3000, 400) and float(a.X.sum()) == 3000 * 400
            return str(a.uns["tag"])
        """,
    ),
    "json": (
        """
        from cellbridge.cli.similarity import write_json
        def write(target, tag):
            write_json({"tag": tag, "rows": list(range(400_000))}, target)
        """,
        """
        import json
        def read(target):
            payload = json.loads(target.read_text())
            assert len(payload["rows"]) == 400_000
            return payload["tag"]
        """,
    ),
    "parquet": (
        """
        import numpy as np, pandas as pd
        from cellbridge.bird import save_embedding
        def write(target, tag):
            E = pd.DataFrame(np.ones((20_000, 64)), index=[f"{tag}{i}" for i in range(20_000)])
            E.columns = [f"c{j}" for j in range(64)]
            save_embedding(E, target)
        """,
        """
        from cellbridge.bird import load_embedding
        def read(target):
            E = load_embedding(target)
            assert E.shape == (20_000, 64)
            return str(E.index[0])[:3]
        """,
    ),
    "checkpoint": (
        """
        import torch
        from cellbridge._checkpoint import write_checkpoint
        def write(target, tag):
            write_checkpoint(target, "test", {"tag": tag}, {"w": torch.ones(2_000_000)})
        """,
        """
        import torch
        from cellbridge._checkpoint import read_checkpoint
        def read(target):
            meta, tensors = read_checkpoint(target, "test")
            assert tensors["w"].shape == (2_000_000,) and bool((tensors["w"] == 1).all())
            return meta["tag"]
        """,
    ),
    "report": (
        """
        import pandas as pd
        from cellbridge.report import ReportSection, write_report
        def write(target, tag):
            table = pd.DataFrame({"x": range(30_000)})
            write_report(target, [ReportSection(tag, [tag], [], [(tag, table)])], title=tag)
        """,
        """
        def read(target):
            html = target.read_text()
            assert html.rstrip().endswith("</html>")
            return html.split("<title>", 1)[1].split("</title>", 1)[0]
        """,
    ),
}


def _script(kind: str, target: Path) -> str:
    write, _ = WRITERS[kind]
    return textwrap.dedent(write) + textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        target = Path({str(target)!r})
        print("ready", flush=True)
        while True:
            write(target, "new")
        """
    )


def _reader(kind: str) -> object:
    namespace: dict[str, object] = {}
    exec(textwrap.dedent(WRITERS[kind][1]), namespace)
    return namespace["read"]


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_sigkill_while_writing_leaves_old_or_new_never_half(kind: str, tmp_path: Path) -> None:
    target = tmp_path / f"out.{kind}"
    namespace: dict[str, object] = {}
    exec(textwrap.dedent(WRITERS[kind][0]), namespace)
    namespace["write"](target, "old")  # type: ignore[operator]
    read = _reader(kind)
    assert read(target) == "old"  # type: ignore[operator]
    with subprocess.Popen(
        [sys.executable, "-c", _script(kind, target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            # a moment of the write loop that depends on the seed; the child is mid-write
            # most of the time, as the loop does nothing else
            time.sleep(float(np.random.default_rng(sum(map(ord, kind))).uniform(0.3, 1.2)))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert read(target) in {"old", "new"}  # type: ignore[operator]
    # only hidden temporary files can be left by a hard kill, never under the final name
    others = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(name.startswith(f".{target.name}.") for name in others), others
