"""POPPY: bulk <-> single-cell alignment supervised by Cell Ontology transport."""

from cellbridge.poppy.attribution import aggregate_attribution
from cellbridge.poppy.config import POPPYConfig
from cellbridge.poppy.decomposition import ExpressionDecomposition, expression_decomposition
from cellbridge.poppy.evaluate import evaluate_alignment
from cellbridge.poppy.loss import (
    ContrastiveLoss,
    contrastive_loss_terms,
    multi_positive_contrastive_loss,
)
from cellbridge.poppy.model import POPPY
from cellbridge.poppy.network import POPPYNet
from cellbridge.poppy.pbmc import (
    PBMC_PHENOTYPE_CONFIG,
    PbmcAlignment,
    PbmcPhenotype,
    PbmcSplit,
    pbmc_alignment,
    pbmc_phenotype,
    pbmc_split,
)
from cellbridge.poppy.phenotype import FineTuned, PhenotypeConfig
from cellbridge.poppy.phenotype_eval import evaluate_phenotype
from cellbridge.poppy.sampler import CrossCohortSampler, sample_batch
from cellbridge.poppy.similarity import (
    ontology_graph_metric,
    proportion_similarity,
    sample_similarity,
)
from cellbridge.poppy.training import TrainingHistory

__all__ = [
    "PBMC_PHENOTYPE_CONFIG",
    "POPPY",
    "ContrastiveLoss",
    "CrossCohortSampler",
    "ExpressionDecomposition",
    "FineTuned",
    "POPPYConfig",
    "POPPYNet",
    "PbmcAlignment",
    "PbmcPhenotype",
    "PbmcSplit",
    "PhenotypeConfig",
    "TrainingHistory",
    "aggregate_attribution",
    "contrastive_loss_terms",
    "evaluate_alignment",
    "evaluate_phenotype",
    "expression_decomposition",
    "multi_positive_contrastive_loss",
    "ontology_graph_metric",
    "pbmc_alignment",
    "pbmc_phenotype",
    "pbmc_split",
    "proportion_similarity",
    "sample_batch",
    "sample_similarity",
]
