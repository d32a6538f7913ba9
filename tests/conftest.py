"""Fixtures shared by all test folders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PROBE = """<script>window.addEventListener('load', function () {
  var images = Array.from(document.images);
  var drawn = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-rendered', drawn.length + '/' + images.length);
});</script></body>"""


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """Figures stay open in pyplot until closed; more than 20 open would warn (an error
    here), whichever test made them."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


#: The variables Dask's nanny sets in the *calling* process before it spawns workers
#: (``distributed.nanny.pre-spawn-environ``), as they were when the tests started.
_DASK_SET = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")
_ENVIRON_AT_START = {key: os.environ.get(key) for key in _DASK_SET}


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Dask clusters built directly by (module-scoped) test fixtures set OMP_NUM_THREADS=1
    and more in this process's environment (``cellbridge.distributed`` undoes it for its
    own): tests that start subprocesses must not inherit that from an earlier module. The
    values are put back as they were when the session started, after every test (a
    module-scoped fixture sets them before a function-scoped snapshot could be taken)."""
    yield
    for key, value in _ENVIRON_AT_START.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


CHROMIUM_MISSING = "headless Chromium is not installed (Debian: apt-get install chromium)"

Renderer = Callable[[Path, Path], tuple[int, int]]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def rendered_images() -> Renderer | None:
    """``f(report, workdir) -> (images drawn, images in the page)`` once the HTML has
    loaded in headless Chromium; ``None`` (reason printed) where Chromium is missing."""
    executable = _chromium()
    if executable is None:
        print(f"NOTE: {CHROMIUM_MISSING}; report rendering not checked")
        return None

    def render(report: Path, work: Path) -> tuple[int, int]:
        probe = work / "probe.html"
        probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE))
        command = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]
        result = subprocess.run(
            [*command, probe.as_uri()], capture_output=True, text=True, timeout=120, check=False
        )
        match = re.search(r'data-rendered="(\d+)/(\d+)"', result.stdout)
        assert match, result.stderr[-2000:]
        return int(match.group(1)), int(match.group(2))

    return render
