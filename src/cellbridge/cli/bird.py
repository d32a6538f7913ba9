"""``cellbridge bird signatures|embed``: BiRD drug embeddings (§2) from the command line.

Options come from, in increasing precedence, the defaults of
:class:`~cellbridge.bird.config.BirdConfig`, a config file (``--config``: TOML ``[bird]``
table or JSON) and the options given on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console

from cellbridge._io import atomic_path
from cellbridge.bird.config import BirdConfig
from cellbridge.cli.poppy import _build_options, _friendly, render_config_toml
from cellbridge.data.readers import read_h5ad
from cellbridge.errors import InputError

__all__ = ["bird_app", "run_embed", "run_signatures"]

bird_app = typer.Typer(
    help="BiRD: drug embeddings from measured transcriptional responses (signatures, embed).",
    no_args_is_help=True,
)
out = Console()

SIGNATURE_COLUMNS = ["cell_line", "drug", "gene", "rank", "logfc", "score", "pval", "qval"]


def run_signatures(cells: Path, output: Path, config: BirdConfig, *, progress: bool) -> None:
    """DE signatures of every (reference line, drug), written as one parquet table."""
    from cellbridge.bird import differential_response

    if not config.reference_lines:
        raise InputError(
            "--reference-lines", "is empty", fix="name the reference lines, e.g. A549,SNU-1"
        )
    if output.suffix != ".parquet":
        raise InputError("--output", "must end in .parquet", values=[str(output)])
    adata = read_h5ad(cells, field="cells")
    sig = differential_response(
        adata,
        reference_lines=list(config.reference_lines),
        drug_key=config.drug_key,
        control_key=config.control_key,
        plate_key=config.plate_key,
        cell_line_key=config.cell_line_key,
        method=config.method,  # type: ignore[arg-type]
        alpha=config.alpha,
        top_k=config.top_k,
        progress=progress,
    )
    table = (
        sig.table[SIGNATURE_COLUMNS] if len(sig.table) else pd.DataFrame(columns=SIGNATURE_COLUMNS)
    )
    # drugs with empty signatures keep a row with no gene, so embed sees every drug
    empty = [(c, d) for (c, d), genes in sig.genes.items() if not genes]
    if empty:
        blank = pd.DataFrame(empty, columns=["cell_line", "drug"])
        table = pd.concat([table, blank], ignore_index=True)
    with atomic_path(output) as tmp:
        table.to_parquet(tmp, index=False)
    out.print(
        f"{len(sig.genes)} (line, drug) signatures, median size "
        f"{int(pd.Series([len(g) for g in sig.genes.values()]).median())} genes -> {output}"
    )


def run_embed(signatures: Path, output: Path, config: BirdConfig) -> None:
    """Jaccard similarity per reference line, spectral embedding, concatenation."""
    from cellbridge.bird import bird_embedding, jaccard_similarity, save_embedding

    if not signatures.is_file():
        raise InputError("SIGNATURES", "file not found", values=[str(signatures)])
    table = pd.read_parquet(signatures)
    missing = [c for c in ("cell_line", "drug", "gene") if c not in table]
    if missing:
        raise InputError(
            "SIGNATURES", "lacks columns", values=missing, fix="use `cellbridge bird signatures`"
        )
    lines = list(config.reference_lines) or sorted(table["cell_line"].astype(str).unique())
    similarities = {}
    for line in lines:
        rows = table[table["cell_line"].astype(str) == line]
        if rows.empty:
            raise InputError("--reference-lines", "has no signatures in the file", values=[line])
        sets = {
            str(drug): [str(g) for g in group["gene"].dropna()]
            for drug, group in rows.groupby("drug", sort=True)
        }
        similarities[line] = jaccard_similarity(sets)
    embedding = bird_embedding(similarities, n_components=config.n_components)
    save_embedding(embedding, output)
    out.print(
        f"{embedding.shape[0]} drugs x {embedding.shape[1]} dimensions "
        f"({len(lines)} reference lines) -> {output}"
    )


ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML (\\[bird] table) or JSON options file.")
]


def _config(config: Path | None, **given: object) -> BirdConfig:
    lines = given.pop("reference_lines", None)
    if isinstance(lines, str):
        given["reference_lines"] = tuple(x.strip() for x in lines.split(",") if x.strip())
    return _build_options(BirdConfig, config, given)


@bird_app.command()
@_friendly
def signatures(
    cells: Annotated[
        Path | None, typer.Argument(help="Cells .h5ad (counts or log-normalised).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Signature table .parquet.")
    ] = None,
    reference_lines: Annotated[
        str | None, typer.Option(help="Comma-separated reference cell lines.")
    ] = None,
    method: Annotated[str | None, typer.Option(help="wilcoxon or t-test.")] = None,
    alpha: Annotated[float | None, typer.Option(help="q-value cut-off.")] = None,
    top_k: Annotated[int | None, typer.Option(help="Signature size.")] = None,
    config: ConfigOption = None,
    write_config: Annotated[
        bool, typer.Option("--write-config", help="Print a TOML \\[bird] table and exit.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Differential-response signatures per (reference line, drug) (BiRD §2)."""
    if write_config:
        print(render_config_toml(BirdConfig()), end="")
        raise typer.Exit()
    if cells is None or output is None:
        raise InputError("CELLS / --output", "both are required", fix="see --help")
    cfg = _config(config, reference_lines=reference_lines, method=method, alpha=alpha, top_k=top_k)
    run_signatures(cells, output, cfg, progress=progress)


@bird_app.command()
@_friendly
def embed(
    signatures_file: Annotated[
        Path, typer.Argument(help="Signature table from `cellbridge bird signatures`.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Embedding .parquet.")],
    reference_lines: Annotated[
        str | None, typer.Option(help="Lines to use (default: all in the table).")
    ] = None,
    n_components: Annotated[int | None, typer.Option(help="Dimensions per line.")] = None,
    config: ConfigOption = None,
) -> None:
    """Jaccard similarity -> spectral embedding -> concatenation (Algorithm 1)."""
    cfg = _config(config, reference_lines=reference_lines, n_components=n_components)
    run_embed(signatures_file, output, cfg)
