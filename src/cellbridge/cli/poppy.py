"""``cellbridge poppy train|embed|finetune|attribute``: POPPY (§2.2) from the command line.

``train`` builds a :class:`~cellbridge.poppy.POPPYConfig` from, in increasing precedence,
its defaults, a config file (``--config``, TOML ``[poppy]`` table or JSON) and the options
given on the command line, fits :class:`~cellbridge.poppy.POPPY` and saves the model
directory (``config.json`` + ``model.safetensors``, written atomically; the config, the
split and the training history live in ``config.json``). ``embed`` loads such a directory
and writes bulk (and optionally cell-set) embeddings.

``finetune`` (stage 2, §2.2.5) builds a :class:`~cellbridge.poppy.PhenotypeConfig` the same
way (TOML ``[finetune]`` table), fits the phenotype head of a stage-1 model over a reference
atlas and saves the fine-tuned model directory; ``attribute`` writes the per-cell
attribution of a fine-tuned model (and optionally its per-profile predictions) as CSV.
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
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ParamSpec,
    TypeVar,
    get_args,
    get_origin,
    get_type_hints,
)

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from cellbridge._io import atomic_path
from cellbridge._options import Options
from cellbridge.cli.similarity import write_h5ad
from cellbridge.data.readers import read_h5ad
from cellbridge.errors import InputError
from cellbridge.poppy.config import PhenotypeConfig, POPPYConfig

if TYPE_CHECKING:
    import anndata

    from cellbridge.data import CellStore
    from cellbridge.poppy import POPPY

__all__ = [
    "build_config",
    "build_finetune_config",
    "poppy_app",
    "render_config_toml",
    "run_attribute",
    "run_embed",
    "run_finetune",
    "run_train",
]

P = ParamSpec("P")
R = TypeVar("R")
ConfigT = TypeVar("ConfigT", bound=Options)

out = Console()

#: Suffixes read as a :class:`~cellbridge.data.CellStore` (HDF5 file of per-sample
#: embeddings) instead of an AnnData; every other suffix but ``.h5ad`` is refused.
STORE_SUFFIXES = (".h5", ".cellstore")

#: Command-line spelling of "no value" for options whose config field may be None.
NONE_WORD = "none"

_NONE_NOTE = f" Give '{NONE_WORD}' for None."

poppy_app = typer.Typer(
    name="poppy",
    help="POPPY: align bulk profiles and single-cell samples (train, embed), then predict "
    "a phenotype over a reference atlas (finetune, attribute).",
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


def _field_docs(cls: type[Options] = POPPYConfig) -> dict[str, str]:
    """Each attribute's description in the docstring of ``cls``, as plain text."""
    doc = cls.__doc__ or ""
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


FIELD_DOCS = _field_docs(POPPYConfig)

#: Per config table (``SECTION``): field descriptions and type hints.
_DOCS = {cls.SECTION: _field_docs(cls) for cls in (POPPYConfig, PhenotypeConfig)}
_HINTS = {cls.SECTION: get_type_hints(cls) for cls in (POPPYConfig, PhenotypeConfig)}


def _docs(cls: type[Options]) -> dict[str, str]:
    return _DOCS[cls.SECTION] if cls.SECTION in _DOCS else _field_docs(cls)


def _hints(cls: type[Options]) -> dict[str, Any]:
    return _HINTS[cls.SECTION] if cls.SECTION in _HINTS else get_type_hints(cls)


#: Per config table: what its options configure and the command that reads them.
_TABLES = {
    POPPYConfig.SECTION: ("POPPY stage-1 options", "poppy train"),
    PhenotypeConfig.SECTION: ("POPPY stage-2 (phenotype head) options", "poppy finetune"),
    "bird": ("BiRD options", "bird signatures|embed"),
}


def _help(name: str, cls: type[Options] = POPPYConfig) -> str:
    default = getattr(cls(), name)
    nullable = type(None) in get_args(_hints(cls)[name])
    shown = NONE_WORD if default is None else default
    note = _NONE_NOTE if nullable else ""
    return f"{_docs(cls).get(name, name)}.{note} \\[default: {shown}]"


