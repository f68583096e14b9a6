"""What the report's figures show, computed from the summary and the store (drawn by plots.py).

* a forest plot per paper table (paper value, measured mean and 95 % interval, per row);
* M_adv against the accuracy drop, measured and published;
* Table 2's M_adv against σ;
* FGSM success against ε, on the victim and replayed on each table's parasites;
* prediction-change heat maps (shaded count tables): one per (table, attack) summed over its
  rows and seeds, and per pair one shown on demand (``<details>``), so the report stays small.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from paraeval.models.victims import PAPER_VICTIM_ACCURACY
from paraeval.report import plots
from paraeval.run.results import summary_bounds
from paraeval.run.store import Store
from paraeval.study.paper import PAPER_ATTACK, ROWS, PaperRow

Matrices = dict[tuple[str, str, str], np.ndarray]


def paper_record(summary: pd.DataFrame, row: PaperRow) -> dict[str, Any] | None:
    """The summary row of paper row `row` (FGSM transfer on its victim), if measured."""
    if summary.empty:
        return None
    found = summary[
        (summary["victim"] == row.victim)
        & (summary["defense"] == row.name)
        & (summary["attack"] == PAPER_ATTACK)
        & (summary["mode"] == "transfer")
    ]
    return found.iloc[0].to_dict() if len(found) else None


def figures(
    summary: pd.DataFrame, store: Store, cells: list[Any], matrices: Matrices
) -> dict[str, Any]:
    """The template's figures: forest plots, the other plots, the per-table heat maps."""
    forests = [f for table in (1, 2, 3) if (f := _forest(summary, table)) is not None]
    others = [_tradeoff(summary), _sigma(summary), _success(store, cells)]
    return {
        "forests": forests,
        "plots": [p for p in others if p is not None],
        "table_heatmaps": _table_heatmaps(matrices),
    }


def _forest(summary: pd.DataFrame, table: int) -> Markup | None:
    rows = []
    for row in (r for r in ROWS if r.table == table):
        record = paper_record(summary, row)
        if record is not None:
            rows.append(
                plots.ForestRow(
                    row.name,
                    (row.accuracy, row.m_adv),
                    summary_bounds(record, "accuracy"),
                    summary_bounds(record, "m_adv"),
                )
            )
    if not rows:
        return None
    return plots.forest(
        rows, f"Table {table}: paper (x) and measured mean with its 95 % prediction interval"
    )


def _tradeoff(summary: pd.DataFrame) -> Markup | None:
    transfer = summary[summary["mode"] == "transfer"]
    if transfer.empty:
        return None
    series = []
    for index, (victim, group) in enumerate(transfer.groupby("victim", sort=False)):
        drop = group["victim_accuracy"] - group["accuracy_mean"]
        measured = list(zip(drop, group["m_adv_mean"], strict=True))
        series.append(plots.Line(f"{victim} measured", measured, group=index))
        if victim in PAPER_VICTIM_ACCURACY:
            base = PAPER_VICTIM_ACCURACY[str(victim)]
            paper = [(base - r.accuracy, r.m_adv) for r in ROWS if r.victim == victim]
            series.append(plots.Line(f"{victim} paper", paper, dashed=True, group=index))
    return plots.lines(
        series, "accuracy drop (pp)", "M_adv (%)", "M_adv vs accuracy drop", markers_only=True
    )


def _sigma(summary: pd.DataFrame) -> Markup | None:
    series = []
    for index, kind in enumerate(("bn-none", "bn-small", "nobn-none", "nobn-small")):
        rows = [r for r in ROWS if r.table == 2 and r.name.startswith(f"t2-{kind}-")]
        measured = [
            (r.parasites[0].sigma, rec["m_adv_mean"])
            for r in rows
            if (rec := paper_record(summary, r))
        ]
        if measured:
            series.append(plots.Line(f"{kind} measured", measured, group=index))
            paper = [(r.parasites[0].sigma, r.m_adv) for r in rows]
            series.append(plots.Line(f"{kind} paper", paper, dashed=True, group=index))
    if not series:
        return None
    return plots.lines(series, "noise σ", "M_adv (%)", "Table 2: M_adv vs σ")


def _success(store: Store, cells: list[Any]) -> Markup | None:
    """Share of attacked images adversarial at ε' <= ε: on the victim, and after replay."""
    grid = [round(0.05 * k, 2) for k in range(1, 21)]
    victim_eps: dict[str, list[float]] = {}
    protected: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for cell in cells:
        if cell.status != "ok" or cell.row["attack"] != PAPER_ATTACK:
            continue
        samples = [s for s in store.samples(cell.key) if s["clean_pred"] == s["label"]]
        eps = [s["epsilon"] if s["counted"] else math.inf for s in samples]
        victim_eps.setdefault(cell.row["victim"], eps)
        if cell.row["defense"] != "none":
            protected[_group(cell.row["defense"])] += [
                (e, s["protected_pred"] != s["label"]) for e, s in zip(eps, samples, strict=True)
            ]
    if not victim_eps:
        return None
    series = [
        plots.Line(f"victim {v}", [(e, 100 * float(np.mean([x <= e for x in xs]))) for e in grid])
        for v, xs in victim_eps.items()
    ]
    for group, values in protected.items():
        points = [(e, 100 * float(np.mean([x <= e and f for x, f in values]))) for e in grid]
        series.append(plots.Line(f"replayed on {group}", points, dashed=True))
    return plots.lines(series, "FGSM ε", "adversarial (%)", "FGSM success vs ε")


def _group(defense: str) -> str:
    return {"t1": "Table 1", "t2": "Table 2", "t3": "Table 3"}.get(defense[:2], defense)


def _table_heatmaps(matrices: Matrices) -> list[dict[str, Any]]:
    """One heat map per (group of defenses, attack), summed over its rows, victims and seeds
    (shaded HTML tables: a few KB each, where an SVG image of the same matrix takes ~40 KB)."""
    grouped: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros((10, 10), int))
    for (_victim, defense, attack), matrix in matrices.items():
        if defense != "none":
            grouped[(_group(defense), attack)] += matrix
    return [
        {"title": f"{g} · {a}", "matrix": matrix_table(m.tolist())}
        for (g, a), m in sorted(grouped.items())
    ]


def pairs(summary: pd.DataFrame, matrices: Matrices) -> list[dict[str, Any]]:
    """Evasion (transfer and adaptive) pairs, each with its matrix as a compact table."""
    found = []
    for record in summary.to_dict("records"):
        if record["mode"] == "extraction":
            continue
        key = (record["victim"], record["defense"], record["attack"])
        matrix = matrices.get(key, np.zeros((10, 10), int))
        found.append({"record": record, "matrix": matrix_table(matrix.tolist())})
    return found


def _shade(value: int, peak: int) -> int:
    """0 (empty) .. 4 (the peak), on a log scale."""
    return min(4, math.ceil(4 * math.log1p(value) / math.log1p(peak)))


def matrix_table(matrix: list[list[int]]) -> Markup:
    """A 10x10 count table shaded in 5 steps by CSS classes (a few hundred bytes per pair)."""
    peak = max((v for row in matrix for v in row), default=0) or 1
    head = "".join(f"<th>{c}</th>" for c in range(10))
    body = []
    for r, row in enumerate(matrix):
        cells = "".join(f'<td class="h{_shade(v, peak)}">{v or ""}</td>' for v in row)
        body.append(f"<tr><th>{r}</th>{cells}</tr>")
    return Markup(
        f'<table class="matrix"><tr><th>{escape("v→p")}</th>{head}</tr>{"".join(body)}</table>'
    )
