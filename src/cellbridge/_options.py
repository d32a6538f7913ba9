"""Option dataclasses shared by POPPY, BiRD and the CLI: dict round trip, config files
(TOML or JSON) and the checks of single values.

Kept apart from the models so that reading a config imports neither torch nor Lightning.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Self

from cellbridge.errors import InputError

__all__ = ["Options"]


class Options:
    """Shared by option dataclasses: dict round trip and config files (TOML / JSON)."""

    #: The TOML table that holds these options.
    SECTION: ClassVar[str] = "poppy"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every option."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, field: str = "config") -> Self:
        """Build from a dict, refusing unknown keys (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                field,
                f"unknown [{cls.SECTION}] options",
                values=unknown,
                fix=f"use only: {', '.join(sorted(known))}",
            )
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path, *, section: str | None = None) -> Self:
        """Read options from a TOML (``[SECTION]`` table, or top level) or JSON file."""
        section = cls.SECTION if section is None else section
        path = Path(path)
        if not path.is_file():
            raise InputError("config", "file not found", values=[str(path)])
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
            raise InputError("config", f"cannot parse {path}: {err}") from None
        if isinstance(data.get(section), dict):
            data = data[section]
        return cls.from_dict(data, field=str(path))


def _bad(name: str, value: object, problem: str) -> None:
    raise InputError(name, problem, values=[value])


def _int(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(name, value, "must be an integer")


def _positive_int(config: object, *names: str) -> None:
    _int(config, *names)
    for name in names:
        if getattr(config, name) < 1:
            _bad(name, getattr(config, name), "must be a positive integer")


def _in_range(config: object, name: str, low: float, high: float, *, closed_high: bool) -> None:
    value = getattr(config, name)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and low <= value and (value <= high if closed_high else value < high)
    if not ok:
        _bad(name, value, f"must be in [{low}, {high}{']' if closed_high else ')'}")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_number(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not _number(value) or not value > 0:
            _bad(name, value, "must be a positive number")


def _non_negative_number(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not _number(value) or not value >= 0:
            _bad(name, value, "must be >= 0")