def _ft_help(name: str) -> str:
    return _help(name, PhenotypeConfig)


def render_config_toml(config: Options | None = None) -> str:
    """A TOML table of every option of ``config`` (default: the stage-1 defaults).

    The table is ``config.SECTION``: ``[poppy]`` for :class:`POPPYConfig`, ``[finetune]``
    for :class:`PhenotypeConfig`. TOML has no null: an option whose value is None is
    written as a comment and thus left out of the table; leaving it out of a config file
    keeps its default.
    """
    config = config if config is not None else POPPYConfig()
    section = config.SECTION
    title, command = _TABLES.get(section, ("Options", "..."))
    docs = _docs(type(config))
    lines = [
        f"# {title}: cellbridge {command} ... --config THIS_FILE",
        "# Command-line options override these values. Options set to None have no TOML",
        "# value: they are commented out, and leaving them out keeps None.",
        f"[{section}]",
    ]
    for name, value in config.to_dict().items():
        doc = textwrap.wrap(docs.get(name, name), width=86)
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
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string


def _parse_value(name: str, raw: object, cls: type[Options] = POPPYConfig) -> object:
    """Turn a command-line string into the type of field ``name`` of ``cls``."""
    option = "--" + name.replace("_", "-")
    hint = _hints(cls)[name]
    args = get_args(hint)
    if not isinstance(raw, str):
        return raw  # typed by typer already
    if get_origin(hint) is tuple:  # a list option: comma-separated on the command line
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    nullable = type(None) in args
    if nullable and raw.strip().lower() == NONE_WORD:
        return None
    or_none = f" or '{NONE_WORD}'" if nullable else ""
    if int in args:
        if re.fullmatch(r"[+-]?\d+", raw.strip()):
            return int(raw)
        if str in args:  # e.g. devices: 2 or "auto"
            return raw
        raise InputError(option, f"must be an integer{or_none}", values=[raw])
    if float in args:
        try:
            return float(raw)
        except ValueError:
            raise InputError(option, f"must be a number{or_none}", values=[raw]) from None
    return raw


def build_config(config_file: Path | None, overrides: dict[str, object]) -> POPPYConfig:
    """Defaults < ``config_file`` < ``overrides`` (the options given on the command line).

    ``overrides`` maps field names to values; ``None`` means "not given" and is skipped.
    """
    return _build_options(POPPYConfig, config_file, overrides)


def build_finetune_config(
    config_file: Path | None, overrides: dict[str, object]
) -> PhenotypeConfig:
    """:func:`build_config` for stage 2: a :class:`PhenotypeConfig` (``[finetune]`` table)."""
    return _build_options(PhenotypeConfig, config_file, overrides)


def _build_options(
    cls: type[ConfigT], config_file: Path | None, overrides: dict[str, object]
) -> ConfigT:
    base = cls.from_file(config_file) if config_file is not None else cls()
    given = {k: _parse_value(k, v, cls) for k, v in overrides.items() if v is not None}
    values = {**base.to_dict(), **given}
    try:
        config = cls.from_dict(values, field="options")
        _check_lightning_names(config)
    except InputError as err:
        if err.field in given:  # name the option the user typed
            option = "--" + err.field.replace("_", "-")
            raise InputError(option, err.problem, values=err.values, fix=err.fix) from None
        raise
    return config


def _check_lightning_names(config: Options) -> None:
    """Refuse accelerator/strategy names Lightning does not know, before any data is read."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    accelerator = getattr(config, "accelerator", "auto")
    accelerators = {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    if accelerator not in accelerators:
        raise InputError("accelerator", "unknown", values=[accelerator], fix=_one_of(accelerators))
    strategy = getattr(config, "strategy", "auto")
    strategies = {"auto", *StrategyRegistry.available_strategies()}
    if strategy not in strategies:
        raise InputError("strategy", "unknown", values=[strategy], fix=_one_of(strategies))


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
    from cellbridge._lightning import is_main_process
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
    if not is_main_process():  # a data-parallel run: every process holds the same model
        return model
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


def loco_path(output: Path) -> Path:
    """Where ``finetune --evaluate`` writes its table: ``OUTPUT``'s sibling ``OUTPUT.loco.csv``."""
    return output.with_name(f"{output.name}.loco.csv")


