"""Options of the BiRD pipeline (:class:`BirdConfig`) and of its aligner
(:class:`AlignConfig`), shared by the API's callers, the CLI and config files (TOML
``[bird]`` / ``[align]`` tables or JSON). Torch-free, so that the command line starts
fast."""

from __future__ import annotations

from dataclasses import dataclass, field

from cellbridge._options import (
    Options,
    _bad,
    _in_range,
    _int,
    _positive_int,
    _positive_number,
)
from cellbridge.bird._controls import check_control_drug
from cellbridge.bird.embedding import DEFAULT_N_COMPONENTS
from cellbridge.bird.signatures import DEFAULT_ALPHA, DEFAULT_TOP_K
from cellbridge.errors import InputError

__all__ = ["AlignConfig", "BirdConfig"]


@dataclass(frozen=True)
class BirdConfig(Options):
    """Options of ``cellbridge bird signatures|embed`` (BiRD §2, Algorithm 1).

    Attributes
    ----------
    reference_lines
        The reference cell lines (BiRD: A549, AN3 CA, SK-MEL-2, SNU-1, A-172).
    method
        DE test: ``"wilcoxon"`` or ``"t-test"``.
    alpha
        q-value cut-off of a signature gene.
    top_k
        Signature size (top genes by ``|logFC|`` among the significant ones).
    n_components
        Embedding dimensions per reference line.
    by
        ``"line"``: hold one reference line's cells at a time; ``"plate"``: read one
        plate at a time from the file (backed), for screens where every (line, drug) is
        on one plate (Tahoe-100M).
    drug_key, control_key, plate_key, cell_line_key
        ``obs`` columns of the cells.
    control_drug
        Mark the controls by their drug instead of the ``control_key`` column (e.g.
        ``"DMSO_TF"`` for the Tahoe-100M plate files, which have no control column).
    """

    SECTION = "bird"

    reference_lines: tuple[str, ...] = field(default_factory=tuple)
    method: str = "wilcoxon"
    alpha: float = DEFAULT_ALPHA
    top_k: int = DEFAULT_TOP_K
    n_components: int = DEFAULT_N_COMPONENTS
    by: str = "line"
    drug_key: str = "drug"
    control_key: str = "control"
    plate_key: str = "plate"
    cell_line_key: str = "cell_line"
    control_drug: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference_lines", tuple(self.reference_lines))
        if not all(isinstance(x, str) and x for x in self.reference_lines):
            _bad("reference_lines", list(self.reference_lines), "must be cell-line names")
        if self.method not in ("wilcoxon", "t-test"):
            _bad("method", self.method, "must be 'wilcoxon' or 't-test'")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float):
            _bad("alpha", self.alpha, "must be a number in (0, 1]")
        if not 0 < self.alpha <= 1:
            raise InputError("alpha", "must be in (0, 1]", values=[self.alpha])
        _positive_int(self, "top_k", "n_components")
        if self.by not in ("line", "plate"):
            _bad("by", self.by, "must be 'line' or 'plate'")
        check_control_drug(self.control_drug)


@dataclass(frozen=True)
class AlignConfig(Options):
    """Options of :class:`Aligner` (BiRD §3, Appendix A).

    The paper gives the objective and the 80/10/10 split by drug but no numeric settings
    (epsilon, iterations, optimiser, batch composition): every default below is a
    cellbridge choice.

    Attributes
    ----------
    cell_key
        ``obsm`` key of the frozen cell embedding.
    drug_key, cell_line_key
        ``obs`` columns of each cell's drug and cell line.
    control_key
        Boolean ``obs`` column of control cells, which have no drug embedding and are left
        out of training and evaluation; ``None`` = no controls.
    control_drug
        Mark the controls by their drug instead (e.g. ``"DMSO_TF"``): the cells with
        ``obs[drug_key] == control_drug`` are left out and ``control_key`` is not read.
    head
        ``"linear"`` (Appendix A) or ``"mlp"`` (one hidden layer of ``hidden_dim``, GELU).
    hidden_dim
        Width of the MLP's hidden layer.
    normalize_drugs
        Scale the drug embedding by one constant so that the mean squared distance between
        drugs is 1 (distances keep their order: Eq. 5 retrieval and its AUROC are
        unchanged); makes ``epsilon`` comparable across embeddings.
    epsilon
        :math:`\\epsilon` of Eq. 2.
    sinkhorn_iterations
        Fixed number of log-domain Sinkhorn iterations, differentiated through.
    drugs_per_batch, cells_per_drug
        Batch composition: drugs drawn without replacement, cells per drug drawn without
        replacement (with replacement for drugs with fewer cells); Eq. 2's :math:`b_k` is
        then uniform over the batch's drugs.
    batches_per_epoch
        ``None`` = enough batches to draw about every training cell once.
    learning_rate, weight_decay
        AdamW.
    max_epochs, patience
        Epochs; early stopping on the validation drugs' loss, best weights kept.
    val_fraction, test_fraction
        Shares of the drugs held out (BiRD A.1: 0.1 and 0.1).
    seed
        Seeds the split, the initialisation and every batch.
    accelerator, devices, strategy, num_nodes
        Lightning's (``strategy="ddp"``: each process projects its share of every batch,
        the loss is computed on the gathered batch; ``docs/cluster.md``).
    """

    SECTION = "align"

    cell_key: str = "X_pca"
    drug_key: str = "drug"
    cell_line_key: str = "cell_line"
    control_key: str | None = "control"
    control_drug: str | None = None
    head: str = "linear"
    hidden_dim: int = 256
    normalize_drugs: bool = True
    epsilon: float = 0.5
    sinkhorn_iterations: int = 50
    drugs_per_batch: int = 16
    cells_per_drug: int = 8
    batches_per_epoch: int | None = None
    learning_rate: float = 3e-2
    weight_decay: float = 1e-4
    max_epochs: int = 30
    patience: int = 10
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        _positive_int(
            self,
            "num_nodes",
            "hidden_dim",
            "sinkhorn_iterations",
            "drugs_per_batch",
            "cells_per_drug",
            "max_epochs",
            "patience",
        )
        if self.batches_per_epoch is not None:
            _positive_int(self, "batches_per_epoch")
        _int(self, "seed")
        _positive_number(self, "epsilon", "learning_rate")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, int | float):
            _bad("weight_decay", self.weight_decay, "must be a number >= 0")
        if self.weight_decay < 0:
            _bad("weight_decay", self.weight_decay, "must be >= 0")
        _in_range(self, "val_fraction", 0.0, 1.0, closed_high=False)
        _in_range(self, "test_fraction", 0.0, 1.0, closed_high=False)
        if self.val_fraction + self.test_fraction >= 1:
            _bad(
                "val_fraction",
                [self.val_fraction, self.test_fraction],
                "val_fraction + test_fraction must leave drugs to train on",
            )
        if self.head not in ("linear", "mlp"):
            _bad("head", self.head, "must be 'linear' or 'mlp'")
        if not isinstance(self.normalize_drugs, bool):
            _bad("normalize_drugs", self.normalize_drugs, "must be true or false")
        for name in ("cell_key", "drug_key", "cell_line_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                _bad(name, value, "must name a key")
        check_control_drug(self.control_drug)
