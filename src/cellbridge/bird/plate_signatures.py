"""BiRD DE signatures streamed from per-plate .h5ad files (Tahoe-100M's layout).

Tahoe-100M ships one .h5ad per plate (14 plates, ~100 M cells, 62,710 genes); every drug
is applied on one plate, with DMSO controls of every cell line on every plate. The
signatures of the reference lines (BiRD §2, Algorithm 1 lines 1–5) then need one plate at
a time: :func:`signatures_from_plates` reads each plate's reference-line rows, computes
that plate's (line, drug) signatures with the code of
:func:`~cellbridge.bird.differential_response`, frees them and reads the next plate.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from cellbridge._progress import progress_bar
from cellbridge.bird import _plate_io
from cellbridge.bird._controls import control_flags, no_control_drug
from cellbridge.bird.signatures import (
    DEFAULT_ALPHA,
    DEFAULT_TOP_K,
    Method,
    Signatures,
    _assemble,
    _block_signatures,
    _Params,
    _Part,
)
from cellbridge.distributed import check_client
from cellbridge.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from distributed import Client

__all__ = ["signatures_from_plates"]

log = logging.getLogger(__name__)


def signatures_from_plates(
    paths: str | Path | Sequence[str | Path],
    *,
    reference_lines: Sequence[str],
    drug_key: str = "drug",
    control_key: str = "control",
    control_drug: str | None = None,
    plate_key: str = "plate",
    cell_line_key: str = "cell_line",
    method: Method = "wilcoxon",
    alpha: float = DEFAULT_ALPHA,
    top_k: int = DEFAULT_TOP_K,
    layer: str | None = None,
    client: Client | Literal["local"] | None = None,
    progress: bool = False,
) -> Signatures:
    """DE signatures of every drug in every reference line, one plate file at a time.

    The signatures of :func:`~cellbridge.bird.differential_response` (Algorithm 1,
    lines 1–5: per reference line :math:`c` and drug :math:`d`, treated cells against
    the line's control cells of the same plate, Wilcoxon or t-test per gene, BH q-values,
    the ``top_k`` genes by :math:`|\\log_2 FC|` among those with ``q <= alpha``), computed
    from per-plate .h5ad files without concatenating them. The result equals
    ``differential_response`` on the concatenated plates exactly (same genes, same
    table, same counts).

    Each file is read in two passes. A survey reads only the four ``obs`` key columns
    and the gene names of every plate and refuses a bad screen before any expression is
    read. Then, per plate: the key columns are read again, the rows of the reference
    lines are chosen, and only those rows of ``X`` (or ``layers[layer]``) are read, in
    slices of at most 4 Mi stored entries (other lines' rows are never kept; short gaps
    between chosen rows are read through and dropped at once). The plate's signatures
    are computed one reference line at a time and the rows freed before the next plate.

    Memory, with :math:`z_p` the stored entries of plate :math:`p`'s reference-line rows
    (the largest plate's count), :math:`z_{p,c}` those of its largest reference line,
    :math:`n_p` its cells, :math:`D_p` its drugs and :math:`G` the genes: about
    :math:`z_p (s_d + s_i)` bytes for the plate's rows as stored (:math:`s_d + s_i` = 8
    for float32 counts with int32 indices), plus :math:`\\approx 48 z_{p,c}` bytes while
    one line is normalised (float64) and tested, plus :math:`\\approx 100\\, G D_p` bytes
    for that line's per-gene statistics (U, sums, scores, p- and q-values, log fold
    changes of every drug), plus :math:`8 n_p` bytes of row pointers and the four key
    columns, plus one read slice (:math:`2^{22}(s_d + s_i)` bytes, 32 MiB). Tahoe-shaped
    (143 k cells per plate, 14 k in the 5 reference lines, 27 drugs, 62,710 genes,
    ~360 entries per cell): ~0.3 GiB by this count, 0.39 GiB measured above the
    libraries' own memory (``benchmarks/bench_de_tahoe.py``). With a
    ``client``, each worker holds that for the one plate it works on.

    Parameters
    ----------
    paths
        The plate files (.h5ad; ``X`` CSR or dense, counts or log-normalised), or one
        folder whose ``*.h5ad`` files are the plates (read in name order).
    reference_lines
        The reference cell lines :math:`\\mathcal C_{ref}` (BiRD: A549, AN3 CA, SK-MEL-2,
        SNU-1, A-172).
    drug_key, control_key, plate_key, cell_line_key
        The ``obs`` columns with each cell's drug, control flag (boolean), plate and cell
        line (the Tahoe-100M files call the line ``cell_line_id`` or ``cell_name``).
    control_drug
        Mark the controls by their drug instead of a flag column: the cells with
        ``obs[drug_key] == control_drug`` are the controls and ``control_key`` is not
        read. The Tahoe-100M plate files have no flag column; their controls are
        ``control_drug="DMSO_TF"``. Default ``None``: use ``control_key``.
    method, alpha, top_k
        Test, q-value cut-off, signature size, as in ``differential_response``.
    layer
        Read ``layers[layer]`` of the files instead of ``X``.
    client
        Run the plates on a Dask cluster: a :class:`dask.distributed.Client` (left
        open), ``"local"`` (a two-worker :class:`~dask.distributed.LocalCluster` on
        loopback, started and closed for this call) or ``None`` (this process; default).
        Only the paths are sent: the workers read the files themselves (so they must see
        them at the same paths), survey and compute one plate per task and return its
        signatures, which are merged here. The result is identical to ``client=None``.
    progress
        Show a progress bar over (line, drug) comparisons.

    Returns
    -------
    Signatures
        As :func:`~cellbridge.bird.differential_response` returns them.

    Raises
    ------
    InputError
        A missing or unreadable file, a file without the ``obs`` key columns (or with a
        non-boolean control column), a reference line on no plate, a ``control_drug``
        that no reference-line cell has, genes that differ
        between plates (the plate and the first differing genes are named), a drug of a
        reference line on two plates, a plate split across files, a drug whose plate has
        fewer than 2 control cells of the line, bad options or ``client``.

    See Also
    --------
    cellbridge.bird.differential_response : the same signatures of cells in memory (or of
        one backed file, ``by="plate"``).
    cellbridge.data.iter_tahoe_plates : read selections of the plate files.
    """
    files = _plate_files(paths)
    if isinstance(reference_lines, str) or not reference_lines:
        raise InputError(
            "reference_lines", "must be a non-empty list of cell lines", values=[reference_lines]
        )
    params = _Params.checked(
        reference_lines=reference_lines,
        keys=(drug_key, control_key, plate_key, cell_line_key),
        method=method,
        alpha=alpha,
        top_k=top_k,
        layer=layer,
        control_drug=control_drug,
    )
    check_client(client)
    if client is None:
        surveys = [_survey(path, params) for path in files]
        genes, jobs = _check_surveys(surveys, params)
        parts = []
        with progress_bar("DE signatures", total=sum(jobs), enabled=progress) as advance:
            for path in files:
                parts.append(_plate_signatures(path, genes, params, advance))
        return _assemble(parts, params, stacklevel=3)
    from cellbridge.distributed import dask_client, map_chunks

    names = [str(path) for path in files]
    with dask_client(client) as dask:
        assert dask is not None  # client is not None here
        surveys = map_chunks(dask, _survey, names, shared=[params], description="plate survey")
        genes, jobs = _check_surveys(surveys, params)
        parts = map_chunks(
            dask,
            _plate_signatures,
            names,
            shared=[genes, params],
            weights=jobs,
            progress=progress,
            description="DE signatures",
        )
    return _assemble(parts, params, stacklevel=3)


def _plate_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, str | Path):
        folder = Path(paths)
        if folder.is_dir():
            files = sorted(folder.glob("*.h5ad"))
            if not files:
                raise InputError("paths", "folder holds no .h5ad file", values=[str(folder)])
            return files
        return [folder]
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("paths", "is empty", fix="pass at least one plate file")
    seen: dict[Path, Path] = {}
    for path in files:
        key = path.resolve()
        if key in seen:
            raise InputError("paths", "name a file twice", values=[str(seen[key]), str(path)])
        seen[key] = path
    return files


@dataclass
class _Survey:
    """What the survey of one plate file finds (small: sent back by a worker)."""

    name: str
    genes: pd.Index
    n_cells: int
    n_reference: int
    lines: set[str]
    #: (line, drug) -> plates of the line's treated cells of the drug
    pairs: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: (line, plate) -> control cells
    controls: dict[tuple[str, str], int] = field(default_factory=dict)


def _survey(path: str | Path, params: _Params) -> _Survey:
    """Read a plate file's key columns and gene names; refuse a bad file."""
    path = Path(path)
    with _plate_io.open_plate(path) as handle:
        obs, _, n_cells = _reference_obs(handle, params, path.name)
        genes = _plate_io.read_var_names(handle)
    drug_key, control_key, plate_key, cell_line_key = params.keys
    survey = _Survey(path.name, genes, n_cells, len(obs), set(obs[cell_line_key]))
    is_control = obs[control_key].to_numpy()
    treated = obs.loc[~is_control].groupby([cell_line_key, drug_key], sort=True)[plate_key]
    plates = treated.unique()
    survey.pairs = {_pair(key): set(on) for key, on in plates.items()}
    counts = obs.loc[is_control].groupby([cell_line_key, plate_key], sort=True).size()
    survey.controls = {_pair(key): int(n) for key, n in counts.items()}
    return survey


