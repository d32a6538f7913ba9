"""Gene-level analysis of k-NN gains and gene-set enrichment — BiRD §5.1 (Fig. 3C).

For each gene the k-NN prediction error is averaged over (drug, cell line) settings per
embedding (:attr:`cellbridge.bird.KnnResult.per_gene`); the genes whose error drops most
under one embedding against another (:func:`top_improved_genes`, the top 500 in the paper)
are tested for over-representation in gene sets such as GO terms (:func:`enrichment`, a
one-sided Fisher exact test with Benjamini-Hochberg q-values). Gene sets are read from
GMT files (:func:`read_gmt`), the format MSigDB and Enrichr distribute; none is shipped.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cellbridge._checks import require_unique
from cellbridge.errors import InputError

__all__ = ["enrichment", "read_gmt", "top_improved_genes", "write_gmt"]


def read_gmt(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read gene sets from a GMT file (tab-separated).

    Each non-blank line is ``name<TAB>description<TAB>gene1<TAB>gene2...``. The description
    (often a URL or ``"na"``) is not kept. Empty gene fields, as left by trailing tabs, are
    not genes and are skipped; a gene listed twice in one set is kept once (a set); leading
    and trailing whitespace around each field is removed. Lines holding only whitespace are
    skipped.

    Parameters
    ----------
    path
        The GMT file (UTF-8).

    Returns
    -------
    dict of str to list of str
        Set name -> its genes in file order, sets in file order.

    Raises
    ------
    InputError
        A line with fewer than three fields, an empty set name, a set with no gene, or a
        set name used twice; the message names the line number (1-based).
    """
    sets: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split("\t")]
            where = f"{os.fspath(path)}, line {number}"
            if len(fields) < 3:
                raise InputError(
                    where,
                    f"has {len(fields)} tab-separated fields; GMT needs name, description "
                    "and at least one gene",
                    values=[line[:80]],
                    fix="separate the fields with tabs (not spaces)",
                )
            name = fields[0]
            if not name:
                raise InputError(where, "has an empty gene-set name", values=[line[:80]])
            genes = list(dict.fromkeys(g for g in fields[2:] if g))
            if not genes:
                raise InputError(
                    where, "lists no gene", values=[name], fix="remove the empty gene set"
                )
            if name in sets:
                raise InputError(
                    where,
                    f"repeats the gene-set name of line {first_line[name]}",
                    values=[name],
                    fix="give every gene set a unique name",
                )
            sets[name] = genes
            first_line[name] = number
    return sets


def write_gmt(
    gene_sets: Mapping[str, Sequence[str]],
    path: str | os.PathLike[str],
    *,
    descriptions: Mapping[str, str] | None = None,
) -> None:
    """Write gene sets as a GMT file, readable by :func:`read_gmt` (and by MSigDB tools).

    Parameters
    ----------
    gene_sets
        Set name -> genes (at least one). Names and genes may not contain tabs or line
        breaks.
    path
        File to write (UTF-8, ``\\n`` line ends); an existing file is replaced.
    descriptions
        Set name -> description; ``"na"`` for sets without one.
    """
    descriptions = descriptions or {}
    lines = []
    for name, genes in gene_sets.items():
        if isinstance(genes, str):
            raise InputError(f"gene_sets[{name!r}]", "is a single string", values=[genes])
        fields = [str(name), str(descriptions.get(name, "na")), *map(str, genes)]
        bad = [f for f in fields if any(c in f for c in "\t\r\n")]
        if bad:
            raise InputError(
                f"gene_sets[{name!r}]", "has fields with tabs or line breaks", values=bad
            )
        if len(fields) < 3:
            raise InputError(f"gene_sets[{name!r}]", "has no gene", fix="drop the empty set")
        lines.append("\t".join(fields))
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def enrichment(
    genes: Sequence[str],
    gene_sets: Mapping[str, Collection[str]],
    universe: Sequence[str],
) -> pd.DataFrame:
    r"""Over-representation of ``genes`` in each gene set: one-sided Fisher exact test.

    With :math:`N` genes in the universe, :math:`n` selected genes, a set of :math:`K`
    universe genes and :math:`a` selected genes in it, the p-value is the hypergeometric
    upper tail

    .. math::

        p = P(X \ge a), \quad X \sim \mathrm{Hypergeom}(N, K, n),

    computed as ``scipy.stats.hypergeom.sf(a - 1, N, K, n)``; it equals
    ``scipy.stats.fisher_exact([[a, n - a], [K - a, N - K - n + a]],
    alternative="greater")``. q-values are Benjamini-Hochberg
    (``scipy.stats.false_discovery_control(p, method="bh")``) over every set tested.

    Genes of a set that are not in the universe are not counted (the test is conditional
    on the universe); ``size`` is the number that are. A set with no universe gene is kept
    with ``p = 1`` (it still counts in the BH correction) and NaN ``odds`` and ``fold``.

    Parameters
    ----------
    genes
        The selected genes (e.g. :func:`top_improved_genes`); unique, every one in
        ``universe``, at least one.
    gene_sets
        Set name -> genes (e.g. :func:`read_gmt`).
    universe
        Every gene that could have been selected (e.g. the genes scored by k-NN); unique.

    Returns
    -------
    pandas.DataFrame
        One row per set: ``set``, ``size`` (:math:`K`), ``overlap`` (:math:`a`),
        ``expected`` (:math:`nK/N`), ``fold`` (:math:`a / (nK/N)`), ``odds`` (the sample odds
        ratio :math:`a(N-K-n+a) / ((n-a)(K-a))`, as ``fisher_exact`` reports it: ``inf``
        when only the denominator is 0), ``pval``, ``qval``, ``genes`` (the overlapping
        genes, sorted). Sorted by ``pval``, then ``set``.

    Raises
    ------
    InputError
        Empty or repeated genes, selected genes outside the universe, no gene sets, a gene
        set given as one string.

    Examples
    --------
    >>> table = enrichment(["a", "b"], {"S": ["a", "b", "c"]}, ["a", "b", "c", "d", "e"])
    >>> table[["set", "size", "overlap", "pval"]].round(3).to_dict("records")
    [{'set': 'S', 'size': 3, 'overlap': 2, 'pval': 0.3}]
    """
    if isinstance(genes, str) or isinstance(universe, str):
        raise InputError("genes/universe", "must be sequences of gene names, not one string")
    selected = [str(g) for g in genes]
    space = [str(g) for g in universe]
    require_unique(space, "universe", what="genes")
    require_unique(selected, "genes", what="genes")
    if not selected:
        raise InputError("genes", "is empty", fix="select at least one gene")
    in_universe = set(space)
    outside = [g for g in selected if g not in in_universe]
    if outside:
        raise InputError(
            "genes",
            f"{len(outside)} selected genes are not in the universe",
            values=outside,
            fix="select genes from the universe, or add them to it",
        )
    if not gene_sets:
        raise InputError("gene_sets", "is empty", fix="pass at least one gene set")
    chosen = set(selected)
    N, n = len(space), len(selected)
    rows = []
    for name, members in gene_sets.items():
        if isinstance(members, str):
            raise InputError(
                f"gene_sets[{name!r}]", "is a single string", fix="pass a list of genes"
            )
        present = {str(g) for g in members} & in_universe
        hits = sorted(present & chosen)
        K, a = len(present), len(hits)
        expected = n * K / N
        b, c, d = n - a, K - a, N - K - n + a
        if K == 0:
            odds = fold = float("nan")
        else:
            fold = a / expected
            odds = a * d / (b * c) if b * c else (float("inf") if a * d else float("nan"))
        rows.append((str(name), K, a, expected, fold, odds, hits))
    table = pd.DataFrame(
        rows, columns=["set", "size", "overlap", "expected", "fold", "odds", "genes"]
    )
    sizes = table["size"].to_numpy()
    overlap = table["overlap"].to_numpy()
    pval = np.asarray(stats.hypergeom.sf(overlap - 1, N, sizes, n), dtype=np.float64)
    pval = np.clip(pval, 0.0, 1.0)
    table.insert(6, "pval", pval)
    table.insert(7, "qval", stats.false_discovery_control(pval, method="bh"))
    table = table.sort_values(["pval", "set"], kind="stable").reset_index(drop=True)
    return table


