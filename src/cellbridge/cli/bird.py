"""``cellbridge bird signatures|embed|knn-eval|align|evaluate``: BiRD from the command line.

Options come from, in increasing precedence, the defaults of
:class:`~cellbridge.bird.config.BirdConfig` (or :class:`~cellbridge.bird.AlignConfig` for
``align`` / ``evaluate``), a config file (``--config``: TOML ``[bird]`` / ``[align]``
table or JSON) and the options given on the command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console

from cellbridge._io import atomic_path, output_directory
from cellbridge.bird._controls import control_flags
from cellbridge.bird.config import AlignConfig, BirdConfig
from cellbridge.cli.poppy import _build_options, _friendly, render_config_toml
from cellbridge.cli.similarity import dask_from_options, write_png
from cellbridge.data.readers import read_h5ad
from cellbridge.errors import InputError

__all__ = [
    "bird_app",
    "run_align",
    "run_embed",
    "run_evaluate",
    "run_knn_eval",
    "run_signatures",
]

bird_app = typer.Typer(
    help="BiRD: drug embeddings from measured transcriptional responses "
    "(signatures, embed, knn-eval) and drug-aware alignment of cells (align, evaluate).",
    no_args_is_help=True,
)
out = Console()

SIGNATURE_COLUMNS = ["cell_line", "drug", "gene", "rank", "logfc", "score", "pval", "qval"]


def run_signatures(
    cells: Sequence[Path],
    output: Path,
    config: BirdConfig,
    *,
    progress: bool,
    dask_scheduler: str | None = None,
    dask_local_workers: int = 0,
) -> None:
    """DE signatures of every (reference line, drug), written as one parquet table.

    One ``cells`` file is read whole (or plate by plate when ``config.by == "plate"``);
    several files, or one folder of ``*.h5ad`` files, are per-plate files streamed by
    :func:`cellbridge.bird.signatures_from_plates`.
    """
    from cellbridge.bird import differential_response, signatures_from_plates

    if not config.reference_lines:
        raise InputError(
            "--reference-lines", "is empty", fix="name the reference lines, e.g. A549,SNU-1"
        )
    if output.suffix != ".parquet":
        raise InputError("--output", "must end in .parquet", values=[str(output)])
    if not cells:
        raise InputError("CELLS", "is required", fix="give an .h5ad file, several, or a folder")
    options = {
        "reference_lines": list(config.reference_lines),
        "drug_key": config.drug_key,
        "control_key": config.control_key,
        "control_drug": config.control_drug,
        "plate_key": config.plate_key,
        "cell_line_key": config.cell_line_key,
        "method": config.method,
        "alpha": config.alpha,
        "top_k": config.top_k,
        "progress": progress,
    }
    per_plate = len(cells) > 1 or cells[0].is_dir()
    with dask_from_options(dask_scheduler, dask_local_workers) as client:
        if per_plate:
            plates = cells[0] if len(cells) == 1 else list(cells)
            sig = signatures_from_plates(plates, client=client, **options)  # type: ignore[arg-type]
        else:
            backed = config.by == "plate"  # plate by plate: X stays on disk between plates
            adata = read_h5ad(cells[0], field="cells", backed=backed)
            try:
                sig = differential_response(
                    adata,
                    by=config.by,  # type: ignore[arg-type]
                    client=client,
                    **options,  # type: ignore[arg-type]
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
        list[Path] | None,
        typer.Argument(
            help="Cells .h5ad (counts or log-normalised); several files, or a folder of "
            "them, are per-plate files read one plate at a time (every (line, drug) on one "
            "plate, as in Tahoe-100M)."
        ),
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
        str | None,
        typer.Option(help="line, or plate: read one plate at a time (backed; one CELLS file)."),
    ] = None,
    control_drug: Annotated[
        str | None,
        typer.Option(
            help="The controls' drug (e.g. DMSO_TF in Tahoe-100M), instead of a boolean "
            "control column."
        ),
    ] = None,
    dask_scheduler: Annotated[
        str | None,
        typer.Option(
            "--dask-scheduler",
            help="Run on a running Dask cluster: its scheduler address (tcp://host:8786) or "
            "scheduler file (.json). Same result; see docs/cluster.md.",
        ),
    ] = None,
    dask_local_workers: Annotated[
        int,
        typer.Option(
            "--dask-local-workers",
            help="Run on a local Dask cluster of this many worker processes (0: no Dask).",
        ),
    ] = 0,
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
    if not cells or output is None:
        raise InputError("CELLS / --output", "both are required", fix="see --help")
    cfg = _config(
        config,
        reference_lines=reference_lines,
        method=method,
        alpha=alpha,
        top_k=top_k,
        by=by,
        control_drug=control_drug,
    )
    run_signatures(
        cells,
        output,
        cfg,
        progress=progress,
        dask_scheduler=dask_scheduler,
        dask_local_workers=dask_local_workers,
    )


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
    is_control = control_flags(
        obs,
        drug_key=config.drug_key,
        control_key=config.control_key,
        control_drug=config.control_drug,
        where="cells.obs",
    )
    treated = sorted(set(obs.loc[~is_control, config.drug_key].astype(str)))
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
        control_drug=config.control_drug,
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
        write_png(fig, directory / name)
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
    paths = _named_paths(embedding)
    with output_directory(output, field="--output"):
        run_knn_eval(
            cells,
            paths,
            output,
            cfg,
            evaluation_lines=_lines(evaluation_lines),
            test_fraction=test_fraction,
            k=k,
            seed=seed,
            morgan=morgan,
            random_dim=random_dim,
            gmt=gmt,
        )


def _named_paths(items: list[str] | None) -> dict[str, Path]:
    """``NAME=PATH`` options -> ``{name: path}``; names must be unique."""
    paths: dict[str, Path] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError("--embedding", "must be NAME=PATH", values=[item])
        if name in paths:
            raise InputError("--embedding", "names must be unique", values=[name])
        paths[name] = Path(path)
    return paths


def _lines(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


# ------------------------------------------------------------------ align / evaluate
AlignConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML (\\[align] table) or JSON options file.")
]


def _ah(name: str) -> str:
    from cellbridge.cli.poppy import _help

    return _help(name, AlignConfig)


def run_align(
    cells: Path,
    embedding: Path,
    output: Path,
    config: AlignConfig,
    *,
    lines: list[str] | None,
    pooled: bool,
    progress: bool,
) -> None:
    """Train aligners (one per line, or pooled) and save them under ``output``."""
    from cellbridge._io import check_writable_dir
    from cellbridge._lightning import is_main_process
    from cellbridge.bird import Aligner, drug_split, fit_per_line, load_embedding
    from cellbridge.bird.align import treated_cells

    directory = check_writable_dir(output, field="--output")
    adata = read_h5ad(cells, field="cells")
    space = load_embedding(embedding)
    if pooled:
        if lines is not None:
            column = adata.obs[config.cell_line_key].astype(str)
            adata = adata[column.isin(lines).to_numpy()].copy()
        models = {"pooled": Aligner(config).fit(adata, space, progress=progress)}
    else:
        split = drug_split(sorted(set(treated_cells(adata, config).drug)), config)
        models = fit_per_line(adata, space, config, lines=lines, split=split, progress=progress)
    if not is_main_process():  # a data-parallel run: every process holds the same models
        return
    for name, model in models.items():
        model.save(directory / name)
    first = next(iter(models.values()))
    assert first.split is not None
    with atomic_path(directory / "split.csv") as tmp:
        first.split.to_csv(tmp)
    for name, model in models.items():
        history = model.history
        loss = f"{history.train_loss[-1]:.3f}" if history and history.train_loss else "-"
        out.print(f"{name}: trained on {len(model.lines) or 1} line(s), last train loss {loss}")
    out.print(f"wrote {directory}/: {', '.join([*models, 'split.csv'])}")


@bird_app.command()
@_friendly
def align(
    cells: Annotated[
        Path | None, typer.Argument(help="Cells or replicates .h5ad with obsm[cell_key].")
    ] = None,
    embedding: Annotated[
        Path | None, typer.Argument(help="Drug embedding .parquet (drugs x dims).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Directory of the saved models.")
    ] = None,
    lines: Annotated[
        str | None, typer.Option(help="Comma-separated cell lines (default: all).")
    ] = None,
    pooled: Annotated[
        bool, typer.Option(help="One model on all lines instead of one per line.")
    ] = False,
    cell_key: Annotated[str | None, typer.Option(help=_ah("cell_key"))] = None,
    drug_key: Annotated[str | None, typer.Option(help=_ah("drug_key"))] = None,
    cell_line_key: Annotated[str | None, typer.Option(help=_ah("cell_line_key"))] = None,
    control_key: Annotated[
        str | None, typer.Option(metavar="TEXT|none", help=_ah("control_key"))
    ] = None,
    control_drug: Annotated[str | None, typer.Option(help=_ah("control_drug"))] = None,
    head: Annotated[str | None, typer.Option(help=_ah("head"))] = None,
    hidden_dim: Annotated[int | None, typer.Option(help=_ah("hidden_dim"))] = None,
    normalize_drugs: Annotated[
        bool | None,
        typer.Option("--normalize-drugs/--raw-drugs", help=_ah("normalize_drugs")),
    ] = None,
    epsilon: Annotated[float | None, typer.Option(help=_ah("epsilon"))] = None,
    sinkhorn_iterations: Annotated[
        int | None, typer.Option(help=_ah("sinkhorn_iterations"))
    ] = None,
    drugs_per_batch: Annotated[int | None, typer.Option(help=_ah("drugs_per_batch"))] = None,
    cells_per_drug: Annotated[int | None, typer.Option(help=_ah("cells_per_drug"))] = None,
    batches_per_epoch: Annotated[
        str | None, typer.Option(metavar="INTEGER|none", help=_ah("batches_per_epoch"))
    ] = None,
    learning_rate: Annotated[float | None, typer.Option(help=_ah("learning_rate"))] = None,
    weight_decay: Annotated[float | None, typer.Option(help=_ah("weight_decay"))] = None,
    max_epochs: Annotated[int | None, typer.Option(help=_ah("max_epochs"))] = None,
    patience: Annotated[int | None, typer.Option(help=_ah("patience"))] = None,
    val_fraction: Annotated[float | None, typer.Option(help=_ah("val_fraction"))] = None,
    test_fraction: Annotated[float | None, typer.Option(help=_ah("test_fraction"))] = None,
    seed: Annotated[int | None, typer.Option(help=_ah("seed"))] = None,
    accelerator: Annotated[str | None, typer.Option(help=_ah("accelerator"))] = None,
    devices: Annotated[
        str | None, typer.Option(metavar="INTEGER|TEXT", help=_ah("devices"))
    ] = None,
    strategy: Annotated[str | None, typer.Option(help=_ah("strategy"))] = None,
    num_nodes: Annotated[int | None, typer.Option(help=_ah("num_nodes"))] = None,
    config: AlignConfigOption = None,
    write_config: Annotated[
        bool, typer.Option("--write-config", help="Print a TOML \\[align] table and exit.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Align frozen cell embeddings to a drug embedding by entropic OT (BiRD §3, Eq. 2-3)."""
    from dataclasses import fields

    if write_config:
        print(render_config_toml(AlignConfig()), end="")
        raise typer.Exit()
    if cells is None or embedding is None or output is None:
        raise InputError("CELLS / EMBEDDING / --output", "all are required", fix="see --help")
    given: dict[str, object] = dict(locals())
    cfg = _build_options(AlignConfig, config, {f.name: given[f.name] for f in fields(AlignConfig)})
    with output_directory(output, field="--output"):
        run_align(
            cells, embedding, output, cfg, lines=_lines(lines), pooled=pooled, progress=progress
        )


