"""The results schema and the files written from the store (docs/outputs.md is generated from
the schema: :mod:`paraeval.run.results_page`).

results.csv has one row per cell: the columns of :data:`RESULTS_SCHEMA` (every cell kind), then
the metrics an extraction attack reported (any names; the runner keeps them all). summary.csv
aggregates it per (victim, defense, attack, mode) over seeds (the random factor: the parasite's
noise, initialisation and training order, and under pipeline seeds the victim): mean, standard
deviation, 95 % intervals of accuracy and M_adv, the paper's values and measured - paper.
``python -m paraeval.run.results docs/outputs.md`` rewrites the outputs page from this schema.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from paraeval.core.metrics import inside, seed_intervals, t_interval, within_half_width
from paraeval.run.loading import write_run_json
from paraeval.run.store import SAMPLE_COLUMNS, Store
from paraeval.training.parasites import ParasiteFit


@dataclass(frozen=True)
class Column:
    """One results.csv column: its name and what it holds."""

    name: str
    meaning: str


RESULTS_SCHEMA: tuple[Column, ...] = (
    Column("victim", "the victim model (`paraeval list victims`)"),
    Column("dataset", "the dataset the victim classifies (`paraeval list datasets`); rows "
           "stored before this column existed were all `mnist`"),
    Column("defense", "the defense, with the options given (`t1-*:init=dirac`)"),
    Column("attack", "the attack, with the options given"),
    Column("seed", "the cell seed (parasite noise, initialisation, training order)"),
    Column("victim_seed", "the seed the victim was trained with (`--victim-seed`; under "
           "`--seed-scope pipeline` it is the cell seed)"),
    Column("status", "`ok` or `failed`"),
    Column("accuracy", "protected model's accuracy (%) on the dataset's test images (MNIST: "
           "10,000)"),
    Column("victim_accuracy", "the unprotected victim's accuracy (%) on the same images"),
    Column("m_adv", "% of the adversarial examples (crafted on the victim) that the protected "
           "model classifies correctly (paper Sec. 6.2)"),
    Column("n_attacked", "images among the first `--n-images` the victim classifies correctly "
           "(they are attacked)"),
    Column("n_adversarial", "of those, the ones the attack made adversarial on the victim: "
           "M_adv's denominator"),
    Column("paper_accuracy", "the published accuracy when the defense is a paper row (FGSM "
           "transfer cells only), else empty"),
    Column("paper_m_adv", "the published M_adv, likewise"),
    Column("seconds", "wall time of the cell (building the protected model + the attack)"),
    Column("n_misclassified", "images the victim already misclassifies (not counted)"),
    Column("n_recovered", "M_adv's numerator"),
    Column("n_changed_label", "examples still adversarial on the protected model but with "
           "another label (Sec. 6.3)"),
    Column("accuracy_wilson_low", "Wilson 95 % interval of `accuracy` (10,000 images), low end"),
    Column("accuracy_wilson_high", "its high end"),
    Column("m_adv_wilson_low", "Wilson 95 % interval of `m_adv` (`n_adversarial` examples), "
           "low end"),
    Column("m_adv_wilson_high", "its high end"),
    Column("robust_accuracy", "adaptive mode only: % of the attacked images the protected "
           "model still classifies correctly under the attack"),
    Column("median_epsilon", "adaptive mode only: median ε (sweeps) or L2 norm (DeepFool) that "
           "fooled the protected model"),
    Column("mode", "`transfer` (crafted on the victim, replayed on the protected model), "
           "`adaptive` (the protected model attacked) or `extraction`"),
    Column("headline", "extraction only: the metric the attack declares as its headline"),
    Column("warnings", "sanity warnings of the cell (gradient masking, bias bound, ...)"),
    Column("error", "traceback of a failed cell"),
)  # fmt: skip
RESULT_COLUMNS = [column.name for column in RESULTS_SCHEMA]
#: The stored key of a transfer cell's parasite fits (:func:`parasite_fits` reads them back).
PARASITE_FIT = "parasite_fit"
#: Stored with a cell but not a results.csv column (the report reads them from the store).
STORED_ONLY = (PARASITE_FIT, "extraction", "info")


def parasite_fits(row: Mapping[str, Any]) -> list[ParasiteFit]:
    """The fits of the parasites a stored cell's defense inserted (none for other defenses
    and other cell kinds)."""
    return list(row.get(PARASITE_FIT) or [])


SAMPLES_CSV_COLUMNS = ["victim", "defense", "attack", "seed", "mode", *SAMPLE_COLUMNS]
CHANGE_COLUMNS = ["victim", "defense", "attack", "seed", "original_pred", "protected_pred", "count"]
SUMMARY_KEYS = ["victim", "defense", "attack", "mode"]


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """results.csv: the schema's columns, then every attack metric the rows carry (a row
    stored before the dataset column existed was an MNIST row: every victim was)."""
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS + metric_columns(rows))
    frame["dataset"] = frame["dataset"].astype(object).fillna("mnist")
    return frame


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns an extraction attack added (its metrics, each declared in its
    ``metric_docs``), in order of first appearance. Any other row carrying a key outside the
    schema is a bug (a misspelled column), not a new column: an error."""
    known = {*RESULT_COLUMNS, *STORED_ONLY}
    stray = {key for row in rows if row.get("mode") != "extraction" for key in row} - known
    if stray:
        raise ValueError(f"result rows carry keys outside the schema: {', '.join(sorted(stray))}")
    return list(dict.fromkeys(key for row in rows for key in row if key not in known))