def top_improved_genes(
    per_gene_errors: pd.DataFrame, method: str, baseline: str, *, n: int = 500
) -> pd.Series:
    r"""Genes whose k-NN error drops most under ``method`` against ``baseline`` — Fig. 3C.

    The reduction of gene :math:`j` is
    :math:`\Delta_j = \mathrm{MAE}_{baseline, j} - \mathrm{MAE}_{method, j}` (positive: the
    method predicts the gene better). The ``n`` genes with the largest :math:`\Delta_j` are
    returned, largest first; equal reductions are ordered by gene name. BiRD §5.1 ranks
    genes by these deltas and takes the top 500. Genes are taken by rank, so when fewer
    than ``n`` genes improve the tail holds non-positive reductions: the values are
    returned to show it.

    Parameters
    ----------
    per_gene_errors
        Methods x genes of per-gene MAE (:attr:`cellbridge.bird.KnnResult.per_gene`).
    method, baseline
        Two different row names.
    n
        Number of genes, ``1 <= n <=`` number of genes (default 500, as in the paper).

    Returns
    -------
    pandas.Series
        Gene -> :math:`\Delta_j`, ``n`` entries, descending; name ``"mae_reduction"``.

    Raises
    ------
    InputError
        Unknown or equal methods, ``n`` out of range, non-finite errors.
    """
    if not isinstance(per_gene_errors, pd.DataFrame):
        raise InputError(
            "per_gene_errors", "must be a DataFrame (methods x genes)", fix="pass per_gene"
        )
    require_unique(per_gene_errors.columns, "per_gene_errors.columns", what="genes")
    for field, name in (("method", method), ("baseline", baseline)):
        if name not in per_gene_errors.index:
            raise InputError(
                field,
                "not a row of per_gene_errors",
                values=[name],
                fix=f"use one of {list(per_gene_errors.index)}",
            )
    if method == baseline:
        raise InputError("baseline", "equals method", values=[method], fix="compare two methods")
    n_genes = per_gene_errors.shape[1]
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= n_genes:
        raise InputError(
            "n", f"must be an integer in [1, {n_genes}] (the number of genes)", values=[n]
        )
    rows = per_gene_errors.loc[[baseline, method]].to_numpy(dtype=np.float64)
    if not np.isfinite(rows).all():
        raise InputError("per_gene_errors", "holds non-finite errors", values=[method, baseline])
    delta = rows[0] - rows[1]
    names = np.asarray(per_gene_errors.columns.astype(str))
    order = np.lexsort((names, -delta))[: int(n)]
    return pd.Series(
        delta[order],
        index=pd.Index(per_gene_errors.columns[order], name="gene"),
        name="mae_reduction",
    )