def run_evaluate(
    cells: Path,
    embeddings: dict[str, Path],
    output: Path,
    config: AlignConfig,
    *,
    lines: list[str] | None,
    morgan: bool,
    admet: bool,
    admet_table: Path | None,
    random_dim: int | None,
    progress: bool,
) -> None:
    """Align the cells to every drug embedding and score retrieval and separability."""
    from cellbridge._io import check_writable_dir
    from cellbridge.bird import (
        PrecomputedADMET,
        admet_embedding,
        compare_drug_spaces,
        load_embedding,
        morgan_embedding,
        random_embedding,
    )
    from cellbridge.bird.align import treated_cells
    from cellbridge.plotting import (
        plot_cross_line_auroc,
        plot_retrieval_roc,
        plot_separability,
    )

    directory = check_writable_dir(output, field="--output")
    adata = read_h5ad(cells, field="cells")
    frames = {name: load_embedding(path) for name, path in embeddings.items()}
    drugs = sorted(set(treated_cells(adata, config).drug))
    if morgan or admet or admet_table is not None:
        if "smiles" not in adata.obs:
            raise InputError("cells.obs", "has no 'smiles' column for --morgan / --admet")
        smiles = adata.obs.drop_duplicates(config.drug_key).set_index(config.drug_key)["smiles"]
        smiles = smiles.astype(str)
        smiles.index = smiles.index.astype(str)
        smiles = smiles.loc[drugs]
        if morgan:
            frames["Morgan"] = morgan_embedding(smiles)
        if admet_table is not None:
            table = pd.read_csv(admet_table)
            frames["ADMET-AI"] = admet_embedding(smiles, model=PrecomputedADMET(table))
        elif admet:
            frames["ADMET-AI"] = admet_embedding(smiles)
    if random_dim is not None:
        frames["random"] = random_embedding(drugs, dim=random_dim, seed=config.seed)
    if not frames:
        raise InputError("--embedding", "no embedding to evaluate", fix="pass NAME=PATH")
    summary, results = compare_drug_spaces(adata, frames, config, lines=lines, progress=progress)
    data = summary.attrs.get("data")
    tables: dict[str, pd.DataFrame] = {"retrieval_summary.csv": summary}
    figures = {
        "retrieval_roc.png": plot_retrieval_roc(
            {name: r.roc for name, r in results.items()}, data=data
        ),
        "separability.png": plot_separability(summary, data=data),
    }
    for name, result in results.items():
        tables[f"retrieval_auroc_{name}.csv"] = result.auroc
        tables[f"retrieval_roc_{name}.csv"] = result.roc
        tables[f"separability_{name}.csv"] = result.separability
        figures[f"cross_line_auroc_{name}.png"] = plot_cross_line_auroc(
            result.auroc, title=f"Retrieval across cell lines: {name}", data=data
        )
    for file, frame in tables.items():
        with atomic_path(directory / file) as tmp:
            frame.to_csv(tmp)
    for file, fig in figures.items():
        write_png(fig, directory / file)
    shown = summary["auroc"].dropna().sort_values(ascending=False)
    out.print(
        "retrieval AUROC (held-out drugs): " + ", ".join(f"{n} {v:.3f}" for n, v in shown.items())
    )
    out.print(f"wrote {directory}/: {', '.join(sorted([*tables, *figures]))}")


