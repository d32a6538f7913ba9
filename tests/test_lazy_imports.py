"""The torch-free parts of cellbridge import without torch or Lightning (PEP 562 names).

The command line and the Dask workers that compute DE signatures import only these
parts; torch and Lightning would add seconds to every start (``cellbridge --help`` took
about 8 s with them, 3.4 s without).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import cellbridge.bird as bird
import cellbridge.poppy as poppy
from cellbridge._lazy import lazy_names
from cellbridge.bird import align

PACKAGES = [bird, poppy]

HEAVY = ("torch", "lightning")


def _loaded_after(module: str) -> dict[str, bool]:
    code = (
        "import json, sys\n"
        f"import {module}\n"
        f"print(json.dumps({{m: m in sys.modules for m in {list(HEAVY)!r}}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module",
    [
        "cellbridge.bird",
        "cellbridge.bird.signatures",
        "cellbridge.bird.plate_signatures",
        "cellbridge.bird.config",
        "cellbridge.distributed",
        "cellbridge.poppy",
        "cellbridge.poppy.config",
        "cellbridge.cli.main",
    ],
)
def test_torch_free_parts_do_not_import_torch(module: str) -> None:
    assert _loaded_after(module) == dict.fromkeys(HEAVY, False)


def test_the_aligner_still_brings_torch() -> None:
    # the control: the check above can see torch when it is imported
    assert _loaded_after("cellbridge.bird.align") == dict.fromkeys(HEAVY, True)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_exported_name_is_its_modules_object(package: ModuleType) -> None:
    folder = Path(package.__file__ or "").parent
    for path in sorted(folder.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{path.stem}")
        for name in set(getattr(module, "__all__", ())) & set(package.__all__):
            assert getattr(package, name) is getattr(module, name), (path.stem, name)
    for name in package.__all__:
        assert getattr(package, name) is not None
    assert set(package.__all__) <= set(dir(package))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_no_lazy_name_is_also_a_submodule(package: ModuleType) -> None:
    # importing a submodule binds its name in the package, which would hide a lazy name
    # of the same spelling (``cellbridge.ot.sinkhorn`` is why the ot package is eager)
    submodules = {p.stem for p in Path(package.__file__ or "").parent.glob("*.py")}
    assert not submodules & set(package.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = bird.nope  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        from cellbridge.bird import nope  # type: ignore[attr-defined] # noqa: F401


def test_lazy_names_store_the_value_once_loaded() -> None:
    get, names = lazy_names("cellbridge.bird", {"align": ["Aligner"]})
    value = get("Aligner")
    assert value is align.Aligner
    assert vars(bird)["Aligner"] is value
    assert "Aligner" in names()
    with pytest.raises(AttributeError, match=r"cellbridge\.bird"):
        get("fit_per_line")  # not in this table
