"""POPPY: bulk <-> single-cell alignment supervised by Cell Ontology transport.

The configurations and the attribution summary are imported with the package; the
names whose modules need torch and Lightning (the model, its losses and training, the
similarity built on :mod:`cellbridge.ot`) load on first use (PEP 562), so that the
command line and config files start without importing torch.
"""

from typing import TYPE_CHECKING

from cellbridge._lazy import lazy_names
from cellbridge.poppy.attribution import aggregate_attribution
from cellbridge.poppy.config import PhenotypeConfig, POPPYConfig

if TYPE_CHECKING:
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
    from cellbridge.poppy.phenotype import FineTuned
    from cellbridge.poppy.phenotype_eval import evaluate_phenotype
    from cellbridge.poppy.sampler import CrossCohortSampler, sample_batch
    from cellbridge.poppy.similarity import (
        ontology_graph_metric,
        proportion_similarity,
        sample_similarity,
    )
    from cellbridge.poppy.training import TrainingHistory
else:  # type checkers see the imports above, so a misspelt name stays an error
    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "decomposition": ["ExpressionDecomposition", "expression_decomposition"],
            "evaluate": ["evaluate_alignment"],
            "loss": [
                "ContrastiveLoss",
                "contrastive_loss_terms",
                "multi_positive_contrastive_loss",
            ],
            "model": ["POPPY"],
            "network": ["POPPYNet"],
            "pbmc": [
                "PBMC_PHENOTYPE_CONFIG",
                "PbmcAlignment",
                "PbmcPhenotype",
                "PbmcSplit",
                "pbmc_alignment",
                "pbmc_phenotype",
                "pbmc_split",
            ],
            "phenotype": ["FineTuned"],
            "phenotype_eval": ["evaluate_phenotype"],
            "sampler": ["CrossCohortSampler", "sample_batch"],
            "similarity": ["ontology_graph_metric", "proportion_similarity", "sample_similarity"],
            "training": ["TrainingHistory"],
        },
    )

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