def run_finetune(
    model_dir: Path,
    bulk_path: Path,
    atlas_path: Path,
    output: Path,
    *,
    config: PhenotypeConfig,
    progress: bool = True,
    evaluate: bool = False,
    cohort_key: str = "cohort",
) -> POPPY:
    """Load a stage-1 model, fit its phenotype head, save the model directory.

    With ``evaluate``, first run :func:`cellbridge.poppy.evaluate_phenotype` (leave one
    cohort out, the stage-1 model as it was loaded) and write :func:`loco_path`.
    """
    from cellbridge.poppy import POPPY, evaluate_phenotype

    _check_model_output(output)
    evaluation_path = loco_path(output)
    if evaluate:
        _check_output(evaluation_path, "--evaluate", suffix=".csv")
    if not cohort_key:
        raise InputError("--cohort-key", "must not be empty")
    model = POPPY.load(model_dir)
    bulk = read_h5ad(bulk_path, field="bulk")
    atlas = read_h5ad(atlas_path, field="atlas")
    evaluation = (
        evaluate_phenotype(model, bulk, atlas, config, cohort_key=cohort_key, progress=progress)
        if evaluate
        else None
    )
    model.finetune(bulk, atlas, config, progress=progress)
    model.save(output)
    out.print(finetune_summary(model, bulk, atlas_path, output))
    out.print(f"wrote {output}/: config.json (stage-1 and stage-2 options) + model.safetensors")
    if evaluation is not None:
        write_csv(evaluation, evaluation_path, index=False)
        out.print(evaluation_summary(evaluation, evaluation_path))
    return model