def _pair(key: Hashable) -> tuple[str, str]:
    """A two-level groupby key as a pair of strings."""
    assert isinstance(key, tuple)
    return str(key[0]), str(key[1])


def _reference_obs(
    handle: object, params: _Params, where: str
) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The key columns (as strings) of the reference lines' rows of an open plate file,
    indexed ``"<file>:<row>"``, those rows' numbers, and the plate's number of cells."""
    drug_key, control_key, plate_key, cell_line_key = params.keys
    by_drug = params.control_drug is not None
    read = (drug_key, plate_key, cell_line_key) if by_drug else params.keys
    obs = _plate_io.read_obs_columns(handle, list(dict.fromkeys(read)), where=where)
    if not by_drug:  # the flags are checked here; by drug, across plates (_check_surveys)
        flags = control_flags(
            obs, drug_key=drug_key, control_key=control_key, control_drug=None, where=f"{where} obs"
        )
    rows = np.flatnonzero(_isin(obs[cell_line_key], params.reference_lines))
    chosen = obs.iloc[rows]
    for key in (drug_key, plate_key):
        bad = chosen[key].isna().to_numpy()
        if bad.any():
            raise InputError(
                f"obs[{key!r}] of {where}",
                "has missing values for cells of the reference lines (rows)",
                values=rows[bad].tolist(),
            )
    drugs = chosen[drug_key].astype(str).to_numpy()
    control = drugs == params.control_drug if by_drug else flags[rows]
    out = pd.DataFrame(
        {
            drug_key: drugs,
            control_key: control,
            plate_key: chosen[plate_key].astype(str).to_numpy(),
            cell_line_key: chosen[cell_line_key].astype(str).to_numpy(),
        },
        index=pd.Index([f"{where}:{r}" for r in rows]),
    )
    return out[list(dict.fromkeys(params.keys))], rows, len(obs)


def _isin(column: pd.Series, wanted: Collection[str]) -> np.ndarray:
    """Rows whose value, as a string, is wanted (categories compared, not every row)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        hit = np.isin(column.cat.categories.astype(str), list(wanted))
        return (codes >= 0) & hit[np.maximum(codes, 0)]
    return (column.notna() & column.astype(str).isin(list(wanted))).to_numpy()


