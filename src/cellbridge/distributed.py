"""Running cellbridge's embarrassingly parallel work on a Dask cluster.

cellbridge writes no cluster code of its own: work is handed to a
:class:`dask.distributed.Client`, which may point at a local cluster, at one started by
``dask-jobqueue`` on SLURM/PBS/LSF, or at ``dask-kubernetes``. Functions that accept
``client=`` cut their work into independent chunks, send each chunk's inputs once, and
assemble the chunks' results in a fixed order, so the result is exactly what the
single-process path returns.

``client`` may be

- ``None`` — no Dask: run in this process (the default everywhere);
- ``"local"`` — start a :class:`dask.distributed.LocalCluster` on loopback for the call
  (``n_workers`` processes, one thread each) and shut it down afterwards;
- a :class:`dask.distributed.Client` — used as it is and left open.

Dask is an optional dependency: ``pip install "cellbridge[distributed]"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from cellbridge._progress import progress_bar
from cellbridge.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from distributed import Client

__all__ = [
    "DEFAULT_LOCAL_WORKERS",
    "check_client",
    "dask_client",
    "local_cluster_options",
    "map_chunks",
]

#: Workers of the local cluster that ``client="local"`` starts.
DEFAULT_LOCAL_WORKERS = 2

T = TypeVar("T")
R = TypeVar("R")

_INSTALL_HINT = 'install Dask: pip install "cellbridge[distributed]"'


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as err:  # pragma: no cover - exercised only without dask installed
        raise InputError(
            "client", "needs dask.distributed, which is not installed", fix=_INSTALL_HINT
        ) from err
    return distributed


def local_cluster_options(*, n_workers: int = DEFAULT_LOCAL_WORKERS) -> dict[str, Any]:
    """Keywords of :class:`~dask.distributed.LocalCluster` for a private loopback cluster.

    ``n_workers`` processes of one thread each, everything bound to 127.0.0.1 and no
    dashboard. The scheduler's HTTP server (health, metrics) still starts even without a
    dashboard, on port 8787 unless told otherwise; a second cluster on the machine then
    warns that the port is taken. Port 0 lets the system pick a free one.

    Parameters
    ----------
    n_workers
        Worker processes.
    """
    return {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        "scheduler_kwargs": {"dashboard": False},
    }


def _restore(saved: dict[str, str]) -> None:
    """Put back the variables of ``saved`` and drop those added since."""
    for key in [k for k in os.environ if k not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@contextmanager
def _environment_kept() -> Iterator[dict[str, str]]:
    """Keep this process's environment as it was.

    Dask's nanny sets ``OMP_NUM_THREADS=1`` (and ``MKL_NUM_THREADS``,
    ``MALLOC_TRIM_THRESHOLD_``; ``distributed.nanny.pre-spawn-environ``) in the *calling*
    process's ``os.environ`` before it spawns a worker, and leaves it there. Every
    subprocess the caller starts afterwards (``torchrun``, a resumed training run) would
    then run torch on one thread, with other rounding than the caller. The environment is
    restored once the workers are up and again when the cluster closes.
    """
    saved = dict(os.environ)
    try:
        yield saved
    finally:
        _restore(saved)


def check_client(client: object) -> None:
    """Refuse a bad ``client=`` argument before any work is read or sent.

    Called also where a closed form will not use the client, so that a wrong value never
    passes unnoticed.

    Parameters
    ----------
    client
        ``None``, ``"local"`` or a :class:`~dask.distributed.Client`; the last two need
        Dask installed.

    Raises
    ------
    InputError
        Any other value, or Dask missing.
    """
    if client is None:
        return
    if isinstance(client, str) and client == "local":
        _import_distributed()  # refused here when Dask is not installed
        return
    if not isinstance(client, str) and isinstance(client, _import_distributed().Client):
        return
    raise InputError(
        "client",
        f"must be None, 'local' or a dask.distributed.Client, got {client!r}",
        fix="wrap a cluster or an address in distributed.Client(...) (see docs/cluster.md)",
    )


@contextmanager
def dask_client(
    client: Client | Literal["local"] | None, *, n_workers: int = DEFAULT_LOCAL_WORKERS
) -> Iterator[Client | None]:
    """Resolve a ``client=`` argument for the duration of one call.

    Parameters
    ----------
    client
        ``None`` (no Dask), ``"local"`` (a loopback :class:`~dask.distributed.LocalCluster`
        started here and closed on exit) or an existing
        :class:`~dask.distributed.Client` (left open).
    n_workers
        Worker processes of the local cluster (``client="local"`` only).

    Yields
    ------
    distributed.Client or None
    """
    check_client(client)
    if client is None:
        yield None
        return
    distributed = _import_distributed()
    if isinstance(client, str):  # "local"
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise InputError("n_workers", f"must be a positive integer, got {n_workers!r}")
        with (
            _environment_kept() as environ,
            distributed.LocalCluster(**local_cluster_options(n_workers=n_workers)) as cluster,
            distributed.Client(cluster) as local,
        ):
            _restore(environ)
            yield local
        return
    yield client


def map_chunks(
    client: Client,
    fn: Callable[..., R],
    chunks: Sequence[T],
    *,
    shared: Sequence[Any] = (),
    weights: Sequence[int] | None = None,
    progress: bool = False,
    description: str = "chunks",
) -> list[R]:
    """``[fn(chunk, *shared) for chunk in chunks]`` on the cluster, in ``chunks``' order.

    ``shared`` inputs are scattered to the workers once (broadcast) instead of being
    pickled into every task. Results are collected as they finish, for the progress bar,
    and returned in the order of ``chunks``; a failing chunk re-raises its exception here.

    Parameters
    ----------
    client
        A connected :class:`~dask.distributed.Client`.
    fn
        A picklable function (module level).
    chunks
        One argument per task.
    shared
        Further arguments, the same for every task.
    weights
        Units of work per chunk, for the progress bar (default 1 each).
    progress
        Show a progress bar.
    description
        The bar's label.
    """
    distributed = _import_distributed()
    weights = list(weights) if weights is not None else [1] * len(chunks)
    # hash=False: a fresh key per call. With content-hashed keys, a second call with the
    # same inputs re-scatters the key the first call is still releasing, and the scheduler
    # can drop it ("Key lost during replication"; the tasks fail with lost dependencies).
    shared_futures = [client.scatter(value, broadcast=True, hash=False) for value in shared]
    futures = [client.submit(fn, chunk, *shared_futures, pure=False) for chunk in chunks]
    position = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with progress_bar(description, total=sum(weights), enabled=progress) as advance:
        for future in distributed.as_completed(futures):
            i = position[future.key]
            results[i] = future.result()
            advance(weights[i])
    return results
