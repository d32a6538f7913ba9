"""``cellbridge poppy train|embed``: POPPY stage 1 (POPPY §2.2) from the command line.

``train`` builds a :class:`~cellbridge.poppy.POPPYConfig` from, in increasing precedence,
its defaults, a config file (``--config``, TOML ``[poppy]`` table or JSON) and the options
given on the command line, fits :class:`~cellbridge.poppy.POPPY` and saves the model
directory (``config.json`` + ``model.safetensors``, written atomically; the config, the
split and the training history live in ``config.json``). ``embed`` loads such a directory
and writes bulk (and optionally cell-set) embeddings.
"""

from __future__ import annotations

import functools
import json
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, get_args, get_type_hints

import typer
from rich.console import Console
from rich.table import Table

from cellbridge.cli.similarity import write_h5ad
from cellbridge.data.readers import read_h5ad
from cellbridge.errors import InputError
from cellbridge.poppy.config import POPPYConfig

if TYPE_CHECKING:
    import anndata

    from cellbridge.data import CellStore
    from cellbridge.poppy import POPPY

__all__ = ["poppy_app", "render_config_toml", "run_embed", "run_train"]

P = ParamSpec("P")
R = TypeVar("R")

out = Console()

#: Suffixes read as a :class:`~cellbridge.data.CellStore` (HDF5 file of per-sample
#: embeddings) instead of an AnnData; every other suffix but ``.h5ad`` is refused.
STORE_SUFFIXES = (".h5", ".cellstore")

#: Command-line spelling of "no value" for options whose config field may be None.
NONE_WORD = "none"

_NONE_NOTE = f" Give '{NONE_WORD}' for None."