def finetune_summary(model: POPPY, bulk: anndata.AnnData, atlas_path: Path, output: Path) -> Table:
    """The numbers a person checks first after fine-tuning."""
    tuned = model.phenotype
    assert tuned is not None  # set by finetune
    cfg = tuned.config
    labels = bulk.obs[cfg.label_key].astype(float).to_numpy()
    table = Table(title=f"cellbridge poppy finetune: {output.name}", show_header=False)
    rows = [
        ("profiles", f"{bulk.n_obs} bulk ({int(labels.sum())} with {cfg.label_key} = 1)"),
        ("reference cells", f"{tuned.reference.shape[0]} from {atlas_path.name}"),
        ("reference", f"{cfg.reference} ({tuned.reference.shape[1]} dims)"),
        ("bulk encoder", "fine-tuned" if cfg.finetune_bulk else "frozen"),
    ]
    if tuned.history:
        rows += [
            ("epochs run", f"{len(tuned.history)}"),
            ("final train loss", f"{tuned.history[-1]:.4f} (first epoch {tuned.history[0]:.4f})"),
        ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def evaluation_summary(evaluation: pd.DataFrame, path: Path) -> Table:
    """Mean leave-one-cohort-out AUROC per method, in the order evaluated."""
    table = Table(title=f"leave-one-cohort-out AUROC -> {path}")
    table.add_column("method")
    table.add_column("mean AUROC", justify="right")
    table.add_column("per cohort", justify="right")
    for method, rows in evaluation.groupby("method", sort=False):
        per = ", ".join(f"{c}: {a:.2f}" for c, a in zip(rows["cohort"], rows["auroc"], strict=True))
        table.add_row(str(method), f"{rows['auroc'].mean():.3f}", per)
    return table


def write_csv(frame: pd.DataFrame, path: Path, *, index: bool = True) -> None:
    """Write CSV atomically; a nameless index is written under the label ``"id"``."""
    label = str(frame.index.name) if frame.index.name is not None else "id"
    with atomic_path(path) as tmp:
        if index:
            frame.to_csv(tmp, index_label=label)
        else:
            frame.to_csv(tmp, index=False)


#: Cell types listed by ``attribute``'s summary.
TOP_CELL_TYPES = 5


def run_attribute(
    model_dir: Path,
    bulk_path: Path,
    output: Path,
    *,
    label_key: str | None = None,
    predictions: Path | None = None,
) -> pd.DataFrame:
    """Load a fine-tuned model, write the per-cell attribution (and predictions) as CSV."""
    from cellbridge.poppy import POPPY

    _check_output(output, "--output", suffix=".csv")
    if predictions is not None:
        _check_output(predictions, "--predictions", suffix=".csv")
        if predictions.absolute() == output.absolute():
            raise InputError("--predictions", "must differ from --output")
    if label_key is not None and not label_key:
        raise InputError("--label-key", "must not be empty")
    model = POPPY.load(model_dir)
    bulk = read_h5ad(bulk_path, field="bulk")
    attribution = model.attribute(bulk, label_key=label_key)  # refuses a model with no head
    predicted = None
    if predictions is not None:
        probability = model.predict_phenotype(bulk, key_added=None)
        predicted = pd.DataFrame({"probability": probability}, index=bulk.obs_names.astype(str))
        predicted.index.name = bulk.obs_names.name or "profile"
        assert model.phenotype is not None  # attribute refused otherwise
        key = label_key if label_key is not None else model.phenotype.config.label_key
        if key in bulk.obs:
            predicted[key] = bulk.obs[key].to_numpy()
    write_csv(attribution, output)
    table = Table(title=f"cellbridge poppy attribute: {model_dir.name}", show_header=False)
    table.add_row("reference cells", f"{attribution.shape[0]} -> {output}")
    if predicted is not None and predictions is not None:
        write_csv(predicted, predictions)
        table.add_row("profiles", f"{predicted.shape[0]} predictions -> {predictions}")
    out.print(table)
    if {"responder_score", "cell_type"} <= set(attribution.columns):
        out.print(top_cell_types(attribution))
    return attribution


def top_cell_types(attribution: pd.DataFrame, n: int = TOP_CELL_TYPES) -> Table:
    """The cell types with the highest mean responder score."""
    grouped = attribution.groupby("cell_type", observed=True, sort=False)
    summary = pd.DataFrame(
        {
            "cells": grouped.size(),
            "responder_score": grouped["responder_score"].mean(),
            "mean_attention": grouped["mean_attention"].mean(),
        }
    ).sort_values("responder_score", ascending=False)
    table = Table(title=f"top {min(n, len(summary))} cell types by mean responder score")
    for column in ("cell type", "cells", "responder score", "mean attention"):
        table.add_column(column, justify="left" if column == "cell type" else "right")
    for name, row in summary.head(n).iterrows():
        table.add_row(
            str(name),
            str(int(row["cells"])),
            f"{row['responder_score']:.3f}",
            f"{row['mean_attention']:.2e}",
        )
    return table


# ---------------------------------------------------------------------------- commands


def _write_config(value: bool) -> None:
    if value:
        typer.echo(render_config_toml(POPPYConfig()), nl=False)
        raise typer.Exit()


def _write_finetune_config(value: bool) -> None:
    if value:
        typer.echo(render_config_toml(PhenotypeConfig()), nl=False)
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
    num_nodes: Annotated[int | None, typer.Option(help=_help("num_nodes"))] = None,
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


@poppy_app.command()
@_friendly
def finetune(
    model: Annotated[Path, typer.Argument(help="Model directory from `cellbridge poppy train`.")],
    bulk: Annotated[
        Path,
        typer.Argument(help="Labelled bulk profiles .h5ad (log1p-CPM; obs\\[label_key] 0/1)."),
    ],
    atlas: Annotated[
        Path,
        typer.Argument(
            help="Reference cells .h5ad with the stage-1 cell embedding in obsm (their obs, "
            "e.g. cell_type, is kept for `cellbridge poppy attribute`)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Fine-tuned model directory to write (replaced).")
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML (\\[finetune] table) or JSON file of options; command-line options win.",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate",
            help="Also run the leave-one-cohort-out evaluation (POPPY, POPPY w/o stage 1, bulk "
            "encoder + head) from the loaded model; writes OUTPUT.loco.csv next to OUTPUT.",
        ),
    ] = False,
    cohort_key: Annotated[
        str | None,
        typer.Option(help="obs column of the cohorts, for --evaluate. \\[default: cohort]"),
    ] = None,
    write_config: Annotated[
        bool,
        typer.Option(
            "--write-config",
            callback=_write_finetune_config,
            is_eager=True,
            help="Print a TOML \\[finetune] table of all defaults and exit (options whose "
            "default is None are commented out: TOML has no null).",
        ),
    ] = False,
    label_key: Annotated[str | None, typer.Option(help=_ft_help("label_key"))] = None,
    reference: Annotated[str | None, typer.Option(help=_ft_help("reference"))] = None,
    max_reference_cells: Annotated[
        str | None, typer.Option(metavar="INTEGER|none", help=_ft_help("max_reference_cells"))
    ] = None,
    query_dim: Annotated[int | None, typer.Option(help=_ft_help("query_dim"))] = None,
    temperature: Annotated[
        str | None, typer.Option(metavar="FLOAT|none", help=_ft_help("temperature"))
    ] = None,
    finetune_bulk: Annotated[
        bool | None,
        typer.Option("--finetune-bulk/--freeze-bulk", help=_ft_help("finetune_bulk")),
    ] = None,
    reconstruction_weight: Annotated[
        float | None, typer.Option(help=_ft_help("reconstruction_weight"))
    ] = None,
    reconstruction_space: Annotated[
        str | None, typer.Option(help=_ft_help("reconstruction_space"))
    ] = None,
    learning_rate: Annotated[float | None, typer.Option(help=_ft_help("learning_rate"))] = None,
    weight_decay: Annotated[float | None, typer.Option(help=_ft_help("weight_decay"))] = None,
    batch_size: Annotated[int | None, typer.Option(help=_ft_help("batch_size"))] = None,
    max_epochs: Annotated[int | None, typer.Option(help=_ft_help("max_epochs"))] = None,
    chunk_size: Annotated[int | None, typer.Option(help=_ft_help("chunk_size"))] = None,
    seed: Annotated[int | None, typer.Option(help=_ft_help("seed"))] = None,
    accelerator: Annotated[str | None, typer.Option(help=_ft_help("accelerator"))] = None,
    devices: Annotated[
        str | None, typer.Option(metavar="INTEGER|TEXT", help=_ft_help("devices"))
    ] = None,
) -> None:
    """Fit POPPY stage 2: a phenotype head over a reference atlas; save the model.

    Options: defaults < --config file < the options given here.
    """
    given: dict[str, Any] = dict(locals())
    overrides = {f.name: given[f.name] for f in fields(PhenotypeConfig)}
    if cohort_key is not None and not evaluate:
        raise InputError("--cohort-key", "is only used with --evaluate")
    cfg = build_finetune_config(config, overrides)
    run_finetune(
        model,
        bulk,
        atlas,
        output,
        config=cfg,
        progress=progress,
        evaluate=evaluate,
        cohort_key=cohort_key if cohort_key is not None else "cohort",
    )


@poppy_app.command()
@_friendly
def attribute(
    model: Annotated[
        Path, typer.Argument(help="Fine-tuned model directory from `cellbridge poppy finetune`.")
    ],
    bulk: Annotated[Path, typer.Argument(help="Bulk profiles .h5ad whose attention is summed.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Output .csv: one row per reference cell (its atlas obs, value, "
            "mean_attention; with labels attention_1, attention_0, responder_score).",
        ),
    ],
    label_key: Annotated[
        str | None,
        typer.Option(
            help="obs column of BULK with 0/1 labels for the responder score. "
            "\\[default: the fine-tuning label_key, when BULK has it]"
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(help="Also write each profile's predicted probability of phenotype 1 (.csv)."),
    ] = None,
) -> None:
    """Attribute a fine-tuned model's predictions to its reference cells (CSV)."""
    run_attribute(model, bulk, output, label_key=label_key, predictions=predictions)
