"""Exact graph W1 on a Dask cluster: bit-identical to one process, errors carried back.

One two-worker ``LocalCluster`` on loopback serves the module (it takes a few seconds to
start and to import cellbridge in its workers); ``client="local"`` starts its own once.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import anndata
import numpy as np
import pytest
from typer.testing import CliRunner

from cellbridge.data import pbmc_patients
from cellbridge.errors import CellbridgeError, InputError
from cellbridge.ot import Graph, pairwise_graph_emd
from cellbridge.poppy import sample_similarity

distributed = pytest.importorskip("distributed")

if TYPE_CHECKING:
    from conftest import OntologyGraph

KINDS = ("propagated", "dirichlet", "sparse")
# The module, not the function of the same name that cellbridge.ot re-exports.
graph_emd_module = importlib.import_module("cellbridge.ot.graph_emd")


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    """Two worker processes on loopback; the client closes before the cluster (the other
    order leaves the client retrying a closed scheduler, which warns).

    ``dashboard_address=None`` would still bind the scheduler's HTTP server to port 8787,
    and warn when another cluster on the machine holds it (``client="local"`` below, or a
    parallel test run): port 0 takes a free port, ``dashboard=False`` skips the dashboard.
    """
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        distributed.Client(cluster) as dask,
    ):
        yield dask


def _signals(og: OntologyGraph, seed: int, n_per_kind: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([og.signals(kind, rng, n_per_kind) for kind in KINDS])


def test_symmetric_and_cross_forms_are_bit_identical(
    cl_graph: OntologyGraph, client: distributed.Client
) -> None:
    X = _signals(cl_graph, seed=11, n_per_kind=14)
    Y = _signals(cl_graph, seed=12, n_per_kind=5)
    g = cl_graph.graph
    assert not g.is_tree()  # the exact network-simplex path, not the closed form
    one = pairwise_graph_emd(X, graph=g)
    on_dask = pairwise_graph_emd(X, graph=g, client=client)
    assert np.array_equal(on_dask, one)
    assert np.array_equal(on_dask, on_dask.T) and not np.diag(on_dask).any()
    assert np.array_equal(
        pairwise_graph_emd(X, Y, graph=g, client=client), pairwise_graph_emd(X, Y, graph=g)
    )
    # Fewer rows than chunks, and a single row: the blocks still cover every pair.
    assert np.array_equal(pairwise_graph_emd(X[:3], graph=g, client=client), one[:3, :3])
    assert np.array_equal(
        pairwise_graph_emd(X[:1], Y, graph=g, client=client), pairwise_graph_emd(X[:1], Y, graph=g)
    )


@pytest.mark.parametrize("cl_graph", [100], indirect=True, ids=["CL100"])
def test_local_cluster_on_request(cl_graph: OntologyGraph) -> None:
    X = _signals(cl_graph, seed=3, n_per_kind=8)
    g = cl_graph.graph
    assert np.array_equal(
        pairwise_graph_emd(X, graph=g, client="local"), pairwise_graph_emd(X, graph=g)
    )


def test_progress_bar_and_empty_inputs(
    cl_graph: OntologyGraph, client: distributed.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    X = _signals(cl_graph, seed=4, n_per_kind=4)
    capsys.readouterr()
    shown = pairwise_graph_emd(X, graph=cl_graph.graph, client=client, progress=True)
    assert np.array_equal(shown, pairwise_graph_emd(X, graph=cl_graph.graph))
    assert "graph W1" in capsys.readouterr().err
    empty = np.zeros((0, cl_graph.n_nodes))
    assert pairwise_graph_emd(empty, graph=cl_graph.graph, client=client).shape == (0, 0)
    assert pairwise_graph_emd(X, empty, graph=cl_graph.graph, client=client).shape == (12, 0)


def test_closed_forms_run_here_with_the_same_result(client: distributed.Client) -> None:
    path = Graph(4, np.array([[0, 1], [1, 2], [2, 3]]))
    X = np.random.default_rng(0).dirichlet(np.ones(4), size=6)
    assert np.array_equal(
        pairwise_graph_emd(X, graph=path, client=client), pairwise_graph_emd(X, graph=path)
    )
    # "local" on a tree starts no cluster: the closed form is one cdist in this process.
    assert np.array_equal(
        pairwise_graph_emd(X, graph=path, client="local"), pairwise_graph_emd(X, graph=path)
    )


def test_solver_failure_on_a_worker_raises_the_same_error(
    cl_graph: OntologyGraph, client: distributed.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No pivot allowed: every pair that needs one fails with the iteration-limit status. The
    # budget is read here, in the caller, and travels to the workers with the graph.
    monkeypatch.setattr(graph_emd_module, "_PIVOTS_PER_EDGE", 0)
    monkeypatch.setattr(graph_emd_module, "_PIVOTS_MIN", 0)
    X = _signals(cl_graph, seed=5, n_per_kind=3)
    with pytest.raises(CellbridgeError, match="did not converge") as here:
        pairwise_graph_emd(X, graph=cl_graph.graph)
    with pytest.raises(CellbridgeError, match="did not converge") as there:
        pairwise_graph_emd(X, graph=cl_graph.graph, client=client)
    assert str(there.value) == str(here.value)
    with pytest.raises(CellbridgeError, match="did not converge"):
        pairwise_graph_emd(X, X[:2], graph=cl_graph.graph, client=client)


@pytest.mark.parametrize("bad", ["remote", "tcp://127.0.0.1:1", 2, True, object()])
def test_bad_client_is_refused(bad: object) -> None:
    path = Graph(3, np.array([[0, 1], [1, 2], [2, 0]]))
    with pytest.raises(InputError, match="client") as err:
        pairwise_graph_emd(np.eye(3), graph=path, client=bad)  # type: ignore[arg-type]
    assert err.value.field == "client"


def test_a_cluster_is_not_a_client(client: distributed.Client) -> None:
    path = Graph(3, np.array([[0, 1], [1, 2], [2, 0]]))
    with pytest.raises(InputError, match="Client") as err:
        pairwise_graph_emd(np.eye(3), graph=path, client=client.cluster)  # type: ignore[arg-type]
    assert err.value.field == "client"


# --- callers: sample_similarity and `cellbridge similarity` ---------------------------------


@pytest.fixture(scope="module")
def cells() -> anndata.AnnData:
    return pbmc_patients(n_patients=14, n_cohorts=2, cells_per_patient=30, seed=8).cells


def test_sample_similarity_on_the_cluster(
    cells: anndata.AnnData, client: distributed.Client
) -> None:
    one = sample_similarity(cells, k=5)
    assert not one.uns["cellbridge"]["graph_is_tree"]
    on_dask = sample_similarity(cells, k=5, client=client)
    assert np.array_equal(on_dask.obsp["emd"], one.obsp["emd"])
    assert np.array_equal(on_dask.obsp["similarity"].toarray(), one.obsp["similarity"].toarray())


def test_cli_with_a_scheduler_address(
    cells: anndata.AnnData, client: distributed.Client, tmp_path: Path
) -> None:
    from cellbridge.cli.main import app

    source = tmp_path / "cells.h5ad"
    cells.write_h5ad(source)
    out = tmp_path / "sim.h5ad"
    address = client.cluster.scheduler_address
    args = ["similarity", str(source), "-o", str(out), "--k", "5", "--dask-scheduler", address]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = sample_similarity(cells, k=5)
    assert np.array_equal(anndata.read_h5ad(out).obsp["emd"], expected.obsp["emd"])


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--dask-local-workers", "-1"], "--dask-local-workers"),
        (["--dask-local-workers", "2", "--dask-scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--dask-scheduler", "missing-scheduler.json"], "no such scheduler file"),
    ],
)
def test_bad_dask_options_are_refused(
    cells: anndata.AnnData, tmp_path: Path, extra: list[str], needle: str
) -> None:
    from cellbridge.cli.main import app

    source = tmp_path / "cells.h5ad"
    cells.write_h5ad(source)
    out = tmp_path / "sim.h5ad"
    result = CliRunner().invoke(app, ["similarity", str(source), "-o", str(out), *extra])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert needle in result.output
    assert not out.exists()