@bird_app.command()
@_friendly
def evaluate(
    cells: Annotated[Path, typer.Argument(help="Cells or replicates .h5ad with obsm[cell_key].")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    embedding: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PATH.parquet of a drug embedding (repeatable)."),
    ] = None,
    morgan: Annotated[bool, typer.Option(help="Add Morgan fingerprints (obs 'smiles').")] = False,
    admet: Annotated[
        bool, typer.Option(help="Add ADMET-AI predictions (needs cellbridge[admet]).")
    ] = False,
    admet_table: Annotated[
        Path | None,
        typer.Option(help="Add stored ADMET-AI predictions (.csv: smiles + properties)."),
    ] = None,
    random_dim: Annotated[
        int | None, typer.Option(help="Add a seeded random embedding of this size.")
    ] = None,
    lines: Annotated[
        str | None, typer.Option(help="Comma-separated cell lines (default: all).")
    ] = None,
    epsilon: Annotated[float | None, typer.Option(help=_ah("epsilon"))] = None,
    max_epochs: Annotated[int | None, typer.Option(help=_ah("max_epochs"))] = None,
    head: Annotated[str | None, typer.Option(help=_ah("head"))] = None,
    cell_key: Annotated[str | None, typer.Option(help=_ah("cell_key"))] = None,
    seed: Annotated[int | None, typer.Option(help=_ah("seed"))] = None,
    config: AlignConfigOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = False,
) -> None:
    """Zero-shot retrieval, cross-line AUROC and scIB separability of every drug embedding
    (BiRD Task 2, Eq. 5; Figs. 4-5, Table 1); one shared drug split. Other alignment
    options: --config (an \\[align] table, see `cellbridge bird align --write-config`)."""
    cfg = _build_options(
        AlignConfig,
        config,
        {
            "epsilon": epsilon,
            "max_epochs": max_epochs,
            "head": head,
            "cell_key": cell_key,
            "seed": seed,
        },
    )
    with output_directory(output, field="--output"):
        run_evaluate(
            cells,
            _named_paths(embedding),
            output,
            cfg,
            lines=_lines(lines),
            morgan=morgan,
            admet=admet,
            admet_table=admet_table,
            random_dim=random_dim,
            progress=progress,
        )
