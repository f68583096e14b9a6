"""The report's Companions section: Knockoff Nets' fidelity against the queries
spent, per defense, and the query-stream detectors' figures, beside the parasite rows."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from paraeval.report.plots import PALETTE, Line, lines
from paraeval.study.companions import companion_sentences, detector_table, knockoff_table


def companion_section(results: pd.DataFrame, cells: list[Any]) -> dict[str, Any] | None:
    """Template context (None when the run has no companion cells)."""
    knockoff, detectors = knockoff_table(results), detector_table(results)
    if knockoff.empty and detectors.empty:
        return None
    return {
        "sentences": companion_sentences(results),
        "curves": fidelity_curves(cells),
        "knockoff": knockoff.to_dict("records"),
        "knockoff_columns": [
            c for c in knockoff.columns if c not in ("victim", "defense", "attack")
        ],
        "detectors": detectors.to_dict("records"),
        "detector_columns": [
            c for c in detectors.columns if c not in ("victim", "defense", "attack")
        ],
    }


def _measured(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("victim", "defense", "attack")]


def fidelity_curves(cells: list[Any]) -> list[Any]:
    """One plot per (victim, knockoff configuration): fidelity to the victim against queries,
    one line per defense (means over seeds at each budget)."""
    points: dict[tuple[str, str], dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for cell in cells:
        row = cell.row
        if cell.status != "ok" or not str(row["attack"]).startswith("knockoff"):
            continue
        for detail in row.get("extraction") or []:
            if detail.get("fidelity_victim") is not None:
                by_budget = points[(row["victim"], row["attack"])][row["defense"]]
                by_budget[int(detail["queries"])].append(float(detail["fidelity_victim"]))
    plots = []
    for (victim, attack), defenses in points.items():
        series = [  # dashed once the palette's colours come round again
            Line(
                defense,
                [(q, float(np.mean(v))) for q, v in sorted(budgets.items())],
                dashed=index >= len(PALETTE),
            )
            for index, (defense, budgets) in enumerate(defenses.items())
        ]
        plots.append(
            lines(
                series, "queries", "fidelity to the victim (%)", f"{victim} · {attack}", log_x=True
            )
        )
    return plots
