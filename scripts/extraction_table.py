"""Print extraction tables (markdown) from an extraction.csv.

    python scripts/extraction_table.py reports/extraction.csv

critical-points: per (victim, defense, kind of line), means over seeds of points per line,
precision, recall, the parasite and max-pool shares of the critical points, and the share of
recovered normals with |cos| > 0.99. fee: per (defense, backend), seeds, extracted, hidden
units found, fidelity to the victim and to the protected model.
"""

from __future__ import annotations

import sys

import pandas as pd

CRITICAL = ["points_per_line", "precision", "recall", "parasite_fraction", "max_pool_fraction",
            "normals_cos99"]  # fmt: skip
FEE = ["extracted", "units_found", "fidelity_to_victim", "fidelity_to_protected"]


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_text(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *body])


def _text(value: object) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.3g}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def main(path: str) -> None:
    frame = pd.read_csv(path)
    critical = frame[frame["attack"].str.startswith("critical-points")]
    if len(critical):
        keys = ["victim", "defense", "lines"]
        table = critical.groupby(keys, sort=False)[CRITICAL].mean().reset_index()
        table.insert(3, "seeds", critical.groupby(keys, sort=False).size().to_numpy())
        print(markdown(table))
    fee = frame[frame["attack"].str.startswith("fee")]
    if len(fee):
        keys = ["defense", "backend"]
        present = [c for c in FEE if c in fee.columns]
        table = fee.groupby(keys, sort=False)[present].mean().reset_index()
        table.insert(2, "seeds", fee.groupby(keys, sort=False).size().to_numpy())
        print()
        print(markdown(table))


if __name__ == "__main__":
    main(sys.argv[1])
