"""The self-contained HTML report, rendered from DIR/results.sqlite only.

`paraeval report DIR` re-renders it (and the CSVs) from the store of the latest run in DIR
without recomputing anything. Everything a plugin controls is escaped by Jinja2's autoescape
or markupsafe in the SVG builders.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from ..errors import UserError
from ..models.victims import PAPER_VICTIM_ACCURACY
from ..notes import reproduction_notes
from ..paper import PAPER_ATTACK, ROWS, PaperRow
from ..results import (
    change_matrix,
    results_frame,
    summarise,
    summary_interval,
    write_tables,
)
from ..store import DB_NAME, Store
from ..verdict import readings_sentences, summary_sentences
from .readings import readings_frames, readings_section
from .svg import Series, chart, heatmap

FIT_KEYS = ("mse_to_target", "mse_to_identity", "identity_mse", "bias_norm")
CLOSE_PP = 1.0


def latest_run(store: Store) -> dict[str, Any]:
    runs = store.runs()
    if not runs:
        raise UserError(f"no run recorded in {store.path}")
    return runs[-1]


def rerender(directory: Path) -> Path:
    """Rewrite the CSVs and report.html of DIR from its store (nothing is recomputed)."""
    if not (directory / DB_NAME).exists():
        raise UserError(f"no {DB_NAME} in {directory}: run `paraeval run --out {directory}` first")
    with Store(directory) as store:
        write_tables(store, latest_run(store)["cells"], directory)
        return render_report(store, directory)


def render_report(store: Store, directory: Path) -> Path:
    run = latest_run(store)
    readings = readings_frames(directory)
    cells = [cell for key in run["cells"] if (cell := store.cell(key)) is not None]
    results = results_frame([cell.row for cell in cells])
    summary = summarise(results)
    matrices = _matrices(store, cells)
    context = {
        "run": run,
        "results": results,
        "summary": summary,
        "tables": [_paper_table(summary, number) for number in (1, 2, 3)],
        "verdict": _verdict(summary),
        "verdict_sentences": _verdict_sentences(summary, readings),
        "readings": readings_section(*readings) if readings else None,
        "pairs": _pairs(summary, matrices),
        "failed": results[results["status"] == "failed"].to_dict("records"),
        "warnings": results[results["warnings"].notna()].to_dict("records"),
        "plots": _plots(summary, store, cells),
        "fits": _fits(cells),
        "extraction": _extraction_tables(cells),
        "choices": reproduction_notes(),
        "seeds": sorted({int(s) for s in results["seed"]}) if len(results) else [],
    }
    environment = Environment(
        loader=PackageLoader("paraeval", "report/templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = _number
    environment.filters["interval"] = summary_interval
    html = environment.get_template("report.html.j2").render(**context)
    path = directory / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def _verdict_sentences(
    summary: pd.DataFrame, readings: tuple[pd.DataFrame, pd.DataFrame] | None
) -> list[str]:
    """The generated verdict (paraeval.verdict): the same sentences as the README's block."""
    found = summary_sentences(summary) if not summary.empty else []
    return found + (readings_sentences(*readings) if readings else [])


def _number(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, int | float | np.floating) else str(value)


def _matrices(store: Store, cells: list[Any]) -> dict[tuple[str, str, str], np.ndarray]:
    """Prediction-change matrices summed over seeds, per (victim, defense, attack)."""
    totals: dict[tuple[str, str, str], np.ndarray] = defaultdict(lambda: np.zeros((10, 10), int))
    for cell in cells:
        if cell.status != "ok":
            continue
        key = (cell.row["victim"], cell.row["defense"], cell.row["attack"])
        totals[key] += change_matrix(store, cell.key)
    return totals


def _record(summary: pd.DataFrame, row: PaperRow) -> dict[str, Any] | None:
    if summary.empty:
        return None
    found = summary[
        (summary["victim"] == row.victim)
        & (summary["defense"] == row.name)
        & (summary["attack"] == PAPER_ATTACK)
    ]
    return found.iloc[0].to_dict() if len(found) else None


