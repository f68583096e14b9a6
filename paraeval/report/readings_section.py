"""The report's Readings section: readings.csv, the distance plot, per row which readings
reproduce it (the CSVs `paraeval readings` writes; see paraeval.study.readings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from paraeval.report.plots import bars
from paraeval.study.verdict_readings import flags

STAGES = ("screen", "combination", "confirm")


def readings_frames(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(readings.csv, readings_rows.csv) of `directory`, or None when the study is not there."""
    lines, rows = directory / "readings.csv", directory / "readings_rows.csv"
    if not (lines.exists() and rows.exists()):
        return None
    return pd.read_csv(lines), pd.read_csv(rows)


def readings_section(lines: pd.DataFrame, rows: pd.DataFrame) -> dict[str, Any]:
    """Template context: the table, the plot and the per-row reproduction lists."""
    return {
        "lines": lines.to_dict("records"),
        "plot": _distance_plot(lines),
        "rows": _per_row(rows),
    }


def _distance_plot(lines: pd.DataFrame) -> Any:
    """Each reading's distance to the paper, both metrics (mean |measured - paper| accuracy
    plus M_adv, pp: one scale for every line), closest first."""
    total = lines["mean_abs_diff_accuracy"] + lines["mean_abs_diff_m_adv"]
    ordered = lines.assign(total=total).sort_values("total")
    labels = [
        f"{r} ({st}, {s} seed(s))"
        for r, st, s in zip(ordered["reading"], ordered["stage"], ordered["seeds"], strict=True)
    ]
    x_label = "mean |measured - paper|, accuracy + M_adv (pp)"
    values = list(ordered["total"])
    return bars(labels, values, x_label, "Each reading's distance to the paper")


def _per_row(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per paper row: the readings (with most seeds each) that put both paper values inside the
    95 % prediction interval for one run, and those that do for M_adv alone (a one-seed
    reading has no interval and is in neither list)."""
    best = rows.sort_values("seeds").groupby(["reading", "row"], sort=False).tail(1)
    result = []
    for name, group in best.groupby("row", sort=False):
        accuracy, m_adv_in = (flags(group[f"{m}_in_pi"]) for m in ("accuracy", "m_adv"))
        both = group[accuracy & m_adv_in]
        m_adv = group[m_adv_in & ~accuracy]
        result.append(
            {
                "row": name,
                "paper": f"{group['paper_accuracy'].iloc[0]} / {group['paper_m_adv'].iloc[0]}",
                "both": [_label(r) for r in both.to_dict("records")],
                "m_adv_only": [_label(r) for r in m_adv.to_dict("records")],
            }
        )
    return result


def _label(record: dict[str, Any]) -> str:
    return f"{record['reading']} ({record['seeds']})"
