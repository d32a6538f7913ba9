"""``cellbridge run CONFIG.toml``: a pipeline of the command-line steps, from one file.

A run config has one table per step, named like the command (``[similarity]``,
``[poppy.train]``, ``[bird.knn-eval]``...), whose keys are exactly that command's
options and arguments (``--cell-key`` is ``cell_key``). Each table is turned into the
command line it stands for and parsed by the command itself, so a config and a command
line cannot mean different things: same names, same types, same checks, same defaults.
Steps run in pipeline order (:data:`STEPS`), or in the order of ``[run] steps``;
relative paths are relative to the config file's folder.

:func:`render_run_config` writes the starting config (``cellbridge demo
--write-config``): every key of every step, with its help and default, and the
file names chained from one step's output to the next step's input.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
import textwrap
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
import typer.main
from rich.console import Console

from cellbridge.cli.poppy import _toml_value
from cellbridge.errors import InputError

__all__ = ["STEPS", "command_line", "render_run_config", "run_config"]

#: the pipeline, in the order the steps run
STEPS: tuple[str, ...] = (
    "similarity",
    "poppy.train",
    "poppy.embed",
    "poppy.finetune",
    "poppy.attribute",
    "bird.signatures",
    "bird.embed",
    "bird.knn-eval",
    "bird.align",
    "bird.evaluate",
)

#: file names of the starting config: each step's outputs feed the next steps' inputs
CHAIN: dict[str, dict[str, Any]] = {
    "similarity": {"input": "cells.h5ad", "output": "similarity.h5ad"},
    "poppy.train": {
        "cells": "cells.h5ad",
        "bulk": "bulk.h5ad",
        "similarity": "similarity.h5ad",
        "output": "poppy_model",
    },
    "poppy.embed": {"model": "poppy_model", "bulk": "bulk.h5ad", "output": "bulk_embedded.h5ad"},
    "poppy.finetune": {
        "model": "poppy_model",
        "bulk": "bulk.h5ad",
        "atlas": "cells.h5ad",
        "output": "phenotype_model",
    },
    "poppy.attribute": {
        "model": "phenotype_model",
        "bulk": "bulk.h5ad",
        "output": "attribution.csv",
    },
    "bird.signatures": {"cells": "screen.h5ad", "output": "signatures.parquet"},
    "bird.embed": {"signatures_file": "signatures.parquet", "output": "drug_embedding.parquet"},
    "bird.knn-eval": {
        "cells": "screen.h5ad",
        "embedding": ["bird=drug_embedding.parquet"],
        "output": "knn",
    },
    "bird.align": {
        "cells": "screen.h5ad",
        "embedding": "drug_embedding.parquet",
        "output": "aligners",
    },
    "bird.evaluate": {
        "cells": "screen.h5ad",
        "embedding": ["bird=drug_embedding.parquet"],
        "output": "evaluation",
    },
}

err = Console(stderr=True)


@functools.cache
def _commands() -> dict[str, Any]:
    """Every step's click command, by step name."""
    from cellbridge.cli.main import app  # the app imports this module: import late

    root = typer.main.get_command(app)
    found: dict[str, Any] = {}

    def walk(command: Any, prefix: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*prefix, name))
        else:
            found[".".join(prefix)] = command

    walk(root, ())
    return found


def _params(command: Any) -> dict[str, Any]:
    """The keys of a step: its options and arguments, less the eager ones that print
    something and exit (``--write-config``), which are not pipeline settings."""
    return {p.name: p for p in command.params if p.expose_value and not p.is_eager}


def command_line(step: str, table: Mapping[str, Any]) -> list[str]:
    """The command-line words a config table stands for (without ``cellbridge``).

    Parameters
    ----------
    step
        A step name of :data:`STEPS`, e.g. ``"poppy.train"``.
    table
        The step's keys: option and argument names with ``_`` (``cell_key``), TOML
        values (a list for options given several times; ``true``/``false`` for flags).

    Returns
    -------
    list of str
        E.g. ``["poppy", "train", "cells.h5ad", ..., "--cell-key", "X_pca"]``.
    """
    commands = _commands()
    if step not in STEPS:
        raise InputError("config", f"unknown step [{step}]", values=[step], fix=_steps_fix())
    params = _params(commands[step])
    unknown = sorted(set(table) - set(params))
    if unknown:
        raise InputError(
            f"config [{step}]",
            "unknown keys",
            values=unknown,
            fix=f"the keys of [{step}] are: {', '.join(params)}",
        )
    positional: list[str] = []
    options: list[str] = []
    for name, param in params.items():  # the command's own order
        if name not in table:
            continue
        value = table[name]
        if not getattr(param, "opts", None) or not param.opts[0].startswith("-"):
            positional += [str(v) for v in value] if isinstance(value, list) else [str(value)]
        elif getattr(param, "is_flag", False):
            if not isinstance(value, bool):
                raise InputError(f"config [{step}] {name}", "must be true or false", values=[value])
            if value:
                options.append(param.opts[0])
            elif param.secondary_opts:
                options.append(param.secondary_opts[0])
        elif param.multiple:
            items = value if isinstance(value, list) else [value]
            for item in items:
                options += [param.opts[0], _word(item)]
        else:
            if isinstance(value, list):  # a list option given once: comma-separated
                value = ",".join(str(v) for v in value)
            options += [param.opts[0], _word(value)]
    return [*step.split("."), *positional, *options]


