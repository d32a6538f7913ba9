"""``cellbridge bird signatures|embed|knn-eval``: BiRD (§2, §4) from the command line.

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

__all__ = ["bird_app", "run_embed", "run_knn_eval", "run_signatures"]

bird_app = typer.Typer(
    help="BiRD: drug embeddings from measured transcriptional responses "
    "(signatures, embed, knn-eval).",
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
    backed = config.by == "plate"  # plate by plate: X stays on disk between plates
    adata = read_h5ad(cells, field="cells", backed=backed)
    try:
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
            by=config.by,  # type: ignore[arg-type]
            progress=progress,
        )
    finally:
        if backed and adata.file is not None:
            adata.file.close()
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
    by: Annotated[
        str | None, typer.Option(help="line, or plate: read one plate at a time (backed).")
    ] = None,
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
    cfg = _config(
        config, reference_lines=reference_lines, method=method, alpha=alpha, top_k=top_k, by=by
    )
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


def run_knn_eval(
    cells: Path,
    embeddings: dict[str, Path],
    output: Path,
    config: BirdConfig,
    *,
    evaluation_lines: list[str] | None,
    test_fraction: float,
    k: int,
    seed: int,
    morgan: bool,
    random_dim: int | None,
    gmt: Path | None,
) -> None:
    """k-NN post-perturbation prediction (BiRD Task 1, Eq. 4) of every embedding."""
    from cellbridge._io import check_writable_dir
    from cellbridge.bird import (
        enrichment,
        knn_evaluation,
        load_embedding,
        mae_ecdf,
        morgan_embedding,
        random_embedding,
        read_gmt,
        top_improved_genes,
        win_rates,
    )
    from cellbridge.data import split_by_group
    from cellbridge.plotting import plot_enrichment, plot_mae_ecdf, plot_win_rates

    if not config.reference_lines:
        raise InputError("--reference-lines", "is empty", fix="name the reference lines")
    if not 0 < test_fraction < 1:
        raise InputError("--test-fraction", "must be in (0, 1)", values=[test_fraction])
    directory = check_writable_dir(output, field="--output")
    adata = read_h5ad(cells, field="cells")
    frames = {name: load_embedding(path) for name, path in embeddings.items()}
    if not frames and not morgan and random_dim is None:
        raise InputError(
            "--embedding", "no embedding to evaluate", fix="pass --embedding NAME=PATH"
        )
    drugs = sorted(next(iter(frames.values())).index) if frames else None
    obs = adata.obs
    treated = sorted(
        set(obs.loc[~obs[config.control_key].astype(bool), config.drug_key].astype(str))
    )
    drugs = drugs or treated
    if morgan:
        smiles = obs.drop_duplicates(config.drug_key).set_index(config.drug_key)["smiles"]
        frames["Morgan"] = morgan_embedding(smiles.astype(str).loc[drugs])
    if random_dim is not None:
        frames["random"] = random_embedding(drugs, dim=random_dim, seed=seed)
    lines = evaluation_lines or sorted(
        set(obs[config.cell_line_key].astype(str)) - set(config.reference_lines)
    )
    split = split_by_group(
        drugs, fractions=(1 - test_fraction, test_fraction), names=("train", "test"), seed=seed
    )
    result = knn_evaluation(
        frames,
        adata,
        train_drugs=list(split.index[split == "train"]),
        test_drugs=list(split.index[split == "test"]),
        evaluation_lines=lines,
        reference_lines=list(config.reference_lines),
        k=k,
        drug_key=config.drug_key,
        cell_line_key=config.cell_line_key,
        control_key=config.control_key,
    )
    W = win_rates(result.table)
    tables = {
        "knn_mae.csv": result.table,
        "knn_win_rates.csv": W,
        "knn_ecdf.csv": mae_ecdf(result.table),
        "knn_per_gene_mae.csv": result.per_gene,
    }
    figures = {"knn_ecdf.png": plot_mae_ecdf(result.table), "knn_win_rates.png": plot_win_rates(W)}
    if gmt is not None:
        sets, first = read_gmt(gmt), next(iter(frames))
        for other in [n for n in frames if n != first]:
            top = top_improved_genes(result.per_gene, first, other, n=500)
            table = enrichment(list(top.index), sets, list(result.per_gene.columns))
            tables[f"enrichment_{first}_vs_{other}.csv"] = table
            figures[f"enrichment_{first}_vs_{other}.png"] = plot_enrichment(table)
    for name, frame in tables.items():
        with atomic_path(directory / name) as tmp:
            frame.to_csv(tmp)
    for name, fig in figures.items():
        with atomic_path(directory / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    means = result.table.groupby("embedding")["mae"].mean().sort_values()
    out.print("mean MAE: " + ", ".join(f"{n} {v:.4f}" for n, v in means.items()))
    out.print(f"wrote {directory}/: {', '.join(sorted([*tables, *figures]))}")


@bird_app.command("knn-eval")
@_friendly
def knn_eval(
    cells: Annotated[Path, typer.Argument(help="Cells .h5ad of the screen (all lines).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    embedding: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PATH.parquet of a drug embedding (repeatable)."),
    ] = None,
    morgan: Annotated[bool, typer.Option(help="Add Morgan fingerprints (obs 'smiles').")] = False,
    random_dim: Annotated[
        int | None, typer.Option(help="Add a seeded random embedding of this size.")
    ] = None,
    reference_lines: Annotated[
        str | None, typer.Option(help="Comma-separated reference lines (never evaluated).")
    ] = None,
    evaluation_lines: Annotated[
        str | None, typer.Option(help="Comma-separated lines (default: all but reference).")
    ] = None,
    test_fraction: Annotated[float, typer.Option(help="Share of drugs held out.")] = 0.2,
    k: Annotated[int, typer.Option(help="Neighbours of Eq. 4.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the drug split and random embedding.")] = 0,
    gmt: Annotated[Path | None, typer.Option(help="Gene sets (.gmt) for Fig. 3C.")] = None,
    config: ConfigOption = None,
) -> None:
    """k-NN post-perturbation prediction of held-out drugs (BiRD Task 1, Eq. 4, Fig. 3)."""
    cfg = _config(config, reference_lines=reference_lines)
    paths: dict[str, Path] = {}
    for item in embedding or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError("--embedding", "must be NAME=PATH", values=[item])
        paths[name] = Path(path)
    lines = [x.strip() for x in evaluation_lines.split(",")] if evaluation_lines else None
    run_knn_eval(
        cells,
        paths,
        output,
        cfg,
        evaluation_lines=lines,
        test_fraction=test_fraction,
        k=k,
        seed=seed,
        morgan=morgan,
        random_dim=random_dim,
        gmt=gmt,
    )