def _paper_table(summary: pd.DataFrame, table: int) -> dict[str, Any]:
    rows = []
    for row in (r for r in ROWS if r.table == table):
        rows.append({"paper": row, "measured": _record(summary, row)})
    return {"number": table, "rows": rows}


def _verdict(summary: pd.DataFrame) -> dict[str, Any]:
    """How many paper rows reproduce, per metric: paper value inside the CI, within 1 pp."""
    verdict: dict[str, Any] = {"measured": 0, "total": len(ROWS), "misses": []}
    for metric in ("accuracy", "m_adv"):
        verdict[metric] = {"in_ci": 0, "close": 0}
    for row in ROWS:
        record = _record(summary, row)
        if record is None:
            continue
        verdict["measured"] += 1
        for metric in ("accuracy", "m_adv"):
            flag = record[f"{metric}_paper_in_ci"]
            in_ci = bool(flag) if isinstance(flag, bool | np.bool_) else False
            close = abs(record[f"{metric}_diff"]) <= CLOSE_PP
            verdict[metric]["in_ci"] += in_ci
            verdict[metric]["close"] += close
            if not in_ci:
                verdict["misses"].append(
                    {"row": row, "metric": metric, "record": record, "close": close}
                )
    return verdict


Matrices = dict[tuple[str, str, str], np.ndarray]


def _pairs(summary: pd.DataFrame, matrices: Matrices) -> list[dict[str, Any]]:
    """Evasion (transfer and adaptive) pairs with their heat maps; extraction has its section."""
    pairs = []
    for record in summary.to_dict("records"):
        if record["mode"] == "extraction":
            continue
        key = (record["victim"], record["defense"], record["attack"])
        matrix = matrices.get(key, np.zeros((10, 10), int))
        title = f"{key[0]} · {key[1]} · {key[2]}"
        pairs.append({"record": record, "heatmap": heatmap(matrix.tolist(), title)})
    return pairs


def _plots(summary: pd.DataFrame, store: Store, cells: list[Any]) -> list[Any]:
    if summary.empty:
        return []
    plots = [_tradeoff_plot(summary)]
    table2 = _sigma_plot(summary)
    if table2 is not None:
        plots.append(table2)
    plots.append(_success_plot(store, cells))
    return plots


def _tradeoff_plot(summary: pd.DataFrame) -> Any:
    series = []
    for victim, group in summary.groupby("victim", sort=False):
        drop = group["victim_accuracy"] - group["accuracy_mean"]
        points = list(zip(drop.tolist(), group["m_adv_mean"].tolist(), strict=True))
        tips = [f"{d} ({a})" for d, a in zip(group["defense"], group["attack"], strict=True)]
        series.append(Series(f"{victim} (measured)", points, tooltips=tips))
    paper = [(r.victim, r) for r in ROWS]
    victim_accuracy = dict(zip(summary["victim"], summary["victim_accuracy"], strict=False))
    for victim in dict.fromkeys(v for v, _ in paper):
        if victim not in victim_accuracy:
            continue
        base = PAPER_VICTIM_ACCURACY[victim]
        points = [(base - r.accuracy, r.m_adv) for v, r in paper if v == victim]
        tips = [f"paper {r.name}" for v, r in paper if v == victim]
        series.append(Series(f"{victim} (paper)", points, tooltips=tips))
    return chart(series, "accuracy drop (pp)", "M_adv (%)", "M_adv vs accuracy drop", lines=False)


def _sigma_plot(summary: pd.DataFrame) -> Any | None:
    series = []
    for kind in ("bn-none", "bn-small", "nobn-none", "nobn-small"):
        rows = [r for r in ROWS if r.table == 2 and r.name.startswith(f"t2-{kind}-")]
        measured = [
            (r.parasites[0].sigma, rec["m_adv_mean"]) for r in rows if (rec := _record(summary, r))
        ]
        if measured:
            series.append(Series(f"{kind} measured", measured))
            series.append(
                Series(
                    f"{kind} paper", [(r.parasites[0].sigma, r.m_adv) for r in rows], dashed=True
                )
            )
    if not series:
        return None
    return chart(series, "noise sigma", "M_adv (%)", "Table 2: M_adv vs sigma")


