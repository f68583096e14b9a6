"""`load_results(DIR)`: a run directory as pandas DataFrames, and the run record as JSON.

Example::

    from paraeval import load_results

    run = load_results("runs/latest")
    run.summary[["defense", "m_adv_mean", "paper_m_adv"]]
    run.samples.groupby("defense")["counted"].sum()

The CSVs are what `paraeval run` writes (docs/outputs.md); ``results.json`` adds the run record
(command, configuration, versions, device, commit, wall time). Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from paraeval.errors import UserError

CSV_FILES = ("results", "summary", "prediction_change", "samples", "extraction")


@dataclass
class Results:
    """One run directory: its CSVs as DataFrames and its run record."""

    directory: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    prediction_change: pd.DataFrame
    samples: pd.DataFrame
    extraction: pd.DataFrame
    run: dict[str, Any] = field(default_factory=dict)


def load_results(directory: str | Path) -> Results:
    """Read DIRECTORY written by `paraeval run` (or `reproduce`)."""
    directory = Path(directory)
    missing = [f"{name}.csv" for name in CSV_FILES if not (directory / f"{name}.csv").exists()]
    if missing:
        raise UserError(f"{directory} is not a run directory: {', '.join(missing)} missing")
    frames = {name: _read_csv(directory / f"{name}.csv") for name in CSV_FILES}
    record = directory / "results.json"
    run = json.loads(record.read_text())["run"] if record.exists() else {}
    return Results(directory, run=run, **frames)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a header-less empty file (no extraction rows)
        return pd.DataFrame()


def write_run_json(
    directory: Path,
    run: dict[str, Any],
    rows: list[dict[str, Any]],
    computed_by: list[dict[str, Any]] | None = None,
) -> Path:
    """DIR/results.json: the run record (with every installed package's version), the records
    of the runs that computed its cells (`computed_by`: a grid of parts or of pipeline seeds
    is several runs) and the rows of results.csv; NaN is written as null."""
    packages = sorted(
        (d.metadata["Name"], d.version) for d in metadata.distributions() if d.metadata["Name"]
    )
    record = {**run, "packages": dict(packages)}
    payload = {
        "run": record,
        "computed_by": _clean(computed_by or []),
        "rows": [_clean(row) for row in rows],
    }
    path = directory / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str, allow_nan=False))
    tmp.replace(path)
    return path


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
