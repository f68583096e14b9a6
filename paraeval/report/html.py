"""The self-contained HTML report, rendered from DIR/results.sqlite only.

`paraeval report DIR` re-renders it (and the CSVs) from the store of the latest run in DIR
without recomputing anything. Everything a plugin controls is escaped by Jinja2's autoescape
or markupsafe in the SVG builders.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from paraeval.errors import UserError
from paraeval.report.companions_section import companion_section
from paraeval.report.figures import figures, pairs, paper_record
from paraeval.report.readings_section import readings_frames, readings_section
from paraeval.run.results import (
    change_matrix,
    do_nothing_inside,
    paper_inside,
    paper_outside,
    parasite_fits,
    results_frame,
    summarise,
    summary_bounds,
    summary_interval,
    write_tables,
)
from paraeval.run.store import DB_NAME, Store
from paraeval.study.notes import reproduction_notes
from paraeval.study.paper import ROWS
from paraeval.study.verdict import readings_sentences, summary_sentences
from paraeval.training.parasites import ParasiteFit, constant_ratio, fit_ratio

FIT_KEYS: tuple[Literal["mse_to_target", "mse_to_identity", "identity_mse", "bias_norm"], ...] = (
    "mse_to_target", "mse_to_identity", "identity_mse", "bias_norm",
)  # fmt: skip
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
        "pairs": pairs(summary, matrices),
        "failed": results[results["status"] == "failed"].to_dict("records"),
        "warnings": results[results["warnings"].notna()].to_dict("records"),
        **figures(summary, store, cells, matrices),
        "fits": _fits(cells),
        "extraction": _extraction_tables(cells),
        "companions": companion_section(results, cells),
        "choices": reproduction_notes(),
        "seeds": sorted({int(s) for s in results["seed"]}) if len(results) else [],
        "victims": victim_accuracies(results),
    }
    environment = Environment(
        loader=PackageLoader("paraeval", "report/templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = _number
    environment.filters["interval"] = summary_interval
    environment.filters["outside"] = paper_outside
    environment.filters["count_or_dash"] = _count
    html = environment.get_template("report.html.j2").render(**context)
    path = directory / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def victim_accuracies(results: pd.DataFrame) -> list[dict[str, Any]]:
    """Per victim of the run: its measured test accuracy (the range over the victims the cells
    used) beside the accuracy its plugin says was published (the paper's 98.78 % and 99.11 %
    for VM and VM batch, Sec. 6.1), or none."""
    from paraeval.run.lookup import victims

    known = victims()
    lines = []
    for name, group in results.groupby("victim", sort=True) if len(results) else ():
        measured = group["victim_accuracy"].dropna().astype(float)
        victim = known.get(str(name))
        lines.append(
            {
                "victim": name,
                "dataset": group["dataset"].iloc[0] if "dataset" in group else "",
                "low": measured.min() if len(measured) else None,
                "high": measured.max() if len(measured) else None,
                "paper": getattr(victim, "paper_accuracy", None),
            }
        )
    return lines


def _verdict_sentences(
    summary: pd.DataFrame, readings: tuple[pd.DataFrame, pd.DataFrame] | None
) -> list[str]:
    """The generated verdict (paraeval.study.verdict): the same sentences as the README's block."""
    found = summary_sentences(summary) if not summary.empty else []
    return found + (readings_sentences(*readings) if readings else [])


def _count(value: Any) -> str:
    """A count, or '–' where there is none (a one-seed reading has no interval to count in)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(int(value))


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


def _paper_table(summary: pd.DataFrame, table: int) -> dict[str, Any]:
    rows = []
    for row in (r for r in ROWS if r.table == table):
        rows.append({"paper": row, "measured": paper_record(summary, row)})
    return {"number": table, "rows": rows}


def _verdict(summary: pd.DataFrame) -> dict[str, Any]:
    """How many paper rows reproduce, per metric: the paper value inside the 95 % prediction
    interval for one run, beside the do-nothing baseline (the unprotected victim judged with
    the same half-width), and within 1 pp."""
    verdict: dict[str, Any] = {"measured": 0, "total": len(ROWS), "misses": []}
    for metric in ("accuracy", "m_adv"):
        verdict[metric] = {"in_pi": 0, "baseline": 0, "close": 0}
    for row in ROWS:
        record = paper_record(summary, row)
        if record is None:
            continue
        verdict["measured"] += 1
        for metric in ("accuracy", "m_adv"):
            inside = paper_inside(record, metric) is True
            close = abs(record[f"{metric}_diff"]) <= CLOSE_PP
            verdict[metric]["in_pi"] += inside
            verdict[metric]["baseline"] += do_nothing_inside(record, metric) is True
            verdict[metric]["close"] += close
            if not inside:
                low, high = summary_bounds(record, metric)[1:]
                verdict["misses"].append(
                    {
                        "row": row,
                        "metric": metric,
                        "record": record,
                        "close": close,
                        "low": low,
                        "high": high,
                    }
                )
    return verdict


Matrices = dict[tuple[str, str, str], np.ndarray]


def _fits(cells: list[Any]) -> list[dict[str, Any]]:
    """Parasite fit per defense and parasite, averaged over seeds: one parasite per seed,
    however many attacks' cells carry it (`n` counts seeds)."""
    by_seed: dict[tuple[str, str], dict[Any, ParasiteFit]] = defaultdict(dict)
    for cell in cells:
        for fit in parasite_fits(cell.row):
            by_seed[(cell.row["defense"], fit["parasite"])][cell.row["seed"]] = fit
    rows = []
    for (defense, parasite), per_seed in by_seed.items():
        fits = list(per_seed.values())
        mean: dict[str, float] = {
            key: float(np.mean([fit[key] for fit in fits])) for key in FIT_KEYS
        }
        ratios = {
            "fit_ratio": float(np.median([fit_ratio(fit) for fit in fits])),
            "constant_ratio": float(np.median([constant_ratio(fit) for fit in fits])),
        }
        rows.append({"defense": defense, "parasite": parasite, "n": len(fits), **mean, **ratios})
    return rows


#: Detail columns that identify an extraction row rather than measure something.
GROUPING_COLUMNS = ("lines", "budget", "kind")
#: Detail columns that neither identify nor measure (a query stream's index).
IGNORED_COLUMNS = ("stream",)


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
        measured = [c for c in columns if c not in (*GROUPING_COLUMNS, *IGNORED_COLUMNS)]
        rows_out = [
            {
                "key": key,
                "seeds": len(details),
                "values": [_aggregate([d.get(c) for d in details]) for c in measured],
            }
            for key, details in rows.items()
        ]
        keys = ["victim", "defense", *[c for c in GROUPING_COLUMNS if c in columns]]
        tables.append({"attack": attack, "keys": keys, "columns": measured, "rows": rows_out})
    return tables


def _aggregate(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return float(np.mean(numbers))
    texts = sorted({str(v) for v in values if v is not None})
    return "; ".join(texts) if texts else None
