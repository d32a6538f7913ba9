"""BiRD: drug embeddings from measured transcriptional responses (Pegoraro et al.).

The aligner (:mod:`cellbridge.bird.align`) and the retrieval evaluation built on it need
torch and Lightning, whose import takes seconds. Their names are loaded on first use
(PEP 562), so that the DE signatures, the embeddings and the k-NN evaluation, and every
Dask worker that runs them, start without importing torch.
"""

from typing import TYPE_CHECKING

from cellbridge._lazy import lazy_names
from cellbridge.bird.baselines import (
    ADMET_INSTALL_HINT,
    PrecomputedADMET,
    admet_embedding,
    morgan_embedding,
    random_embedding,
)
from cellbridge.bird.config import AlignConfig, BirdConfig
from cellbridge.bird.embedding import (
    DEFAULT_N_COMPONENTS,
    bird_embedding,
    jaccard_similarity,
    load_embedding,
    save_embedding,
    spectral_embedding,
)
from cellbridge.bird.gene_sets import enrichment, read_gmt, top_improved_genes, write_gmt
from cellbridge.bird.knn import (
    KnnResult,
    drug_profiles,
    knn_evaluation,
    knn_predict,
    mae_ecdf,
    nearest_training_drugs,
    win_rates,
)
from cellbridge.bird.plate_signatures import signatures_from_plates
from cellbridge.bird.signatures import (
    DEFAULT_ALPHA,
    DEFAULT_TOP_K,
    Signatures,
    compare_groups,
    compare_many,
    compare_rows,
    differential_response,
    mann_whitney_u,
)

if TYPE_CHECKING:
    from cellbridge.bird.align import Aligner, drug_split, fit_per_line
    from cellbridge.bird.retrieval import (
        RetrievalResult,
        compare_drug_spaces,
        evaluate_retrieval,
        retrieval_auroc,
        retrieval_roc,
        retrieval_scores,
    )
else:  # type checkers see the imports above, so a misspelt name stays an error
    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "align": ["Aligner", "drug_split", "fit_per_line"],
            "retrieval": [
                "RetrievalResult",
                "compare_drug_spaces",
                "evaluate_retrieval",
                "retrieval_auroc",
                "retrieval_roc",
                "retrieval_scores",
            ],
        },
    )


__all__ = [
    "ADMET_INSTALL_HINT",
    "DEFAULT_ALPHA",
    "DEFAULT_N_COMPONENTS",
    "DEFAULT_TOP_K",
    "AlignConfig",
    "Aligner",
    "BirdConfig",
    "KnnResult",
    "PrecomputedADMET",
    "RetrievalResult",
    "Signatures",
    "admet_embedding",
    "bird_embedding",
    "compare_drug_spaces",
    "compare_groups",
    "compare_many",
    "compare_rows",
    "differential_response",
    "drug_profiles",
    "drug_split",
    "enrichment",
    "evaluate_retrieval",
    "fit_per_line",
    "jaccard_similarity",
    "knn_evaluation",
    "knn_predict",
    "load_embedding",
    "mae_ecdf",
    "mann_whitney_u",
    "morgan_embedding",
    "nearest_training_drugs",
    "random_embedding",
    "read_gmt",
    "retrieval_auroc",
    "retrieval_roc",
    "retrieval_scores",
    "save_embedding",
    "signatures_from_plates",
    "spectral_embedding",
    "top_improved_genes",
    "win_rates",
    "write_gmt",
]