poppy_app = typer.Typer(
    name="poppy",
    help="POPPY stage 1: align bulk profiles and single-cell samples (train, embed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """:func:`cellbridge.cli.main.friendly_errors`, imported late (main imports this module)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from cellbridge.cli.main import friendly_errors

        return friendly_errors(fn)(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------- config


def _field_docs() -> dict[str, str]:
    """Each attribute's description in :class:`POPPYConfig`'s docstring, as plain text."""
    doc = POPPYConfig.__doc__ or ""
    body = doc.split("Attributes\n    ----------\n", 1)[-1]
    docs: dict[str, str] = {}
    names: list[str] = []
    for line in body.splitlines():
        if line.startswith("    ") and not line.startswith("        ") and line.strip():
            names = [n.strip() for n in line.split(",")]
            for name in names:
                docs[name] = ""
        elif line.startswith("        ") and names:
            for name in names:
                docs[name] = f"{docs[name]} {line.strip()}".strip()
    return {name: _plain(text) for name, text in docs.items()}


def _plain(text: str) -> str:
    """Docstring markup (roles, literals, math, emphasis) as plain text."""

    def role(match: re.Match[str]) -> str:
        target = match.group(1)
        return target.rsplit(".", 1)[-1] if target.startswith("~") else target

    text = re.sub(r":math:`([^`]+)`", lambda m: re.sub(r"[\\{}]", "", m.group(1)), text)
    text = re.sub(r":\w+:`([^`]+)`", role, text)
    return text.replace("``", "").replace("`", "").replace("*", "").rstrip(".")


FIELD_DOCS = _field_docs()
_HINTS = get_type_hints(POPPYConfig)


def _help(name: str) -> str:
    default = getattr(POPPYConfig(), name)
    nullable = type(None) in get_args(_HINTS[name])
    shown = NONE_WORD if default is None else default
    note = _NONE_NOTE if nullable else ""
    return f"{FIELD_DOCS.get(name, name)}.{note} \\[default: {shown}]"


def render_config_toml(config: POPPYConfig | None = None) -> str:
    """A TOML ``[poppy]`` table of every option of ``config`` (default: the defaults).

    TOML has no null: an option whose value is None is written as a comment and thus
    left out of the table; leaving it out of a config file keeps its default.
    """
    config = config if config is not None else POPPYConfig()
    lines = [
        "# POPPY stage-1 options: cellbridge poppy train ... --config THIS_FILE",
        "# Command-line options override these values. Options set to None have no TOML",
        "# value: they are commented out, and leaving them out keeps None.",
        "[poppy]",
    ]
    for name, value in config.to_dict().items():
        doc = textwrap.wrap(FIELD_DOCS.get(name, name), width=86)
        lines += ["", *(f"# {line}" for line in doc)]
        if value is None:
            lines.append(f"# {name} = (unset: None)")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string


def _parse_value(name: str, raw: object) -> object:
    """Turn a command-line string into the type of config field ``name``."""
    option = "--" + name.replace("_", "-")
    args = get_args(_HINTS[name])
    if not isinstance(raw, str):
        return raw  # typed by typer already
    if type(None) in args and raw.strip().lower() == NONE_WORD:
        return None
    if int in args:
        if re.fullmatch(r"[+-]?\d+", raw.strip()):
            return int(raw)
        if str in args:  # e.g. devices: 2 or "auto"
            return raw
        expected = "an integer" + (f" or '{NONE_WORD}'" if type(None) in args else "")
        raise InputError(option, f"must be {expected}", values=[raw])
    return raw


def build_config(config_file: Path | None, overrides: dict[str, object]) -> POPPYConfig:
    """Defaults < ``config_file`` < ``overrides`` (the options given on the command line).

    ``overrides`` maps field names to values; ``None`` means "not given" and is skipped.
    """
    base = POPPYConfig.from_file(config_file) if config_file is not None else POPPYConfig()
    given = {k: _parse_value(k, v) for k, v in overrides.items() if v is not None}
    values = {**base.to_dict(), **given}
    try:
        config = POPPYConfig.from_dict(values, field="options")
        _check_lightning_names(config)
    except InputError as err:
        if err.field in given:  # name the option the user typed
            option = "--" + err.field.replace("_", "-")
            raise InputError(option, err.problem, values=err.values, fix=err.fix) from None
        raise
    return config


def _check_lightning_names(config: POPPYConfig) -> None:
    """Refuse accelerator/strategy names Lightning does not know, before any data is read."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    accelerators = {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    if config.accelerator not in accelerators:
        raise InputError(
            "accelerator", "unknown", values=[config.accelerator], fix=_one_of(accelerators)
        )
    strategies = {"auto", *StrategyRegistry.available_strategies()}
    if config.strategy not in strategies:
        raise InputError("strategy", "unknown", values=[config.strategy], fix=_one_of(strategies))


def _one_of(names: set[str]) -> str:
    return "use one of " + ", ".join(sorted(names))


# ---------------------------------------------------------------------------- I/O


def _check_output(path: Path, field: str, *, suffix: str | None = None) -> None:
    """Refuse an output that cannot be written, creating nothing."""
    if suffix is not None and path.suffix != suffix:
        raise InputError(field, f"must end in {suffix}, got {str(path)!r}")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise InputError(field, f"cannot write under {str(ancestor)!r}")


def _check_model_output(path: Path) -> None:
    """The model directory is replaced as a whole: refuse anything but a model or nothing."""
    _check_output(path, "--output")
    if path.exists() and (
        not path.is_dir() or (any(path.iterdir()) and not (path / "config.json").is_file())
    ):
        raise InputError(
            "--output",
            f"{str(path)!r} exists and is not a model directory; it would be replaced",
            fix="choose a new directory, or a model directory written by cellbridge",
        )


def read_cells(path: Path, field: str = "cells") -> anndata.AnnData | CellStore:
    """An ``.h5ad`` file as AnnData, a ``.h5``/``.cellstore`` file as a cell store."""
    from cellbridge.data import CellStore

    if path.suffix == ".h5ad":
        return read_h5ad(path, field=field)
    if path.suffix in STORE_SUFFIXES:
        return CellStore.open(path)
    raise InputError(
        field,
        f"must be an .h5ad file or a cell store ({', '.join(STORE_SUFFIXES)})",
        values=[str(path)],
    )


def _close(cells: object) -> None:
    close = getattr(cells, "close", None)
    if callable(close) and not hasattr(cells, "obs"):  # a CellStore; AnnData stays as is
        close()


# ---------------------------------------------------------------------------- work


def run_train(
    cells_path: Path,
    bulk_path: Path,
    similarity_path: Path,
    output: Path,
    *,
    config: POPPYConfig,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
    progress: bool = True,
) -> POPPY:
    """Read the inputs, fit POPPY, save the model directory, print a summary."""
    from cellbridge.poppy import POPPY

    _check_model_output(output)
    cells = read_cells(cells_path)
    try:
        bulk = read_h5ad(bulk_path, field="bulk")
        similarity = read_h5ad(similarity_path, field="similarity")
        model = POPPY(config).fit(
            cells,
            bulk,
            similarity,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            progress=progress,
        )
    finally:
        _close(cells)
    model.save(output)
    out.print(train_summary(model, bulk.n_obs, cells_path, bulk_path, output))
    out.print(
        f"wrote {output}/: config.json (options, split, training history) + model.safetensors"
    )
    return model


def train_summary(
    model: POPPY, n_profiles: int, cells_path: Path, bulk_path: Path, output: Path
) -> Table:
    """The numbers a person checks first after training."""
    history, split = model.history, model.split
    table = Table(title=f"cellbridge poppy train: {output.name}", show_header=False)
    n_train, n_val = len(split.get("train", [])), len(split.get("validation", []))
    rows = [("profiles", f"{n_profiles} bulk ({n_train} training, {n_val} validation samples)")]
    if history is not None and history.train_loss:
        epochs = len(history.train_loss)
        rows += [
            ("epochs run", f"{epochs}{' (stopped early)' if history.stopped_early else ''}"),
            ("best epoch", f"{history.best_epoch + 1} of {epochs}"),
            ("final train loss", f"{history.train_loss[-1]:.4f}"),
            (
                "final val loss",
                f"{history.val_loss[-1]:.4f}" if history.val_loss else "- (val_fraction = 0)",
            ),
        ]
    rows += [
        ("cells", f"{model.sources.get('cells', '?')} from {cells_path.name}"),
        ("bulk", f"{model.sources.get('bulk', '?')} from {bulk_path.name}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def run_embed(
    model_dir: Path,
    bulk_path: Path,
    output: Path,
    *,
    key: str = "X_poppy",
    cells_path: Path | None = None,
    cells_output: Path | None = None,
) -> None:
    """Load a model, write bulk embeddings (and cell-set embeddings) atomically."""
    from cellbridge.poppy import POPPY

    if (cells_path is None) != (cells_output is None):
        raise InputError("--cells", "give --cells and --cells-output together")
    _check_output(output, "--output", suffix=".h5ad")
    if cells_output is not None:
        _check_output(cells_output, "--cells-output", suffix=".h5ad")
        if cells_output.absolute() == output.absolute():
            raise InputError("--cells-output", "must differ from --output")
    if not key:
        raise InputError("--key", "must not be empty")
    model = POPPY.load(model_dir)
    bulk = read_h5ad(bulk_path, field="bulk")
    cells = read_cells(cells_path) if cells_path is not None else None
    try:
        z = model.embed_bulk(bulk, key_added=key)
        cell_sets = (
            model.embed_cells(cells, key_added=key, attention_key=None)
            if cells is not None
            else None
        )
    finally:
        if cells is not None:
            _close(cells)
    write_h5ad(bulk, output)
    table = Table(title=f"cellbridge poppy embed: {model_dir.name}", show_header=False)
    table.add_row("bulk profiles", f"{z.shape[0]} x {z.shape[1]} -> {output} obsm[{key!r}]")
    if cell_sets is not None and cells_output is not None:
        write_h5ad(cell_sets, cells_output)
        table.add_row(
            "cell sets",
            f"{cell_sets.n_obs} samples -> {cells_output} obsm[{key!r}], obs['n_cells']",
        )
    out.print(table)


# ---------------------------------------------------------------------------- commands


def _write_config(value: bool) -> None:
    if value:
        typer.echo(render_config_toml(), nl=False)
        raise typer.Exit()


@poppy_app.command()
@_friendly
def train(
    cells: Annotated[
        Path,
        typer.Argument(
            help="Single cells: .h5ad (obs\\[sample_key], obsm\\[cell_key]) or a cell store "
            f"({', '.join(STORE_SUFFIXES)}; needs --bulk-key)."
        ),
    ],
    bulk: Annotated[
        Path, typer.Argument(help="Bulk profiles .h5ad (log1p-CPM; obs cohort and sample).")
    ],
    similarity: Annotated[
        Path, typer.Argument(help="Sample similarity .h5ad from `cellbridge similarity`.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Model directory to write (replaced).")
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML (\\[poppy] table) or JSON file of options; command-line options win.",
        ),
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(help="Keep Lightning checkpoints here (last.ckpt after every epoch)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from CHECKPOINT_DIR/last.ckpt when present.")
    ] = True,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    write_config: Annotated[
        bool,
        typer.Option(
            "--write-config",
            callback=_write_config,
            is_eager=True,
            help="Print a TOML \\[poppy] table of all defaults and exit (options whose default "
            "is None are commented out: TOML has no null).",
        ),
    ] = False,
    embedding_dim: Annotated[int | None, typer.Option(help=_help("embedding_dim"))] = None,
    hidden_dim: Annotated[
        str | None, typer.Option(metavar="INTEGER|none", help=_help("hidden_dim"))
    ] = None,
    dropout: Annotated[float | None, typer.Option(help=_help("dropout"))] = None,
    temperature: Annotated[float | None, typer.Option(help=_help("temperature"))] = None,
    batch_size: Annotated[int | None, typer.Option(help=_help("batch_size"))] = None,
    max_cells: Annotated[
        str | None, typer.Option(metavar="INTEGER|none", help=_help("max_cells"))
    ] = None,
    learning_rate: Annotated[float | None, typer.Option(help=_help("learning_rate"))] = None,
    weight_decay: Annotated[float | None, typer.Option(help=_help("weight_decay"))] = None,
    max_epochs: Annotated[int | None, typer.Option(help=_help("max_epochs"))] = None,
    patience: Annotated[int | None, typer.Option(help=_help("patience"))] = None,
    val_fraction: Annotated[float | None, typer.Option(help=_help("val_fraction"))] = None,
    seed: Annotated[int | None, typer.Option(help=_help("seed"))] = None,
    cell_key: Annotated[str | None, typer.Option(help=_help("cell_key"))] = None,
    n_pcs: Annotated[int | None, typer.Option(help=_help("n_pcs"))] = None,
    bulk_key: Annotated[str | None, typer.Option(help=_help("bulk_key"))] = None,
    n_gene_components: Annotated[int | None, typer.Option(help=_help("n_gene_components"))] = None,
    sample_key: Annotated[str | None, typer.Option(help=_help("sample_key"))] = None,
    cohort_key: Annotated[str | None, typer.Option(help=_help("cohort_key"))] = None,
    assay_key: Annotated[str | None, typer.Option(help=_help("assay_key"))] = None,
    similarity_key: Annotated[str | None, typer.Option(help=_help("similarity_key"))] = None,
    num_workers: Annotated[int | None, typer.Option(help=_help("num_workers"))] = None,
    accelerator: Annotated[str | None, typer.Option(help=_help("accelerator"))] = None,
    devices: Annotated[
        str | None, typer.Option(metavar="INTEGER|TEXT", help=_help("devices"))
    ] = None,
    strategy: Annotated[str | None, typer.Option(help=_help("strategy"))] = None,
) -> None:
    """Fit POPPY stage 1 on cells, bulk profiles and their similarity; save the model.

    Options: defaults < --config file < the options given here.
    """
    given: dict[str, Any] = dict(locals())
    overrides = {f.name: given[f.name] for f in fields(POPPYConfig)}
    cfg = build_config(config, overrides)
    run_train(
        cells,
        bulk,
        similarity,
        output,
        config=cfg,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=progress,
    )


@poppy_app.command()
@_friendly
def embed(
    model: Annotated[Path, typer.Argument(help="Model directory from `cellbridge poppy train`.")],
    bulk: Annotated[Path, typer.Argument(help="Bulk profiles .h5ad to embed.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output .h5ad: the bulk with obsm[KEY].")
    ],
    cells: Annotated[
        Path | None,
        typer.Option(
            help=f"Single cells (.h5ad or a cell store, {', '.join(STORE_SUFFIXES)}) to embed "
            "as one cell set per sample."
        ),
    ] = None,
    cells_output: Annotated[
        Path | None,
        typer.Option(help="Output .h5ad of the cell-set embeddings (samples x 0 genes)."),
    ] = None,
    key: Annotated[str, typer.Option(help="obsm key of the embeddings.")] = "X_poppy",
) -> None:
    """Embed bulk profiles (and cell sets) with a trained POPPY model (unit-norm rows)."""
    run_embed(model, bulk, output, key=key, cells_path=cells, cells_output=cells_output)
