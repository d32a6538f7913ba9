"""The work behind ``cellbridge similarity`` (and the helpers the demo shares)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import anndata
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from cellbridge._checks import require_unique
from cellbridge._io import atomic_path, check_writable_dir
from cellbridge.data.readers import read_h5ad
from cellbridge.errors import InputError

if TYPE_CHECKING:
    from distributed import Client
    from matplotlib.figure import Figure

out = Console()


def read_mapping(path: Path) -> dict[str, str]:
    """A label -> CL id table from a TSV/CSV file with columns ``label`` and ``cl_id``."""
    if not path.is_file():
        raise InputError("mapping", f"no such file: {str(path)!r}")
    table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    missing = [c for c in ("label", "cl_id") if c not in table.columns]
    if missing:
        raise InputError(
            "mapping",
            f"{str(path)!r} lacks columns",
            values=missing,
            fix="give a header line with 'label' and 'cl_id'",
        )
    require_unique(table["label"], "mapping", what="labels")
    return dict(zip(table["label"], table["cl_id"], strict=True))


def write_h5ad(adata: anndata.AnnData, path: Path) -> None:
    """Write atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def write_png(figure: Figure, path: Path) -> None:
    """Save a figure as PNG atomically, then close it (pyplot keeps figures open until
    closed: a long session writing many would pile them up)."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(figure)


def write_json(payload: dict[str, Any], path: Path) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def summary_table(sim: anndata.AnnData, title: str) -> Table:
    """Rows of numbers a person checks first."""
    info = sim.uns["cellbridge"]
    K = sim.obsp["similarity"]
    if "emd" in sim.obsp:
        D = np.asarray(sim.obsp["emd"])
        off = D[~np.eye(len(D), dtype=bool)] if len(D) > 1 else np.zeros(1)
        label = "W1 distances"
    else:  # distances="knn": the neighbours' distances only
        off = sim.obsp["emd_knn"].data if sim.obsp["emd_knn"].nnz else np.zeros(1)
        label = "W1 to k nearest"
    table = Table(title=title, show_header=False)
    rows = [
        ("samples", f"{sim.n_obs}"),
        ("ontology", f"{info['ontology']}"),
        (
            "graph",
            f"{info['graph_nodes']} nodes, {len(info['graph_relations'])} edges"
            f"{' (tree)' if info['graph_is_tree'] else ' (with cycles: exact solver)'}",
        ),
        (label, f"min {off.min():.4f}  median {np.median(off):.4f}  max {off.max():.4f}"),
        (
            "kernel",
            f"k = {info['params']['k_used']}, {K.nnz} non-zeros "
            f"({K.nnz / max(1, sim.n_obs**2):.1%} dense)",
        ),
        ("time", "  ".join(f"{k} {v:.2f}s" for k, v in info["seconds"].items())),
    ]
    if info["dropped_cells"]:
        rows.append(("dropped cells", json.dumps(info["dropped_cells"])))
    for name, value in rows:
        table.add_row(name, value)
    return table


def check_dask_options(scheduler: str | None, local_workers: int) -> None:
    """Refuse contradictory or bad ``--dask-*`` options before any work is done."""
    if isinstance(local_workers, bool) or local_workers < 0:
        raise InputError(
            "--dask-local-workers", f"must be 0 (no Dask) or more, got {local_workers}"
        )
    if scheduler is not None and local_workers:
        raise InputError(
            "--dask-scheduler",
            "give either a scheduler or --dask-local-workers, not both",
        )


@contextmanager
def dask_from_options(scheduler: str | None, local_workers: int) -> Iterator[Client | None]:
    """The Dask client that ``--dask-scheduler`` / ``--dask-local-workers`` ask for.

    ``None`` when neither is given; a local cluster of ``local_workers`` processes on
    loopback (closed on exit); or a client connected to a running scheduler, by address or
    scheduler file (the client is closed on exit, the cluster left running).
    """
    check_dask_options(scheduler, local_workers)
    if scheduler is None and not local_workers:
        yield None
        return
    from cellbridge.distributed import dask_client

    if scheduler is None:
        with dask_client("local", n_workers=local_workers) as local:
            yield local
        return
    try:
        import distributed
    except ImportError:  # pragma: no cover - exercised only without dask installed
        raise InputError(
            "--dask-scheduler",
            "needs dask.distributed, which is not installed",
            fix='pip install "cellbridge[distributed]"',
        ) from None
    by_file = scheduler.endswith(".json")
    if by_file and not Path(scheduler).is_file():
        raise InputError("--dask-scheduler", f"no such scheduler file: {scheduler!r}")
    try:
        client = (
            distributed.Client(scheduler_file=scheduler)
            if by_file
            else distributed.Client(scheduler)
        )
    except (OSError, ValueError, TypeError) as err:  # TimeoutError is an OSError
        raise InputError(
            "--dask-scheduler",
            f"could not connect to {scheduler!r} ({err})",
            fix="start the scheduler first and give its address, e.g. tcp://host:8786, "
            "or the file written by `dask scheduler --scheduler-file` (docs/cluster.md)",
        ) from None
    with client:
        yield client


def run_similarity(
    input: Path,
    output: Path,
    *,
    sample_key: str,
    cell_type_key: str,
    mapping: Path | None,
    ontology: Path | None,
    ontology_version: str | None,
    strict: bool,
    min_cells: int,
    k: int,
    method: str,
    n_jobs: int,
    distances: str = "all",
    dask_scheduler: str | None = None,
    dask_local_workers: int = 0,
) -> anndata.AnnData:
    """Read cells, compute the similarity, write it atomically, print a summary."""
    from cellbridge.ontology import load_cell_ontology, read_ontology
    from cellbridge.poppy import sample_similarity

    if method not in ("auto", "exact", "tree"):
        raise InputError("--method", f"must be auto, exact or tree, got {method!r}")
    if distances not in ("all", "knn"):
        raise InputError("--distances", f"must be all or knn, got {distances!r}")
    if distances == "knn" and (dask_scheduler is not None or dask_local_workers):
        raise InputError(
            "--distances",
            "knn runs in threads of one process; the --dask-* options apply to --distances all",
        )
    if output.suffix != ".h5ad":
        raise InputError("--output", f"must end in .h5ad, got {str(output)!r}")
    check_writable_dir(output.parent if str(output.parent) else ".", field="--output")
    check_dask_options(dask_scheduler, dask_local_workers)
    if ontology is not None and ontology_version is not None:
        raise InputError("--ontology", "give either a file or --ontology-version, not both")
    onto = read_ontology(ontology) if ontology is not None else load_cell_ontology(ontology_version)
    table = read_mapping(mapping) if mapping is not None else None
    cells = read_h5ad(input)
    with dask_from_options(dask_scheduler, dask_local_workers) as client:
        sim = sample_similarity(
            cells,
            sample_key=sample_key,
            cell_type_key=cell_type_key,
            ontology=onto,
            mapping=table,
            strict=strict,
            min_cells=min_cells,
            k=k,
            method=cast(Literal["auto", "exact", "tree"], method),
            distances=cast(Literal["all", "knn"], distances),
            n_jobs=n_jobs,
            client=client,
            progress=True,
        )
    write_h5ad(sim, output)
    out.print(summary_table(sim, f"cellbridge similarity: {input.name}"))
    stored = (
        "obsp['emd'] = W1 distances"
        if distances == "all"
        else "obsp['emd_knn'] = W1 to the k nearest, obs['sigma'] = k-th distance"
    )
    out.print(
        f"wrote {output}: X = propagated compositions, {stored}, obsp['similarity'] = kernel S"
    )
    return sim
