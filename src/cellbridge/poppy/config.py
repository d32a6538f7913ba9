"""The POPPY configurations, stage 1 (:class:`POPPYConfig`) and stage 2
(:class:`PhenotypeConfig`): frozen dataclasses, built the same way by the API, the CLI and
config files (TOML or JSON). Torch-free, so that the command line starts fast."""

from __future__ import annotations

from dataclasses import dataclass

from cellbridge._options import (
    Options,
    _bad,
    _in_range,
    _int,
    _non_negative_number,
    _positive_int,
    _positive_number,
)

__all__ = ["POPPYConfig", "PhenotypeConfig"]


@dataclass(frozen=True)
class POPPYConfig(Options):
    """Options of :class:`cellbridge.poppy.POPPY` (stage 1, POPPY §2.2.1–2.2.4).

    The paper gives the architecture, the loss and the sampler but no numeric training
    settings: every default below is a cellbridge choice (common for contrastive heads on
    frozen encoders), not a value from the paper; the most consequential are marked
    *(not in the paper)*. On small data (tens of samples) the validation loss of a
    held-out handful is a poor stopping signal — see ``val_fraction``.

    Attributes
    ----------
    embedding_dim
        ``d``, size of the shared l2-normalised embedding *(not in the paper)*.
    hidden_dim
        Hidden width of the two-layer FFNs; ``None`` = their input width.
    dropout
        Dropout inside the FFNs.
    temperature
        :math:`\\tau_{cl}` of Eq. 3 (CLIP's 0.07; *not in the paper*).
    batch_size
        ``B`` samples per batch: anchor, cross-cohort positive, ``B - 2`` fillers (§2.2.4).
    max_cells
        Cells per sample per step, drawn uniformly without replacement (seeded), so memory
        does not grow with sample size; ``None`` = all cells.
    learning_rate, weight_decay
        AdamW settings *(not in the paper)*.
    max_epochs
        Upper bound on epochs; an epoch makes every training sample the anchor of one batch.
    patience
        Early stopping: epochs without a lower validation loss before stopping.
    val_fraction
        Fraction of single-cell samples (with all bulk profiles paired to them) held out
        for validation and early stopping; ``0`` = no validation, train ``max_epochs``.
        With few samples (e.g. 4 validation patients of 40) the validation contrastive
        loss can rise from the first epoch while held-out distance correlations improve;
        prefer ``0`` and a fixed ``max_epochs`` there (``docs/benchmarks.md``).
    seed
        The only source of randomness (split, sampler, cell draws, initialisation, dropout).
    cell_key
        ``obsm`` key of the frozen cell embedding (e.g. ``X_scGPT``); ``None`` = the PCA
        stand-in of :class:`cellbridge.encoders.PCAStandIn`, fitted on the training cells.
    n_pcs
        Components of the PCA stand-in.
    bulk_key
        ``obsm`` key of a precomputed per-sample bulk embedding; ``None`` = gene tokens.
    n_gene_components
        ``d_b`` of the default gene tokens, learned once from the single-cell reference as
        PCA loadings (:meth:`cellbridge.encoders.ScaledGeneEmbeddings.from_reference`).
    sample_key
        ``obs`` column naming the single-cell sample of each cell, and (in ``bulk``) the
        single-cell sample each bulk profile is paired with; a bulk object without the
        column is paired by its ``obs_names``.
    cohort_key
        ``obs`` column of ``bulk`` with each profile's cohort (positives come from others).
    assay_key
        Optional ``obs`` column of ``bulk``; when set, the sampler's groups are
        cohort x assay, so positives may also come from another assay of one cohort.
    similarity_key
        ``obsp`` key of the similarity matrix ``S`` in the similarity AnnData.
    num_workers
        DataLoader worker processes (0 = load in the training process).
    accelerator, devices, strategy, num_nodes
        Passed to ``lightning.pytorch.Trainer`` (``"auto"`` uses a GPU when present;
        ``strategy="ddp"`` for several processes: each encodes its share of every batch,
        the loss is computed on the gathered batch; ``num_nodes`` machines of ``devices``
        processes each, see ``docs/cluster.md``).
    """

    embedding_dim: int = 128
    hidden_dim: int | None = None
    dropout: float = 0.1
    temperature: float = 0.07
    batch_size: int = 32
    max_cells: int | None = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 50
    patience: int = 10
    val_fraction: float = 0.1
    seed: int = 0
    cell_key: str | None = None
    n_pcs: int = 50
    bulk_key: str | None = None
    n_gene_components: int = 64
    sample_key: str = "sample"
    cohort_key: str = "cohort"
    assay_key: str | None = None
    similarity_key: str = "similarity"
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        _positive_int(self, "embedding_dim", "batch_size", "max_epochs", "n_pcs", "num_nodes")
        _positive_int(self, "n_gene_components", "patience")
        if self.hidden_dim is not None:
            _positive_int(self, "hidden_dim")
        if self.max_cells is not None:
            _positive_int(self, "max_cells")
        if self.batch_size < 2:
            _bad("batch_size", self.batch_size, "must be at least 2 (anchor + positive)")
        _int(self, "seed", "num_workers")
        if self.num_workers < 0:
            _bad("num_workers", self.num_workers, "must be >= 0")
        _in_range(self, "dropout", 0.0, 1.0, closed_high=False)
        _in_range(self, "val_fraction", 0.0, 1.0, closed_high=False)
        _positive_number(self, "temperature", "learning_rate")
        _non_negative_number(self, "weight_decay")


