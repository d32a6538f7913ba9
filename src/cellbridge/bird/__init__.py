"""BiRD: drug embeddings from measured transcriptional responses (Pegoraro et al.)."""

from cellbridge.bird.baselines import (
    ADMET_INSTALL_HINT,
    admet_embedding,
    morgan_embedding,
    random_embedding,
)
from cellbridge.bird.config import BirdConfig
from cellbridge.bird.embedding import (
    DEFAULT_N_COMPONENTS,
    bird_embedding,
    jaccard_similarity,
    load_embedding,
    save_embedding,
    spectral_embedding,
)
from cellbridge.bird.signatures import (
    DEFAULT_ALPHA,
    DEFAULT_TOP_K,
    Signatures,
    compare_groups,
    differential_response,
)

__all__ = [
    "ADMET_INSTALL_HINT",
    "DEFAULT_ALPHA",
    "DEFAULT_N_COMPONENTS",
    "DEFAULT_TOP_K",
    "BirdConfig",
    "Signatures",
    "admet_embedding",
    "bird_embedding",
    "compare_groups",
    "differential_response",
    "jaccard_similarity",
    "load_embedding",
    "morgan_embedding",
    "random_embedding",
    "save_embedding",
    "spectral_embedding",
]
