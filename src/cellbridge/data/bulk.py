"""Bulk-like profiles built from single cells and sorted populations (POPPY §2.1, A.3.2).

- :func:`pseudobulk`: the counts of all cells of a sample, summed (POPPY §2.1).
- :func:`mix_profiles`: weighted averages of sorted-population profiles with given
  proportions — the *in silico* bulk of A.3.2. :func:`cancer_normal_tumours` (one cancer
  profile + the average of nine non-cancer ones), :func:`matched_bulk` (the proportions of
  single-cell samples over the shared cell types) and :func:`random_tumours` (uniform
  ratios, §3.4) choose the proportions and call it.

Every constructed profile keeps the proportions that made it in ``obsm["proportions"]``.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from cellbridge._checks import (
    expression_matrix,
    is_integer,
    looks_log_transformed,
    obs_labels,
    require_finite,
    require_unique,
)
from cellbridge.errors import InputError

__all__ = [
    "cancer_normal_tumours",
    "check_counts",
    "log1p_cpm",
    "matched_bulk",
    "mix_profiles",
    "pseudobulk",
    "random_tumours",
    "stack_profiles",
]

log = logging.getLogger(__name__)

Normalize = Literal["none", "cpm", "log1p_cpm"]


def check_counts(
    X: sp.spmatrix | np.ndarray,
    *,
    field: str,
    allow_non_integer: bool = False,
    log1p_marked: bool = False,
) -> None:
    """Refuse expression that cannot be summed as counts: negative, non-finite or logged.

    Log-transformed input is detected when ``uns["log1p"]`` is set (scanpy's mark) or when
    values are not integers and all stay below 50 (log1p of normalised data does).
    Other non-integer values (TPM, normalised counts) pass only with ``allow_non_integer``.
    """
    values = require_finite(
        X,
        field,
        non_negative=True,
        negative_fix="pass raw counts (z-scored or centred data cannot be summed)",
    )
    if values.size == 0:
        return
    integer = is_integer(values)
    if looks_log_transformed(values, log1p_marked=log1p_marked):
        raise InputError(
            field,
            "looks log-transformed"
            + (
                " (uns['log1p'] is set)"
                if log1p_marked
                else f" (non-integer values, max {float(values.max()):.3g})"
            ),
            fix="pass raw counts (e.g. layer='counts' or adata.raw); sums of logs are not "
            "bulk expression",
        )
    if not integer and not allow_non_integer:
        raise InputError(
            field,
            "values are not integer counts",
            fix="pass raw counts, or allow_non_integer=True to sum normalised values knowingly",
        )


def log1p_cpm(adata: AnnData) -> AnnData:
    """A copy of bulk-like ``adata`` with ``X = log1p(counts per million)``.

    The scale POPPY's gene tokens expect (:class:`cellbridge.encoders.ScaledGeneEmbeddings`).
    ``X`` must hold non-negative finite counts-scale values (e.g. the output of
    :func:`mix_profiles`); ``uns["cellbridge"]["normalize"]`` records the step.

    Parameters
    ----------
    adata
        Bulk-like profiles x genes on a counts scale (counts, CPM or TPM); not modified.
    """
    check_counts(
        adata.X, field="adata.X", allow_non_integer=True, log1p_marked="log1p" in adata.uns
    )
    dense = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X, dtype=float)
    out = adata.copy()
    out.X = _normalize(dense.astype(np.float64), "log1p_cpm")
    out.uns["cellbridge"] = {**dict(adata.uns.get("cellbridge", {})), "normalize": "log1p_cpm"}
    return out


def _normalize(totals: np.ndarray, how: Normalize) -> np.ndarray:
    if how == "none":
        return totals
    if how not in ("cpm", "log1p_cpm"):
        raise InputError("normalize", f"must be 'none', 'cpm' or 'log1p_cpm', got {how!r}")
    size = totals.sum(axis=1, keepdims=True)
    empty = np.flatnonzero(size[:, 0] == 0)
    if empty.size:
        raise InputError(
            "normalize", "rows with zero total counts cannot be scaled", values=empty.tolist()
        )
    cpm = totals / size * 1e6
    return np.log1p(cpm) if how == "log1p_cpm" else cpm


def pseudobulk(
    adata: AnnData,
    *,
    sample_key: str = "sample",
    layer: str | None = None,
    normalize: Normalize = "none",
    min_cells: int = 1,
    allow_non_integer: bool = False,
) -> AnnData:
    r"""Sum the counts of all cells of each sample (POPPY §2.1).

    .. math:: b_{sg} = \sum_{c \in C_s} x_{cg}, \qquad
              \mathrm{CPM}_{sg} = 10^6\, b_{sg} / \textstyle\sum_h b_{sh}

    Parameters
    ----------
    adata
        Cells with raw counts in ``X`` (or ``layer``).
    sample_key
        The ``obs`` column of sample ids.
    layer
        Use this layer instead of ``X``.
    normalize
        ``"none"`` (summed counts), ``"cpm"``, or ``"log1p_cpm"``.
    min_cells
        Samples with fewer cells are refused (named in the error).
    allow_non_integer
        Sum non-integer, non-logged values (e.g. TPM) knowingly.

    Returns
    -------
    anndata.AnnData
        Samples x genes (dense float64); ``obs`` has ``n_cells`` and every ``obs``
        column of ``adata`` that is constant within each sample (e.g. ``cohort``);
        ``uns["cellbridge"]`` records the normalisation and provenance.
    """
    samples = obs_labels(adata, sample_key, field="sample_key")
    if adata.n_obs == 0:
        raise InputError("adata", "has no cells", fix="pass the cells of at least one sample")
    require_unique(
        adata.obs_names,
        "adata.obs_names",
        what="cell names",
        fix="call adata.obs_names_make_unique()",
    )
    require_unique(
        adata.var_names,
        "adata.var_names",
        what="gene names",
        fix="call adata.var_names_make_unique() or sum the duplicated genes first",
    )
    X = expression_matrix(adata, layer)
    check_counts(
        X,
        field="layers[" + repr(layer) + "]" if layer else "X",
        allow_non_integer=allow_non_integer,
        log1p_marked="log1p" in adata.uns,
    )
    codes, names = pd.factorize(samples.astype(str), sort=True)
    n_cells = np.bincount(codes, minlength=len(names))
    if isinstance(samples.dtype, pd.CategoricalDtype):
        unused = sorted(set(map(str, samples.cat.categories)) - set(names))
        if unused:
            raise InputError(
                f"adata.obs[{sample_key!r}]",
                "categories with no cells (empty samples)",
                values=unused,
                fix="call .cat.remove_unused_categories() after subsetting",
            )
    small = [f"{n}: {c}" for n, c in zip(names, n_cells, strict=True) if c < min_cells]
    if small:
        raise InputError(
            f"adata.obs[{sample_key!r}]", f"samples with fewer than {min_cells} cells", values=small
        )
    # Sum rows per sample with a sparse indicator matrix: memory stays O(samples x genes).
    S = sp.csr_matrix(
        (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(names), len(codes))
    )
    totals = np.asarray((S @ X).todense() if sp.issparse(X) else S @ np.asarray(X), dtype=float)
    obs = pd.DataFrame({"n_cells": n_cells}, index=pd.Index(names, name=sample_key))
    grouped = adata.obs.groupby(codes, observed=True)
    for col in adata.obs.columns:
        if col == sample_key:
            continue
        if (grouped[col].nunique(dropna=False) <= 1).all():
            obs[col] = adata.obs[col].groupby(codes, observed=True).first().to_numpy()
    out = AnnData(X=_normalize(totals, normalize), obs=obs, var=adata.var[[]].copy())
    provenance = adata.uns.get("cellbridge", {}).get("provenance", "")
    out.uns["cellbridge"] = {
        "construction": "pseudobulk (sum of counts per sample)",
        "normalize": normalize,
        "provenance": provenance,
    }
    return out


def _check_proportions(props: pd.DataFrame, field: str) -> pd.DataFrame:
    require_unique(props.index, f"{field}.index")
    require_unique(props.columns, f"{field}.columns")
    values = props.to_numpy(dtype=float)
    bad = props.index[~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1)]
    if len(bad):
        raise InputError(field, "rows with negative or non-finite proportions", values=list(bad))
    sums = values.sum(axis=1)
    off = props.index[np.abs(sums - 1) > 1e-6]
    if len(off):
        raise InputError(
            field,
            "rows that do not sum to 1",
            values=[
                f"{r}: {s:.6g}" for r, s in zip(off, sums[np.abs(sums - 1) > 1e-6], strict=True)
            ],
            fix="divide each row by its sum",
        )
    return props


def _profile_groups(profiles: AnnData, type_key: str) -> dict[str, np.ndarray]:
    if type_key not in profiles.obs:
        raise InputError(
            "type_key",
            f"{type_key!r} is not an obs column of the profiles",
            values=list(profiles.obs.columns),
        )
    types = profiles.obs[type_key].astype(str).to_numpy()
    return {t: np.flatnonzero(types == t) for t in sorted(set(types))}


def _dense(profiles: AnnData) -> np.ndarray:
    X = profiles.X.toarray() if sp.issparse(profiles.X) else np.asarray(profiles.X, dtype=float)
    check_counts(X, field="profiles.X", allow_non_integer=True)
    size = X.sum(axis=1, keepdims=True)
    empty = profiles.obs_names[size[:, 0] == 0]
    if len(empty):
        raise InputError("profiles", "profiles with zero total expression", values=list(empty))
    return X / size * 1e6


def mix_profiles(
    profiles: AnnData,
    proportions: pd.DataFrame,
    *,
    type_key: str = "cell_type",
    seed: int = 0,
    construction: str = "in-silico bulk: weighted average of sorted profiles",
) -> AnnData:
    r"""In-silico bulk: weighted averages of sorted-population profiles (POPPY A.3.2).

    .. math:: b_{sg} = \sum_k \pi_{sk}\, \tilde x_{r(s,k)\,g}

    with :math:`\tilde x_r` profile :math:`r` scaled to counts per million (so that
    proportions are proportions of expression, not of sequencing depth) and
    :math:`r(s, k)` one of the profiles of cell type :math:`k`, drawn uniformly for every
    sample (seeded) — the resampling within cell types of A.3.2 that adds variability.

    Parameters
    ----------
    profiles
        Sorted-population profiles x genes (counts or TPM; non-negative), with the cell
        type of each in ``obs[type_key]``; several per type allowed.
    proportions
        Samples x cell types; rows non-negative, summing to 1; every column a type that
        has profiles.
    type_key
        The ``obs`` column of ``profiles`` with cell types.
    seed
        Seed for the choice of profile per sample and type.
    construction
        How the proportions were chosen, recorded in ``uns["cellbridge"]["construction"]``.

    Returns
    -------
    anndata.AnnData
        Samples x genes in CPM; ``obsm["proportions"]`` holds the proportions used and
        ``obsm["profile_index"]`` which profile stood for each type.
    """
    props = _check_proportions(proportions, "proportions")
    groups = _profile_groups(profiles, type_key)
    unknown = [c for c in props.columns if str(c) not in groups]
    if unknown:
        raise InputError(
            "proportions.columns",
            "cell types without a sorted profile",
            values=unknown,
            fix=f"profiles exist for {sorted(groups)}",
        )
    X = _dense(profiles)
    rng = np.random.default_rng(seed)
    weights = props.to_numpy(dtype=float)
    picks = np.stack([rng.choice(groups[str(c)], size=len(props)) for c in props.columns], 1)
    out = np.zeros((len(props), X.shape[1]))
    for k in range(weights.shape[1]):
        out += weights[:, [k]] * X[picks[:, k]]
    bulk = AnnData(
        X=out, obs=pd.DataFrame(index=props.index.astype(str)), var=profiles.var[[]].copy()
    )
    bulk.obsm["proportions"] = props.set_axis(bulk.obs_names, axis=0)
    bulk.obsm["profile_index"] = pd.DataFrame(
        picks, index=bulk.obs_names, columns=[str(c) for c in props.columns]
    )
    bulk.obs["assay"] = "in-silico bulk"
    bulk.uns["cellbridge"] = {
        "construction": construction,
        "seed": seed,
        "provenance": profiles.uns.get("cellbridge", {}).get("provenance", ""),
    }
    return bulk


def matched_bulk(
    profiles: AnnData, compositions: pd.DataFrame, *, type_key: str = "cell_type", seed: int = 0
) -> AnnData:
    """One in-silico bulk per single-cell sample, same proportions over shared types (A.3.2).

    Each sample's composition is restricted to the cell types that have sorted profiles
    and renormalised; the mass left out is kept in ``obs["unmatched_fraction"]``. A
    sample with no shared cell type is an error (named).

    Parameters
    ----------
    profiles
        Sorted-population profiles x genes, the cell type of each in ``obs[type_key]``
        (as for :func:`mix_profiles`).
    compositions
        Single-cell samples x cell types: each sample's cell-type proportions (rows
        non-negative, summing to 1).
    type_key
        The ``obs`` column of ``profiles`` with cell types.
    seed
        Seed for the choice of profile per sample and type.
    """
    comp = _check_proportions(compositions, "compositions")
    groups = _profile_groups(profiles, type_key)
    shared = [c for c in comp.columns if str(c) in groups]
    if not shared:
        raise InputError(
            "compositions.columns",
            "no cell type shared with the profiles",
            values=list(comp.columns)[:5],
            fix=f"profiles exist for {sorted(groups)}",
        )
    kept = comp[shared]
    mass = kept.sum(axis=1)
    none = list(comp.index[mass.to_numpy() == 0])
    if none:
        raise InputError("compositions", "samples with no cells of a profiled type", values=none)
    bulk = mix_profiles(
        profiles,
        kept.div(mass, axis=0),
        type_key=type_key,
        seed=seed,
        construction="in-silico bulk matched to single-cell proportions",
    )
    bulk.obs["unmatched_fraction"] = (1 - mass).clip(lower=0).to_numpy()
    return bulk


def random_tumours(
    profiles: AnnData, *, n: int = 1000, type_key: str = "cell_type", seed: int = 0
) -> AnnData:
    """Simulated tumours with cell-type ratios drawn uniformly from the simplex (§3.4).

    Proportions are Dirichlet(1, ..., 1) over the profiled cell types.

    Parameters
    ----------
    profiles
        Sorted-population profiles x genes, the cell type of each in ``obs[type_key]``.
    n
        Number of tumours.
    type_key
        The ``obs`` column of ``profiles`` with cell types.
    seed
        Seed for the ratios and the choice of profile per tumour and type.
    """
    if n < 1:
        raise InputError("n", f"must be at least 1, got {n}")
    types = sorted(_profile_groups(profiles, type_key))
    rng = np.random.default_rng(seed)
    props = pd.DataFrame(
        rng.dirichlet(np.ones(len(types)), size=n),
        columns=types,
        index=[f"tumour{i:04d}" for i in range(n)],
    )
    return mix_profiles(
        profiles,
        props,
        type_key=type_key,
        seed=seed + 1,
        construction="simulated tumours, uniform cell-type ratios",
    )


def cancer_normal_tumours(
    cancer: AnnData,
    normal: AnnData,
    *,
    n: int = 100,
    n_normal: int = 9,
    cancer_fraction: tuple[float, float] = (0.2, 0.8),
    type_key: str = "cell_type",
    seed: int = 0,
) -> AnnData:
    r"""Tumours of one cancer profile plus the average of nine non-cancer profiles (A.3.2).

    For tumour :math:`s`: a cancer profile :math:`c_s`, ``n_normal`` non-cancer profiles
    :math:`r_1..r_9` drawn without replacement, and a cancer fraction
    :math:`f_s \sim U(\text{cancer\_fraction})`:

    .. math:: b_s = f_s\, \tilde c_s + (1 - f_s)\, \tfrac{1}{9} \textstyle\sum_i \tilde r_i

    (profiles in CPM). The proportions returned give the cancer fraction (column
    ``"cancer"``) and, per non-cancer type, ``(1 - f_s) / 9`` times its number of draws.

    Parameters
    ----------
    cancer
        Cancer profiles x genes; one is drawn per tumour.
    normal
        Non-cancer profiles x genes (same genes, same order), the cell type of each in
        ``obs[type_key]``.
    n
        Number of tumours.
    n_normal
        Non-cancer profiles averaged per tumour (drawn without replacement).
    cancer_fraction
        ``(low, high)`` of the uniform cancer fraction, within ``[0, 1]``.
    type_key
        The ``obs`` column of ``normal`` with cell types.
    seed
        Seed for the fractions and the profiles drawn.
    """
    if n < 1 or n_normal < 1:
        raise InputError("n", f"n and n_normal must be at least 1, got {n}, {n_normal}")
    lo, hi = cancer_fraction
    if not 0 <= lo <= hi <= 1:
        raise InputError(
            "cancer_fraction", f"must satisfy 0 <= low <= high <= 1, got {cancer_fraction}"
        )
    if list(cancer.var_names) != list(normal.var_names):
        shared = cancer.var_names.intersection(normal.var_names)
        raise InputError(
            "cancer.var_names",
            f"genes differ from normal.var_names "
            f"({len(shared)} shared of {cancer.n_vars} and {normal.n_vars})",
            fix="subset both to the same genes in the same order",
        )
    if normal.n_obs < n_normal:
        raise InputError("normal", f"has {normal.n_obs} profiles, fewer than n_normal={n_normal}")
    groups = _profile_groups(normal, type_key)
    types = sorted(groups)
    type_of = normal.obs[type_key].astype(str).to_numpy()
    C, N = _dense(cancer), _dense(normal)
    rng = np.random.default_rng(seed)
    out = np.zeros((n, C.shape[1]))
    props = np.zeros((n, len(types) + 1))
    for s in range(n):
        f = rng.uniform(lo, hi)
        picks = rng.choice(normal.n_obs, size=n_normal, replace=False)
        out[s] = f * C[rng.integers(cancer.n_obs)] + (1 - f) * N[picks].mean(axis=0)
        props[s, 0] = f
        for t in type_of[picks]:
            props[s, 1 + types.index(t)] += (1 - f) / n_normal
    names = [f"tumour{i:04d}" for i in range(n)]
    bulk = AnnData(
        X=out, obs=pd.DataFrame({"assay": "in-silico bulk"}, index=names), var=cancer.var[[]].copy()
    )
    bulk.obsm["proportions"] = pd.DataFrame(props, index=names, columns=["cancer", *types])
    bulk.uns["cellbridge"] = {
        "construction": f"one cancer profile + mean of {n_normal} non-cancer profiles",
        "seed": seed,
    }
    return bulk


def stack_profiles(
    profiles: dict[str, AnnData], *, sample_key: str = "sample", assay_key: str = "assay"
) -> AnnData:
    """Stack bulk-like AnnData of several assays into one training set for POPPY.

    Row ``s`` of ``profiles[assay]`` becomes ``"{s}|{assay}"``, with ``obs[sample_key]``
    = its single-cell sample (the existing column, else the row name) and
    ``obs[assay_key]`` = ``assay``. Genes must be identical (same names, same order);
    ``obs`` columns present in every input are kept, ``obsm`` / ``layers`` are not.

    Parameters
    ----------
    profiles
        ``{assay name: AnnData}`` of bulk-like profiles x genes.
    sample_key
        ``obs`` column with each profile's single-cell sample (added from the row names
        where an input lacks it).
    assay_key
        ``obs`` column that receives the assay name.

    Raises
    ------
    InputError
        No inputs, differing genes, or duplicate stacked names.
    """
    if not profiles:
        raise InputError("profiles", "is empty", fix="pass {assay name: AnnData}")
    parts, first = [], next(iter(profiles.values()))
    for assay, adata in profiles.items():
        if not adata.var_names.equals(first.var_names):
            raise InputError(
                f"profiles[{assay!r}].var_names",
                "differ from the first input's genes",
                fix="subset all inputs to the same genes in the same order",
            )
        obs = adata.obs.copy()
        if sample_key not in obs:
            obs[sample_key] = adata.obs_names.astype(str)
        obs[assay_key] = assay
        obs.index = [f"{name}|{assay}" for name in adata.obs_names]
        X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X, dtype=float)
        parts.append(AnnData(X=X, obs=obs, var=first.var[[]].copy()))
    shared = [c for c in parts[0].obs.columns if all(c in p.obs for p in parts)]
    obs = pd.concat([p.obs[shared] for p in parts])
    require_unique(obs.index, "profiles", what="stacked profile names")
    out = AnnData(X=np.vstack([p.X for p in parts]), obs=obs, var=first.var[[]].copy())
    out.uns["cellbridge"] = {"construction": f"stacked profiles: {', '.join(profiles)}"}
    return out
