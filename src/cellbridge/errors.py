"""The exceptions cellbridge raises: one place, one hierarchy."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CellbridgeError", "InputError", "format_values"]


class CellbridgeError(Exception):
    """Base class of every error cellbridge raises on purpose."""


class InputError(CellbridgeError, ValueError):
    """Input that cellbridge refuses: names the field, the bad values and the fix.

    Parameters
    ----------
    field
        The argument, column or key that holds the bad input (e.g. ``"obs['cell_type']"``).
    problem
        What is wrong, in a few words.
    values
        The offending values; the first few are shown.
    fix
        What the caller should do instead.
    """

    def __init__(
        self,
        field: str,
        problem: str,
        *,
        values: Iterable[object] | None = None,
        fix: str | None = None,
    ) -> None:
        self.field = field
        self.problem = problem
        self.values = list(values) if values is not None else []
        self.fix = fix
        message = f"{field}: {problem}"
        if self.values:
            message += f" ({format_values(self.values)})"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # the default rebuilds from ``args`` (the message alone), which this __init__
        # refuses: an error raised on a Dask worker must unpickle in the caller
        return _rebuild_input_error, (type(self), self.field, self.problem, self.values, self.fix)


def _rebuild_input_error(
    cls: type[InputError], field: str, problem: str, values: list[object], fix: str | None
) -> InputError:
    return cls(field, problem, values=values or None, fix=fix)


def format_values(values: Iterable[object], limit: int = 5) -> str:
    """Show the first ``limit`` values and how many more there are."""
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items) - limit} more)"
    return shown
