"""Splits by group: a drug (or cohort) is never on both sides of a split.

- :func:`split_by_group`: groups -> train/val/test, 80/10/10 by default (BiRD A.1 splits
  pseudo-bulk profiles by drug identity, so test drugs are never seen in training).
- :func:`assign_split`: the same per row of an AnnData, with rows to keep out of every
  part (BiRD §2: the reference cell lines that build the drug embedding).
- :func:`assert_disjoint`: refuse a split in which a group spans two parts.
- :func:`leave_one_group_out`: one fold per group (e.g. leave-one-cohort-out, POPPY §3.5).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from anndata import AnnData

from cellbridge._checks import require_unique
from cellbridge.errors import InputError

__all__ = ["assert_disjoint", "assign_split", "leave_one_group_out", "split_by_group"]

log = logging.getLogger(__name__)


def _groups(values: Iterable[Any], field: str) -> pd.Index:
    """The distinct groups, sorted, so that the input order never changes a split."""
    series = pd.Series(list(values) if not isinstance(values, pd.Series) else values)
    if series.isna().any():
        raise InputError(
            field,
            f"{int(series.isna().sum())} missing group labels (NaN)",
            fix="label every row or remove the unlabelled ones",
        )
    unique = pd.Index(pd.unique(series.astype(object)))
    try:
        return unique.sort_values()
    except TypeError as err:
        kinds = sorted({type(v).__name__ for v in unique})
        raise InputError(
            field,
            "group labels of mixed types cannot be ordered",
            values=kinds,
            fix="convert the labels to one type, e.g. str",
        ) from err


def _part_sizes(fractions: Sequence[float], n: int) -> np.ndarray:
    """Largest-remainder rounding of ``fractions * n``; then every non-zero part >= 1."""
    # Rounded so that e.g. 0.29 * 100 is 29, not 28.999999999999996.
    target = np.round(np.asarray(fractions, dtype=float) * n, 9)
    sizes = np.floor(target).astype(int)
    # Remainders go to the largest fractional parts; ties to the earlier part.
    order = sorted(range(len(target)), key=lambda i: (-(target[i] - sizes[i]), i))
    for i in order[: n - int(sizes.sum())]:
        sizes[i] += 1
    for i in map(int, np.flatnonzero((target > 0) & (sizes == 0))):
        # Take the group from the part furthest above its target that can spare one.
        donors = [j for j in range(len(sizes)) if sizes[j] > 1]
        j = max(donors, key=lambda j: (sizes[j] - target[j], -j))
        sizes[j] -= 1
        sizes[i] += 1
    return sizes


def _check_parts(fractions: Sequence[float], names: Sequence[str]) -> None:
    if len(fractions) != len(names):
        raise InputError(
            "fractions",
            f"one fraction per part name ({len(names)}), got {len(fractions)}",
            values=list(fractions),
        )
    require_unique(names, "names", what="part names")
    values = np.asarray(fractions, dtype=float)
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise InputError("fractions", "must be finite and non-negative", values=list(fractions))
    if abs(values.sum() - 1.0) > 1e-9:
        raise InputError(
            "fractions",
            f"must sum to 1, sum to {values.sum():.12g}",
            values=list(fractions),
            fix="divide by their sum",
        )


def split_by_group(
    groups: Iterable[Any],
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    names: Sequence[str] = ("train", "val", "test"),
    seed: int = 0,
) -> pd.Series:
    r"""Assign each group (e.g. each drug) to one part, so no group is in two (BiRD A.1).

    With :math:`n` distinct groups, part :math:`i` receives :math:`n_i` groups, the
    largest-remainder rounding of :math:`f_i n`: :math:`\lfloor f_i n \rfloor`, plus one for
    the parts with the largest remainders (ties to the earlier part) until
    :math:`\sum_i n_i = n`. Then each part with :math:`f_i > 0` and :math:`n_i = 0` takes
    one group from the part furthest above its target, so every non-zero fraction gets at
    least one group. When :math:`f_i n \ge 1` for every non-zero :math:`f_i`, this second
    step does nothing and :math:`|n_i - f_i n| < 1`. The sorted groups are shuffled by
    ``numpy.random.default_rng(seed).permutation`` and cut into consecutive runs of
    :math:`n_1, n_2, \dots` groups.

    Parameters
    ----------
    groups
        Group labels; repeats are allowed (e.g. a column with one entry per row) and count
        once. Labels must be orderable (one type) and not missing.
    fractions
        Share of the groups per part: non-negative, summing to 1. 80/10/10 in BiRD A.1.
    names
        Part names, one per fraction, unique.
    seed
        Seed of the shuffle; same seed and groups, same split (input order is ignored).

    Returns
    -------
    pandas.Series
        Indexed by the sorted distinct groups (index name ``"group"``); categorical values
        with categories ``names``; name ``"split"``.

    Raises
    ------
    InputError
        Bad fractions or names, missing labels, or fewer groups than non-zero fractions.
    """
    _check_parts(fractions, names)
    index = _groups(groups, "groups")
    needed = int(np.count_nonzero(np.asarray(fractions, dtype=float)))
    if len(index) < needed:
        raise InputError(
            "groups",
            f"{len(index)} groups cannot fill {needed} non-empty parts",
            values=list(index),
            fix="pass more groups or set some fractions to 0",
        )
    sizes = _part_sizes(fractions, len(index))
    order = np.random.default_rng(seed).permutation(len(index))
    parts = np.empty(len(index), dtype=object)
    parts[order] = np.repeat(np.asarray(names, dtype=object), sizes)
    return pd.Series(
        pd.Categorical(parts, categories=list(names)),
        index=index.rename("group"),
        name="split",
    )


def assign_split(
    adata: AnnData,
    *,
    group_key: str = "drug",
    key_added: str = "split",
    exclude: Collection[Any] | None = None,
    exclude_key: str | None = None,
    excluded_name: str = "reference",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    names: Sequence[str] = ("train", "val", "test"),
    seed: int = 0,
) -> pd.Series:
    """Write each row's part to ``obs[key_added]``, splitting by group (BiRD A.1, §2).

    Rows whose ``obs[exclude_key]`` is in ``exclude`` are kept out of every part and get
    ``excluded_name``; the groups of the remaining rows are split by
    :func:`split_by_group`. For BiRD, ``group_key="drug", exclude=reference_lines,
    exclude_key="cell_line"``: the reference cell lines that build the drug embedding
    never enter training, validation or test, and a drug is in one part only.

    Parameters
    ----------
    adata
        Rows to split (cells or pseudo-bulk replicates).
    group_key
        ``obs`` column of the groups that must not span parts.
    key_added
        ``obs`` column written (categorical); an existing one is replaced, with a log
        line. ``uns[key_added]`` records the parameters.
    exclude
        Values of ``obs[exclude_key]`` whose rows are kept out; each must occur.
    exclude_key
        Column ``exclude`` refers to; default ``group_key``.
    excluded_name
        Part name of the excluded rows; must differ from ``names``.
    fractions, names, seed
        As in :func:`split_by_group`.

    Returns
    -------
    pandas.Series
        The part of each group of the non-excluded rows (:func:`split_by_group`).
    """
    exclude_key = group_key if exclude_key is None else exclude_key
    for field, key in (("group_key", group_key), ("exclude_key", exclude_key)):
        if key not in adata.obs.columns:
            raise InputError(
                field,
                "not an obs column",
                values=[key],
                fix=f"use one of {list(adata.obs.columns)}",
            )
    if excluded_name in names:
        raise InputError("excluded_name", "is also a part name", values=[excluded_name])
    out = np.zeros(adata.n_obs, dtype=bool)
    excluded: list[Any] = []
    if exclude is not None:
        if isinstance(exclude, str):
            raise InputError(
                "exclude",
                "must be a collection of values, not one string",
                values=[exclude],
                fix=f"pass [{exclude!r}]",
            )
        excluded = list(exclude)
        present = set(adata.obs[exclude_key].dropna())
        missing = [v for v in excluded if v not in present]
        if missing:
            raise InputError(
                "exclude",
                f"values that do not occur in obs[{exclude_key!r}]",
                values=missing,
                fix="check the spelling of the excluded values",
            )
        out = adata.obs[exclude_key].isin(excluded).to_numpy()
    groups = adata.obs[group_key][~out]
    split = split_by_group(groups, fractions=fractions, names=names, seed=seed)
    labels = pd.Series(excluded_name, index=adata.obs_names, dtype=object)
    labels[~out] = split.reindex(groups.to_numpy()).astype(object).to_numpy()
    if key_added in adata.obs.columns:
        log.info("assign_split: replacing obs[%r]", key_added)
    adata.obs[key_added] = pd.Categorical(labels, categories=[*names, excluded_name])
    adata.uns[key_added] = {
        "group_key": group_key,
        "exclude_key": exclude_key,
        "excluded": [str(v) for v in excluded],
        "excluded_name": excluded_name,
        "fractions": [float(f) for f in fractions],
        "names": list(names),
        "seed": seed,
    }
    log.info(
        "assign_split: %d groups split %s; %d rows excluded as %r",
        len(split),
        dict(split.value_counts().items()),
        int(out.sum()),
        excluded_name,
    )
    return split


def assert_disjoint(
    split: pd.Series | pd.DataFrame | AnnData,
    *,
    group_key: str = "drug",
    split_key: str = "split",
    ignore: Collection[str] = ("reference",),
) -> None:
    """Raise if any group falls in more than one part.

    Parameters
    ----------
    split
        A Series group -> part (the index holds the groups, repeats allowed), or a
        DataFrame / AnnData whose (``obs``) columns ``group_key`` and ``split_key`` hold
        each row's group and part.
    group_key, split_key
        Columns read from a DataFrame or ``obs``.
    ignore
        Parts left out of the check, e.g. the excluded reference rows of
        :func:`assign_split`, which share drugs with every part by design.

    Raises
    ------
    InputError
        Naming each group that spans parts, with its parts.
    """
    if isinstance(split, AnnData):
        split = split.obs
    if isinstance(split, pd.DataFrame):
        missing = [k for k in (group_key, split_key) if k not in split.columns]
        if missing:
            raise InputError(
                "split",
                "missing columns",
                values=missing,
                fix=f"pass group_key/split_key among {list(split.columns)}",
            )
        frame = pd.DataFrame(
            {"group": split[group_key].to_numpy(), "part": split[split_key].to_numpy()}
        )
    else:
        frame = pd.DataFrame({"group": split.index.to_numpy(), "part": split.to_numpy()})
    frame = frame[~frame["part"].isin(list(ignore))]
    parts = frame.groupby("group", sort=True)["part"].unique()
    spanning = parts[parts.map(len) > 1]
    if len(spanning):
        raise InputError(
            "split",
            f"{len(spanning)} groups are in more than one part",
            values=[f"{g}: {sorted(map(str, p))}" for g, p in spanning.items()],
            fix="split by group (split_by_group / assign_split), never by row",
        )


def leave_one_group_out(
    groups: Iterable[Any],
) -> list[tuple[str, npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    """One fold per group: train on every other group, test on it (POPPY §3.5).

    Parameters
    ----------
    groups
        One group label per row (e.g. ``obs["cohort"]``); not missing, one type.

    Returns
    -------
    list of (name, train, test)
        In sorted group order: the group as a string, then the sorted row positions of
        the other groups and of this group. The test sets partition the rows.

    Raises
    ------
    InputError
        Missing labels, or fewer than two groups (a fold would have no training rows).
    """
    labels = pd.Series(list(groups) if not isinstance(groups, pd.Series) else groups)
    index = _groups(labels, "groups")
    if len(index) < 2:
        raise InputError(
            "groups",
            "leave-one-group-out needs at least two groups",
            values=list(index),
            fix="pass labels with two or more groups",
        )
    codes = index.get_indexer(pd.Index(labels.astype(object)))
    rows = np.arange(len(codes))
    return [(str(g), rows[codes != k], rows[codes == k]) for k, g in enumerate(index)]