def _check_surveys(surveys: Sequence[_Survey], params: _Params) -> tuple[pd.Index, list[int]]:
    """Refuse a screen the per-plate path cannot compute exactly; return the genes and
    the comparisons of each plate."""
    first = surveys[0]
    for survey in surveys[1:]:
        if not survey.genes.equals(first.genes):
            raise InputError(
                "paths",
                f"the genes of plate {survey.name} differ from those of {first.name} "
                f"({len(survey.genes)} vs {len(first.genes)} genes; first differences)",
                values=_first_differences(first.genes, survey.genes),
                fix="give plates with the same genes in the same order",
            )
    found = set().union(*(s.lines for s in surveys))
    missing = [c for c in params.reference_lines if c not in found]
    if missing:
        raise InputError(
            "reference_lines",
            f"on none of the {len(surveys)} plates",
            values=missing,
            fix=f"use lines of obs[{params.keys[3]!r}] of the plates",
        )
    if params.control_drug is not None and not any(s.controls for s in surveys):
        drugs = {drug for s in surveys for _, drug in s.pairs}
        raise no_control_drug(params.control_drug, drugs, drug_key=params.keys[0])
    home: dict[str, str] = {}  # plate -> file
    for survey in surveys:
        for plate in {p for plates in survey.pairs.values() for p in plates} | {
            p for _, p in survey.controls
        }:
            if home.setdefault(plate, survey.name) != survey.name:
                raise InputError(
                    "paths",
                    f"plate {plate!r} has cells of the reference lines in two files",
                    values=[home[plate], survey.name],
                    fix="give one file per plate",
                )
    placed: dict[tuple[str, str], list[str]] = defaultdict(list)
    for survey in surveys:
        for key, plates in survey.pairs.items():
            placed[key] += sorted(plates)
    for (line, drug), on in sorted(placed.items()):
        if len(on) > 1:
            raise InputError(
                "paths",
                f"drug {drug!r} (line {line!r}) is on {len(on)} plates; the per-plate "
                "signatures need every (line, drug) on one plate, as in Tahoe-100M",
                values=on,
                fix="concatenate the plates and use differential_response(by='line'), which "
                "pools the controls of a drug's plates",
            )
        n_controls = sum(s.controls.get((line, on[0]), 0) for s in surveys)
        if n_controls < 2:
            raise InputError(
                "controls",
                f"drug {drug!r} has fewer than 2 control cells of line {line!r} on its plate",
                values=on,
                fix="every plate needs control cells of each line",
            )
    return first.genes, [len(s.pairs) for s in surveys]


