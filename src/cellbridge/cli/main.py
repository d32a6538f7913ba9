"""``cellbridge``: each command parses options, calls the public API, reports."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from cellbridge._version import __version__
from cellbridge.cli.bird import bird_app
from cellbridge.cli.demo import run_demo
from cellbridge.cli.poppy import poppy_app
from cellbridge.cli.similarity import run_similarity
from cellbridge.errors import CellbridgeError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="cellbridge",
    help="Carry single-cell foundation-model representations to bulk transcriptomes "
    "(POPPY) and drug perturbations (BiRD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(poppy_app, name="poppy")
app.add_typer(bird_app, name="bird")
err = Console(stderr=True)


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn cellbridge's own errors into one red line and exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CellbridgeError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cellbridge {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    """cellbridge command line."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@friendly_errors
def similarity(
    input: Annotated[Path, typer.Argument(help="Cells as .h5ad with sample and cell-type obs.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .h5ad (samples).")],
    sample_key: Annotated[str, typer.Option(help="obs column of sample ids.")] = "sample",
    cell_type_key: Annotated[
        str, typer.Option(help="obs column of cell-type labels.")
    ] = "cell_type",
    mapping: Annotated[
        Path | None,
        typer.Option(help="TSV/CSV with columns label, cl_id overriding the label mapping."),
    ] = None,
    ontology: Annotated[
        Path | None, typer.Option(help="Cell Ontology .obo/.json file (default: the shipped copy).")
    ] = None,
    ontology_version: Annotated[
        str | None, typer.Option(help="Version of the shipped CL, e.g. v2025-07-30.")
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            help="Refuse unmapped labels (--no-strict drops their cells and reports how many)."
        ),
    ] = True,
    min_cells: Annotated[int, typer.Option(help="Refuse samples with fewer cells.")] = 1,
    k: Annotated[int, typer.Option(help="Neighbours of the diffusion kernel (A.2).")] = 100,
    method: Annotated[str, typer.Option(help="auto | exact | tree (upper bound).")] = "auto",
    distances: Annotated[
        str,
        typer.Option(
            help="all: every pairwise W1 (obsp['emd']). knn: only each sample's k nearest, "
            "found exactly without the other pairs (obsp['emd_knn']; for large cohorts). "
            "The kernel is identical."
        ),
    ] = "all",
    n_jobs: Annotated[int, typer.Option(help="Threads for W1 (-1: all cores).")] = -1,
    dask_scheduler: Annotated[
        str | None,
        typer.Option(
            help="Solve W1 on a running Dask cluster: its scheduler address "
            "(tcp://host:8786) or scheduler file (.json). Same result; see docs/cluster.md."
        ),
    ] = None,
    dask_local_workers: Annotated[
        int,
        typer.Option(
            help="Solve W1 on a local Dask cluster of this many worker processes (0: no Dask)."
        ),
    ] = 0,
) -> None:
    """Compositions, exact ontology W1 and kernel similarity of every sample (POPPY §2.1)."""
    run_similarity(
        input,
        output,
        sample_key=sample_key,
        cell_type_key=cell_type_key,
        mapping=mapping,
        ontology=ontology,
        ontology_version=ontology_version,
        strict=strict,
        min_cells=min_cells,
        k=k,
        method=method,
        distances=distances,
        n_jobs=n_jobs,
        dask_scheduler=dask_scheduler,
        dask_local_workers=dask_local_workers,
    )


def _write_config(value: bool) -> None:
    if value:
        from cellbridge.cli.run import render_run_config

        typer.echo(render_run_config(), nl=False)
        raise typer.Exit()


@app.command()
@friendly_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "cellbridge-demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the semi-synthetic patients.")] = 0,
    n_jobs: Annotated[int, typer.Option(help="Threads (-1: all cores).")] = -1,
    write_config: Annotated[
        bool,
        typer.Option(
            "--write-config",
            callback=_write_config,
            is_eager=True,
            help="Print a starting config for `cellbridge run` (every step, every option) "
            "and exit.",
        ),
    ] = False,
) -> None:
    """Run cellbridge on its embedded data: semi-synthetic patients of real PBMCs (POPPY)
    and a simulated screen of real drugs (BiRD)."""
    from cellbridge._io import output_directory

    with output_directory(out, field="--out"):
        run_demo(out, seed=seed, n_jobs=n_jobs)


@app.command("run")
@friendly_errors
def run(
    config: Annotated[
        Path,
        typer.Argument(
            help="Run config (.toml): one table per step, e.g. [poppy.train], keyed by the "
            "command's options. Start from `cellbridge demo --write-config`."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print each step's command line; run nothing.")
    ] = False,
) -> None:
    """Run a pipeline of the commands above on your own data, from one config file."""
    from cellbridge.cli.run import run_config

    timings = run_config(config, dry_run=dry_run)
    for step, seconds in timings:
        err.print(f"{step}: {seconds:.1f} s", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
