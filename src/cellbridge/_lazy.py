"""Names of a package loaded on first use (PEP 562).

Used where a package re-exports a few names whose modules import torch or Lightning
(seconds), so that its torch-free parts, and the Dask workers that run them, start fast.
Written here because the standard library offers the hook (module ``__getattr__``) but
no helper that builds it from a table; ``lazy_loader`` would add a dependency for ten
lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, modules: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for names loaded on first use.

    Parameters
    ----------
    package
        The package's ``__name__``.
    modules
        Submodule (relative to ``package``) -> the names it provides.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)``, to be bound at the package's top level. The first
        look-up of a name imports its submodule and stores the value in the package, so
        later look-ups skip the hook.

    Notes
    -----
    A lazy name must not also be the name of a submodule of ``package``: importing that
    submodule binds its name in the package, and the hook would never run.
    """
    where = {name: module for module, names in modules.items() for name in names}

    def get(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def names() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return get, names
