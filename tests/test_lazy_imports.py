"""The torch-free parts of BiRD import without torch or Lightning (PEP 562 names).

Dask workers that compute DE signatures import only these parts; torch and Lightning
would add seconds to every worker's start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cellbridge.bird as bird
from cellbridge._lazy import lazy_names
from cellbridge.bird import align, retrieval

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
        "cellbridge.distributed",
    ],
)
def test_torch_free_parts_do_not_import_torch(module: str) -> None:
    assert _loaded_after(module) == dict.fromkeys(HEAVY, False)


def test_the_aligner_still_brings_torch() -> None:
    # the control: the check above can see torch when it is imported
    assert _loaded_after("cellbridge.bird.align") == dict.fromkeys(HEAVY, True)


def test_lazy_names_are_the_submodules_objects() -> None:
    exported = set(bird.__all__)
    for module in (align, retrieval):
        for name in set(module.__all__) & exported:
            assert getattr(bird, name) is getattr(module, name)
    assert exported <= set(dir(bird))


def test_no_lazy_name_is_also_a_submodule() -> None:
    # importing a submodule binds its name in the package, which would hide a lazy name
    # of the same spelling (``cellbridge.ot.sinkhorn`` is why the ot package is eager)
    submodules = {p.stem for p in Path(bird.__file__).parent.glob("*.py")}
    assert not submodules & set(bird.__all__)


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
