"""results.csv, prediction_change.csv and summary.csv (column meanings: README "Outputs").

summary.csv aggregates results.csv per (victim, defense, attack) over seeds: mean, standard
deviation and a 95 % Student t interval of accuracy and M_adv (the seed is the random factor:
it changes the parasite's noise, initialisation and training order), the paper's values and
the difference measured - paper, and whether the paper value lies inside the interval.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import t_interval
from ..store import Store

CHANGE_COLUMNS = ["victim", "defense", "attack", "seed", "original_pred", "protected_pred", "count"]
SUMMARY_KEYS = ["victim", "defense", "attack", "mode"]


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    from ..runner import EXTRACTION_COLUMNS, RESULT_COLUMNS

    return pd.DataFrame(rows, columns=RESULT_COLUMNS + EXTRACTION_COLUMNS)


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
        record["n_seeds"] = len(group)
        for metric, paper_column in (("accuracy", "paper_accuracy"), ("m_adv", "paper_m_adv")):
            mean, std, low, high = t_interval(group[metric].astype(float).tolist())
            paper = group[paper_column].iloc[0]
            paper = float(paper) if paper is not None and not pd.isna(paper) else math.nan
            record.update(
                {
                    f"{metric}_mean": mean,
                    f"{metric}_std": std,
                    f"{metric}_ci_low": low,
                    f"{metric}_ci_high": high,
                    paper_column: paper,
                    f"{metric}_diff": mean - paper,
                    f"{metric}_paper_in_ci": (low <= paper <= high)
                    if not (math.isnan(paper) or math.isnan(low))
                    else None,
                }
            )
        for column in _extraction_columns(group):
            record[f"{column}_mean"] = float(group[column].astype(float).mean())
        robust = group["robust_accuracy"].astype(float).tolist()
        mean, _std, low, high = t_interval(robust)
        record.update(
            robust_accuracy_mean=mean, robust_accuracy_ci_low=low, robust_accuracy_ci_high=high
        )
        record["victim_accuracy"] = group["victim_accuracy"].iloc[0]
        records.append(record)
    return pd.DataFrame(records).round(4)


def _extraction_columns(group: pd.DataFrame) -> list[str]:
    from ..runner import EXTRACTION_COLUMNS

    return [c for c in EXTRACTION_COLUMNS if c != "fee_failure" and group[c].notna().any()]


def write_tables(store: Store, keys: list[str], out: Path) -> None:
    """Write the three CSVs for the cells `keys` (in that order) from the store.

    Each file is written to a temporary name and renamed, so a reader never sees half a file.
    """
    rows, changes, extraction = [], [], []
    for key in keys:
        cell = store.cell(key)
        if cell is None:
            continue
        rows.append(cell.row)
        if cell.status == "ok" and cell.row.get("mode", "transfer") == "transfer":
            changes += change_rows(store, key, cell.row)
        if cell.status == "ok":
            extraction += extraction_rows(cell.row)
    results = results_frame(rows)
    _write(results, out / "results.csv")
    _write(pd.DataFrame(changes, columns=CHANGE_COLUMNS), out / "prediction_change.csv")
    _write(summarise(results), out / "summary.csv")
    _write(pd.DataFrame(extraction, columns=_extraction_csv_columns(extraction)),
           out / "extraction.csv")  # fmt: skip


def _extraction_csv_columns(rows: list[dict[str, Any]]) -> list[str]:
    """victim, defense, attack, seed, then every detail column in order of appearance."""
    columns = ["victim", "defense", "attack", "seed"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