def interval_text(mean: float, low: float, high: float, digits: int = 2) -> str:
    """'mean ± half-width' of an interval ('mean' alone when there is none, e.g. one seed):
    the one formatter of the CLI, the scripts and the report."""
    if math.isnan(low) or math.isnan(high):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def summary_bounds(record: Mapping[str, Any], metric: str) -> tuple[float, float, float]:
    """`metric`'s (mean, low, high) of a summary row: the 95 % prediction interval for one run
    where the row has one (accuracy, M_adv), else the interval of the mean."""
    kind = "pi" if f"{metric}_pi_low" in record else "ci"
    return (
        float(record[f"{metric}_mean"]),
        float(record[f"{metric}_{kind}_low"]),
        float(record[f"{metric}_{kind}_high"]),
    )


def summary_interval(record: Mapping[str, Any], metric: str, digits: int = 2) -> str:
    """`metric`'s mean ± half-width of a summary row (see :func:`summary_bounds`)."""
    return interval_text(*summary_bounds(record, metric), digits)


def paper_inside(record: Mapping[str, Any], metric: str, interval: str = "pi") -> bool | None:
    """Whether the paper value lies inside `metric`'s prediction interval for one run (the
    interval of the mean for a summary written before it had one), or with ``interval="ci"``
    the interval of the mean; None when unknown. Reads the summary frame's booleans and
    summary.csv's re-read ones alike."""
    flag = record.get(f"{metric}_paper_in_{interval}", record.get(f"{metric}_paper_in_ci"))
    if isinstance(flag, str):
        flag = {"True": True, "False": False}.get(flag)
    if isinstance(flag, float) and not math.isnan(flag):  # a CSV column with blanks
        flag = flag == 1.0
    return bool(flag) if isinstance(flag, bool | np.bool_) else None


def paper_outside(record: Mapping[str, Any], metric: str) -> bool:
    """Whether the paper value lies outside `metric`'s interval (False when unknown)."""
    return paper_inside(record, metric) is False


def do_nothing_inside(record: Mapping[str, Any], metric: str) -> bool | None:
    """The do-nothing baseline of one row: would the unprotected victim (its accuracy; M_adv
    0, since every adversarial example stays adversarial on the victim itself) agree with the
    paper under the same tolerance, the half-width of the row's prediction interval? None
    without an interval or a paper value."""
    _mean, low, high = summary_bounds(record, metric)
    paper = record.get(f"paper_{metric}")
    if paper is None or pd.isna(paper):
        return None
    value = float(record["victim_accuracy"]) if metric == "accuracy" else 0.0
    return within_half_width(float(paper), value, low, high)


