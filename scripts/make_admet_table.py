"""Store ADMET-AI's predictions for the 96 drugs of the simulated screen.

ADMET-AI (the ``admet-ai`` package) pins versions of Chemprop and RDKit that differ from
cellbridge's, so it is installed in an environment of its own; its raw predictions for
the drugs of ``cellbridge.data.drug_table()`` are stored in
``src/cellbridge/data/resources/admet_ai_drugs.csv`` and served by
``cellbridge.bird.PrecomputedADMET``, so the ADMET-AI baseline of the simulated screen
runs (and is tested) without the package.

Run, in an environment with admet-ai and cellbridge installed::

    python -m venv admet && admet/bin/pip install admet-ai==2.0.1 -e .
    admet/bin/python scripts/make_admet_table.py

Stored with admet-ai 2.0.1, Chemprop 2.3.1, RDKit 2026.03.6: ``ADMETModel(
include_physchem=True, drugbank_path=None)``, raw predictions (not z-scored), 52
properties, 10 significant digits.
"""

from __future__ import annotations

from pathlib import Path

from cellbridge.bird import admet_embedding
from cellbridge.data import drug_table

OUT = Path(__file__).resolve().parents[1] / "src/cellbridge/data/resources/admet_ai_drugs.csv"


def main() -> None:
    smiles = drug_table().set_index("name")["smiles"]
    raw = admet_embedding(smiles, standardize=False)
    raw.insert(0, "smiles", smiles.loc[raw.index])
    raw.index.name = "drug"
    raw.to_csv(OUT, float_format="%.10g")
    print(f"wrote {OUT} ({raw.shape[0]} drugs x {raw.shape[1] - 1} properties)")


if __name__ == "__main__":
    main()
