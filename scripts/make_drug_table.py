"""Build the small drug table the simulated screen uses, from the list admet-ai ships.

Source: ``admet_ai/resources/data/drugbank_approved.csv`` inside the admet-ai wheel
(DrugBank approved drugs: names, DrugBank ids and structures are DrugBank Open Data, CC0;
ATC codes are the WHO classification). Kept: drugs with exactly one ATC code, grouped by
ATC level 4 (the chemical/pharmacological subgroup, used as the "mechanism class"), the
12 classes listed below, 8 drugs each, the first 8 by DrugBank id.

Run: ``python scripts/make_drug_table.py PATH/TO/drugbank_approved.csv``
(``pip download --no-deps admet-ai`` and unzip the CSV from the wheel, or point at an
installed admet-ai).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

CLASSES = [
    "L01EX",  # other protein kinase inhibitors
    "L01XX",  # other antineoplastic agents
    "L01BC",  # pyrimidine analogues
    "N06AA",  # non-selective monoamine reuptake inhibitors (tricyclics)
    "N05BA",  # benzodiazepine derivatives (anxiolytics)
    "N05AB",  # phenothiazines with piperazine structure
    "J01DD",  # third-generation cephalosporins
    "J01MA",  # fluoroquinolones
    "J05AP",  # antivirals for hepatitis C
    "C08CA",  # dihydropyridine calcium channel blockers
    "M01AE",  # propionic acid derivatives (NSAIDs)
    "B01AC",  # platelet aggregation inhibitors
]
PER_CLASS = 8
OUT = Path(__file__).resolve().parents[1] / "src/cellbridge/data/resources/drugs.csv"


def main(path: str) -> None:
    table = pd.read_csv(path)
    single = table[table["atc"].notna() & ~table["atc"].astype(str).str.contains(";")]
    rows = []
    for code in CLASSES:
        members = single[single["atc"] == code].sort_values("id").head(PER_CLASS)
        if len(members) < PER_CLASS:
            raise SystemExit(f"class {code} has only {len(members)} single-ATC drugs")
        rows.append(members)
    out = pd.concat(rows)[["name", "id", "smiles", "atc", "atc_name_3", "atc_name_4"]]
    out = out.rename(
        columns={
            "id": "drugbank_id",
            "atc_name_3": "atc_level3_name",
            "atc_name_4": "atc_level4_name",
        }
    )
    out.to_csv(OUT, index=False)
    print(f"wrote {len(out)} drugs in {len(CLASSES)} ATC classes to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