def summary_table(summary: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """The run summary as printed: per (victim, defense, attack), accuracy and the headline
    (M_adv, robust accuracy or an extraction attack's declared metric) beside the paper."""
    columns = [
        "victim",
        "defense",
        "attack",
        "seeds",
        "accuracy",
        "paper acc",
        "headline",
        "paper M_adv",
    ]
    rows = []
    for record in summary.to_dict("records"):
        adaptive = record["mode"] == "adaptive"
        rows.append(
            [
                record["victim"],
                record["defense"],
                f"{record['attack']}{' (adaptive)' if adaptive else ''}",
                record["n_seeds"],
                summary_interval(record, "accuracy"),
                _paper(record, "accuracy", "paper_accuracy"),
                _headline(record),
                _paper(record, "m_adv", "paper_m_adv"),
            ]
        )
    return columns, rows


def _paper(record: dict[str, Any], metric: str, paper_column: str) -> str:
    paper = float(record[paper_column])
    if math.isnan(paper):
        return ""
    return f"{paper:.2f}{' ✗' if paper_outside(record, metric) else ''}"


def _headline(record: dict[str, Any]) -> str:
    """M_adv (transfer), robust accuracy (adaptive) or the extraction attack's headline."""
    if record["mode"] == "adaptive":
        return f"robust acc {summary_interval(record, 'robust_accuracy')}"
    if record["mode"] == "extraction":
        headline = record.get("headline")
        value = record.get(f"{headline}_mean") if isinstance(headline, str) else None
        if value is not None and not math.isnan(float(value)):
            return f"{headline} {float(value):.3f}"
        return "see extraction.csv"
    return summary_interval(record, "m_adv")


def extraction_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """DIR/extraction.csv rows of one extraction cell: its attack's detail rows."""
    cell = {k: row[k] for k in ("victim", "defense", "attack", "seed")}
    return [{**cell, **detail} for detail in row.get("extraction") or []]


def change_matrix(store: Store, key: str) -> np.ndarray:
    """The 10x10 prediction-change matrix of one cell, from its counted samples."""
    matrix = np.zeros((10, 10), dtype=np.int64)
    for sample in store.samples(key):
        if sample["counted"]:
            matrix[sample["victim_pred"], sample["protected_pred"]] += 1
    return matrix


def change_rows(store: Store, key: str, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The long-form rows of one ok cell's prediction-change matrix."""
    matrix = change_matrix(store, key)
    cell = {k: row[k] for k in ("victim", "defense", "attack", "seed")}
    return [
        {**cell, "original_pred": a, "protected_pred": b, "count": int(matrix[a, b])}
        for a in range(10)
        for b in range(10)
    ]


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (victim, defense, attack, mode) over its `ok` seeds.

    Transfer rows carry M_adv (and the paper's values for the paper's attack, FGSM); adaptive
    rows carry the protected model's robust accuracy instead. The two are never mixed.
    """
    records = []
    ok = results[results["status"] == "ok"]
    for keys, group in ok.groupby(SUMMARY_KEYS, sort=False):
        record: dict[str, Any] = dict(zip(SUMMARY_KEYS, keys, strict=True))
        record["dataset"] = group["dataset"].iloc[0] if "dataset" in group else "mnist"
        record["n_seeds"] = len(group)
        victims = group["victim_seed"].fillna(0) if "victim_seed" in group else pd.Series([0])
        record["n_victim_seeds"] = victims.nunique()
        for metric, paper_column in (("accuracy", "paper_accuracy"), ("m_adv", "paper_m_adv")):
            values = group[metric].astype(float).tolist()
            mean, std, low, high, pi_low, pi_high = seed_intervals(values)
            paper = group[paper_column].iloc[0]
            paper = float(paper) if paper is not None and not pd.isna(paper) else math.nan
            record.update(
                {
                    f"{metric}_mean": mean,
                    f"{metric}_std": std,
                    f"{metric}_ci_low": low,
                    f"{metric}_ci_high": high,
                    f"{metric}_pi_low": pi_low,
                    f"{metric}_pi_high": pi_high,
                    paper_column: paper,
                    f"{metric}_diff": mean - paper,
                    f"{metric}_paper_in_ci": inside(paper, low, high),
                    f"{metric}_paper_in_pi": inside(paper, pi_low, pi_high),
                }
            )
        for column in _extraction_columns(group):
            record[f"{column}_mean"] = float(group[column].astype(float).mean())
        robust = group["robust_accuracy"].astype(float).tolist()
        mean, _std, low, high = t_interval(robust)
        record.update(
            robust_accuracy_mean=mean, robust_accuracy_ci_low=low, robust_accuracy_ci_high=high
        )
        record["victim_accuracy"] = float(group["victim_accuracy"].astype(float).mean())
        if "headline" in group and group["headline"].notna().any():  # extraction attacks
            record["headline"] = group["headline"].dropna().iloc[0]
        records.append(record)
    return pd.DataFrame(records).round(4)


def _extraction_columns(group: pd.DataFrame) -> list[str]:
    """The numeric attack-metric columns this group has values for (averaged over seeds)."""
    extra = [c for c in group.columns if c not in RESULT_COLUMNS]
    return [c for c in extra if _numeric(group[c])]


def _numeric(column: pd.Series) -> bool:
    present = column.dropna().infer_objects()
    return len(present) > 0 and pd.api.types.is_numeric_dtype(present)


def write_tables(store: Store, keys: list[str], out: Path) -> None:
    """Write the three CSVs for the cells `keys` (in that order) from the store.

    Each file is written to a temporary name and renamed, so a reader never sees half a file.
    """
    rows, changes, extraction, samples = [], [], [], []
    for key in keys:
        cell = store.cell(key)
        if cell is None:
            continue
        rows.append(cell.row)
        if cell.status == "ok" and cell.row.get("mode", "transfer") == "transfer":
            changes += change_rows(store, key, cell.row)
        if cell.status == "ok":
            extraction += extraction_rows(cell.row)
            samples += sample_rows(store, key, cell.row)
    results = results_frame(rows)
    _write(results, out / "results.csv")
    runs = store.runs()
    by_id = {run["id"]: run for run in runs}
    computed_by = [_without_cells(by_id[i]) for i in store.computing_runs(keys) if i in by_id]
    write_run_json(out, runs[-1] if runs else {}, results.to_dict("records"), computed_by)
    _write(pd.DataFrame(samples, columns=SAMPLES_CSV_COLUMNS), out / "samples.csv")
    _write(pd.DataFrame(changes, columns=CHANGE_COLUMNS), out / "prediction_change.csv")
    _write(summarise(results), out / "summary.csv")
    _write(
        pd.DataFrame(extraction, columns=_extraction_csv_columns(extraction)),
        out / "extraction.csv",
    )


def sample_rows(store: Store, key: str, row: dict[str, Any]) -> list[dict[str, Any]]:
    """samples.csv rows of one cell: one per attacked image (none for extraction cells)."""
    cell = {k: row[k] for k in SAMPLES_CSV_COLUMNS[:5]}
    return [
        {**cell, **sample, "epsilon": exact_epsilon(sample["epsilon"])}
        for sample in store.samples(key)
    ]


def exact_epsilon(value: float | None) -> float | None:
    """An image's ε as the attack was given it: the attacks compute in float32, where the
    sweep's 0.1 is 0.100000001490116; the shortest decimal that is the same float32 is 0.1.
    (DeepFool's L2 norms are float32 measurements: the same rule shows their precision.)"""
    if value is None or math.isnan(value):
        return value
    return float(str(np.float32(value)))


def _extraction_csv_columns(rows: list[dict[str, Any]]) -> list[str]:
    """victim, defense, attack, seed, then every detail column in order of appearance."""
    columns = ["victim", "defense", "attack", "seed"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def _without_cells(run: dict[str, Any]) -> dict[str, Any]:
    """A run's record with the count of the cells it listed instead of their keys."""
    return {key: value for key, value in run.items() if key != "cells"} | {
        "n_cells": len(run["cells"])
    }


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