def _word(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _steps_fix() -> str:
    return f"name tables after the steps: {', '.join(STEPS)}"


def read_run_config(path: Path) -> dict[str, dict[str, Any]]:
    """The steps of a run config file, in the order they run."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("CONFIG", "no such file", values=[str(path)]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError("CONFIG", f"is not valid TOML ({exc})", values=[str(path)]) from None
    tables: dict[str, dict[str, Any]] = {}
    settings = raw.pop("run", {})
    for group, body in raw.items():
        if not isinstance(body, dict):
            raise InputError("CONFIG", "top-level keys must be tables", values=[group])
        if group in STEPS:
            tables[group] = body
            continue
        for name, sub in body.items():
            tables[f"{group}.{name}"] = sub
    unknown = sorted(set(tables) - set(STEPS))
    if unknown:
        raise InputError("CONFIG", "unknown steps", values=unknown, fix=_steps_fix())
    order = settings.get("steps")
    if order is None:
        order = [step for step in STEPS if step in tables]
    missing = [step for step in order if step not in tables]
    if missing:
        raise InputError("[run] steps", "have no table", values=missing, fix="add their tables")
    if not order:
        raise InputError("CONFIG", "has no steps", values=[str(path)], fix=_steps_fix())
    extra = sorted(set(settings) - {"steps"})
    if extra:
        raise InputError("[run]", "unknown keys", values=extra, fix="[run] takes: steps")
    return {step: tables[step] for step in order}


def run_config(path: Path, *, dry_run: bool = False) -> list[tuple[str, float]]:
    """Run the steps of a run config; returns (step, seconds) per step.

    Each step's command line is parsed by the command itself before any step runs, so a
    mistake in the last table stops the run before the first one starts. ``dry_run``
    prints the command lines (shell-quoted) and runs nothing.
    """
    steps = read_run_config(path)
    commands = _commands()
    lines = {step: command_line(step, table) for step, table in steps.items()}
    with contextlib.chdir(path.resolve().parent):
        for step, words in lines.items():
            _check_parses(step, commands[step], words)
        if dry_run:
            for words in lines.values():
                typer.echo(shlex.join(["cellbridge", *words]))
            return []
        timings = []
        for i, (step, words) in enumerate(lines.items(), start=1):
            err.print(f"[bold]step {i}/{len(lines)}:[/] cellbridge {shlex.join(words)}")
            start = time.perf_counter()
            code = commands[step].main(
                args=words[len(step.split(".")) :],
                prog_name=f"cellbridge {step.replace('.', ' ')}",
                standalone_mode=False,
            )
            if code not in (None, 0):
                raise typer.Exit(code=int(code))  # the step printed its error
            timings.append((step, time.perf_counter() - start))
    return timings


def _check_parses(step: str, command: Any, words: Sequence[str]) -> None:
    """Let the command parse its words (types, required keys) without running it."""
    from typer._click.exceptions import ClickException

    args = list(words[len(step.split(".")) :])
    try:
        with command.make_context(f"cellbridge {step.replace('.', ' ')}", args):
            pass
    except ClickException as exc:
        message = exc.format_message()
        for param in _params(command).values():  # name the key, not the option
            for opt in [*getattr(param, "opts", []), param.name.upper()]:
                message = message.replace(f"'{opt}'", f"'{param.name}'")
        raise InputError(f"config [{step}]", message, values=[]) from None


def render_run_config() -> str:
    """The starting run config: every key of every step, with help and defaults."""
    commands = _commands()
    lines = [
        "# cellbridge run config: `cellbridge run THIS_FILE` runs the steps below in order.",
        "# Each table is one command (`cellbridge poppy train ...`), each key one of its",
        "# options or arguments (--cell-key -> cell_key). Delete the steps you do not",
        "# need; keys left out keep their defaults; keys shown commented out have no",
        "# default. Relative paths are relative to this file's folder. The file names",
        "# chain each step's outputs to the next steps' inputs: replace cells.h5ad,",
        "# bulk.h5ad and screen.h5ad with your data.",
        "",
        "[run]",
        f"steps = {_toml_value(list(STEPS))}",
    ]
    for step in STEPS:
        command = commands[step]
        summary = (command.help or "").strip().splitlines()[0] if command.help else ""
        lines += ["", "", f"[{step}]"]
        if summary:
            lines.append(f"# {summary}")
        chain = CHAIN.get(step, {})
        for name, param in _params(command).items():
            help_text = _plain(getattr(param, "help", None) or name)
            lines += ["", *(f"# {line}" for line in textwrap.wrap(help_text, width=86))]
            if name in chain:
                lines.append(f"{name} = {_toml_value(chain[name])}")
            elif param.required or param.default is None:
                lines.append(f"# {name} = ...")
            else:
                lines.append(f"{name} = {_toml_value(param.default)}")
    return "\n".join(lines) + "\n"


def _plain(text: str) -> str:
    return text.replace("\\[", "[").replace("\n", " ")