@dataclass(frozen=True)
class PhenotypeConfig(Options):
    """Options of stage 2 (:meth:`cellbridge.poppy.POPPY.finetune`, POPPY §2.2.5).

    The paper gives the head's equations but no numeric settings: every default is a
    cellbridge choice.

    Attributes
    ----------
    label_key
        ``obs`` column of the bulk profiles with the binary phenotype (0/1 or bool).
    reference
        The reference cell embeddings :math:`x_c^{(i)}`: ``"frozen"`` (default) = the
        frozen cell embedding itself (e.g. the FM's) — §2.2.5 writes the same symbol as
        Eq. 2's frozen inputs; ``"poppy"`` = each atlas cell alone through the frozen
        stage-1 cell encoder (a set of one cell: Standardize, FFN, l2 — the "POPPY cell
        embeddings" of Figure 4a).
    max_reference_cells
        Seeded uniform subsample of the atlas used as the reference; ``None`` = all cells.
    query_dim
        Size of the query and keys.
    temperature
        :math:`\\tau_{ft}`; ``None`` = ``sqrt(query_dim)``.
    finetune_bulk
        Train the stage-1 bulk encoder with the head (``True``) or keep it frozen.
    reconstruction_weight
        :math:`\\lambda` of an optional decomposition term *not in the paper*, which asks
        the attention to write each profile as a weighted combination of the reference
        cells (the decomposition of the paper's discussion). ``0`` = the paper's loss,
        under which *which* cells a class attends to is left free (guide §5); 100 with
        the ``"expression"`` space makes the attribution find the cells that make up the
        responders' profiles.
    reconstruction_space
        ``"expression"`` (default): the attention-weighted mixture of the reference
        cells' expression fractions should equal the profile's,
        :math:`\\lambda \\mathcal{L}_{dec}` (:mod:`cellbridge.poppy.decomposition`; needs
        the atlas's raw counts for the encoder's genes, and bulk given as log1p-CPM).
        ``"embedding"``: :math:`\\lambda\\,(1 - \\cos(E_c^{head}(\\sum_i \\alpha_i x^{(i)}),
        z_b))`, the pooled cell embedding mapped by the frozen stage-1 cell encoder
        should land on the bulk embedding (with the ``"poppy"`` reference the pooled
        embedding is compared after l2-normalisation); weaker on the pbmc patients.
    learning_rate, weight_decay
        AdamW.
    batch_size, max_epochs
        Bulk profiles per step; epochs (fixed: no validation split, no early stopping).
    chunk_size
        Reference cells per chunk of the streaming softmax (bounds memory).
    seed
        Seeds the reference subsample, the head's initialisation and the batch order.
    accelerator, devices
        Lightning's.
    """

    SECTION = "finetune"

    label_key: str = "phenotype"
    reference: str = "frozen"
    max_reference_cells: int | None = None
    query_dim: int = 64
    temperature: float | None = None
    finetune_bulk: bool = True
    reconstruction_weight: float = 0.0
    reconstruction_space: str = "expression"
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 100
    chunk_size: int = 8192
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"

    def __post_init__(self) -> None:
        _positive_int(self, "query_dim", "batch_size", "max_epochs", "chunk_size")
        if self.max_reference_cells is not None:
            _positive_int(self, "max_reference_cells")
        _int(self, "seed")
        if self.reference not in ("poppy", "frozen"):
            _bad("reference", self.reference, "must be 'poppy' or 'frozen'")
        if self.reconstruction_space not in ("embedding", "expression"):
            _bad(
                "reconstruction_space",
                self.reconstruction_space,
                "must be 'embedding' or 'expression'",
            )
        if not isinstance(self.finetune_bulk, bool):
            _bad("finetune_bulk", self.finetune_bulk, "must be true or false")
        if self.temperature is not None:
            _positive_number(self, "temperature")
        _positive_number(self, "learning_rate")
        _non_negative_number(self, "weight_decay", "reconstruction_weight")
        if not isinstance(self.label_key, str) or not self.label_key:
            _bad("label_key", self.label_key, "must name an obs column")