def _success_plot(store: Store, cells: list[Any]) -> Any:
    """Fraction of attacked images adversarial at eps <= e: on the victim, and after replay."""
    grid = [round(0.05 * k, 2) for k in range(1, 21)]
    victim_eps: dict[str, list[float]] = {}
    protected: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for cell in cells:
        if cell.status != "ok" or cell.row["attack"] != PAPER_ATTACK:
            continue
        samples = [s for s in store.samples(cell.key) if s["clean_pred"] == s["label"]]
        victim = cell.row["victim"]
        victim_eps.setdefault(victim, [s["epsilon"] if s["counted"] else math.inf for s in samples])
        if cell.row["defense"] != "none":
            group = _group(cell.row["defense"])
            protected[group] += [
                (s["epsilon"] if s["counted"] else math.inf, s["protected_pred"] != s["label"])
                for s in samples
            ]
    series = [
        Series(f"victim {victim}", [(e, 100 * float(np.mean([x <= e for x in eps]))) for e in grid])
        for victim, eps in victim_eps.items()
    ]
    for group, values in protected.items():
        points = [
            (e, 100 * float(np.mean([x <= e and fooled for x, fooled in values]))) for e in grid
        ]
        series.append(Series(f"replayed on {group}", points, dashed=True))
    return chart(series, "FGSM epsilon", "adversarial (%)", "FGSM success vs epsilon")


def _group(defense: str) -> str:
    return {"t1": "Table 1", "t2": "Table 2", "t3": "Table 3"}.get(defense[:2], defense)


def _fits(cells: list[Any]) -> list[dict[str, Any]]:
    """Parasite fit per defense and parasite, averaged over seeds."""
    collected: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for cell in cells:
        for fit in cell.row.get("parasite_fit") or []:
            collected[(cell.row["defense"], fit["parasite"])].append(fit)
    rows = []
    for (defense, parasite), fits in collected.items():
        mean = {key: float(np.mean([fit[key] for fit in fits])) for key in FIT_KEYS}
        rows.append({"defense": defense, "parasite": parasite, "n": len(fits), **mean})
    return rows


#: Detail columns that identify an extraction row rather than measure something.
GROUPING_COLUMNS = ("lines",)


def _extraction_tables(cells: list[Any]) -> list[dict[str, Any]]:
    """One table per extraction attack: its detail rows (extraction.csv) averaged over seeds.

    Rows are (victim, defense[, kind of line]); numbers are means over the seeds whose cell is
    ok, text (failure messages) is listed once per distinct value.
    """
    grouped: dict[str, dict[tuple[str, ...], list[dict[str, Any]]]] = defaultdict(dict)
    for cell in cells:
        if cell.status != "ok":
            continue
        for detail in cell.row.get("extraction") or []:
            kind = tuple(str(detail[c]) for c in GROUPING_COLUMNS if c in detail)
            key = (cell.row["victim"], cell.row["defense"], *kind)
            grouped[cell.row["attack"]].setdefault(key, []).append(detail)
    tables = []
    for attack, rows in grouped.items():
        columns = list(dict.fromkeys(k for details in rows.values() for d in details for k in d))
        measured = [c for c in columns if c not in GROUPING_COLUMNS]
        rows_out = [
            {"key": key, "seeds": len(details),
             "values": [_aggregate([d.get(c) for d in details]) for c in measured]}
            for key, details in rows.items()
        ]  # fmt: skip
        keys = ["victim", "defense", *[c for c in GROUPING_COLUMNS if c in columns]]
        tables.append({"attack": attack, "keys": keys, "columns": measured, "rows": rows_out})
    return tables


def _aggregate(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return float(np.mean(numbers))
    texts = sorted({str(v) for v in values if v is not None})
    return "; ".join(texts) if texts else None
