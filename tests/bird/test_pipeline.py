"""Signatures -> Jaccard -> spectral embedding on the simulated screen: the embedding
recovers the simulated mechanisms (drugs of one ATC class share response genes)."""

from __future__ import annotations

import numpy as np
import pytest

from cellbridge.bird import (
    bird_embedding,
    differential_response,
    jaccard_similarity,
)
from cellbridge.data import perturbation_screen


@pytest.fixture(scope="module")
def screen_embedding():  # type: ignore[no-untyped-def]
    adata, _ = perturbation_screen(n_drugs=24, n_cell_lines=3, cells_per_condition=40, seed=0)
    refs = ["line0", "line1"]
    sig = differential_response(adata, reference_lines=refs, top_k=40)
    sims = {line: jaccard_similarity(sig.for_line(line)) for line in refs}
    E = bird_embedding(sims, n_components=8)
    atc = adata.obs.drop_duplicates("drug").set_index("drug")["atc"]
    return E, atc.loc[E.index].to_numpy()


def test_nearest_drug_shares_the_mechanism(screen_embedding) -> None:  # type: ignore[no-untyped-def]
    E, atc = screen_embedding
    X = E.to_numpy()
    D = np.linalg.norm(X[:, None] - X[None], axis=2)
    np.fill_diagonal(D, np.inf)
    nearest = D.argmin(axis=1)
    hit = float(np.mean(atc[nearest] == atc))
    # chance: the probability that another drug has the same class
    same = (atc[:, None] == atc[None]).sum(axis=1) - 1
    chance = float(np.mean(same / (len(atc) - 1)))
    assert hit > 0.8 and hit > 3 * chance, (hit, chance)
    assert E.shape == (24, 16) and E.index.name == "drug"
    assert list(E.columns) == [f"line{i}_{j}" for i in (0, 1) for j in range(1, 9)]