def _first_differences(a: pd.Index, b: pd.Index, limit: int = 5) -> list[str]:
    n = min(len(a), len(b))
    at = np.flatnonzero(a[:n].to_numpy() != b[:n].to_numpy())[:limit].tolist()
    out = [f"#{i}: {a[i]!r} vs {b[i]!r}" for i in at]
    if len(out) < limit and len(a) != len(b):
        longer, which = (a, "first") if len(a) > len(b) else (b, "this")
        out += [f"#{i}: {longer[i]!r} only in the {which} plate" for i in range(n, len(longer))]
    return out[:limit]


def _plate_signatures(
    path: str | Path,
    genes: pd.Index,
    params: _Params,
    advance: Callable[[int], None] | None = None,
) -> _Part:
    """One plate's (line, drug) signatures: its reference-line rows read, tested, freed."""
    path = Path(path)
    with _plate_io.open_plate(path) as handle:
        block_obs, rows, _ = _reference_obs(handle, params, path.name)
        matrix = _plate_io.read_rows(handle, rows, layer=params.layer, where=path.name)
        log1p = _plate_io.has_log1p_mark(handle)
    log.info("%s: %d reference-line cells, %d stored entries", path.name, len(rows), matrix.nnz)
    block = _plate_io.expression_block(
        matrix, layer=params.layer, cells=block_obs.index, genes=genes, log1p=log1p
    )
    del matrix
    return _block_signatures(block, block_obs, genes, params, advance)
