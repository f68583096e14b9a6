"""Everything a finished run writes, then the plugins' `on_run_finished` hook.

`paraeval run` and `paraeval reproduce` call :func:`write_outputs` after the runner returns
(the runner computes and stores; it never renders): the CSVs and results.json
(`paraeval.results`), report.html (`paraeval.report.html`), and then every plugin implementing
``on_run_finished(directory, results)`` sees the run (an experiment tracker, a notifier).
"""

from __future__ import annotations

from pathlib import Path

from .loading import load_results
from .plugins import load_plugins
from .report.html import render_report
from .results import write_tables
from .store import Store


def write_outputs(directory: Path, keys: list[str]) -> Path:
    """results.csv, summary.csv, prediction_change.csv, samples.csv, extraction.csv,
    results.json and report.html of the cells `keys` in DIR's store; returns the report."""
    with Store(directory) as store:
        write_tables(store, keys, directory)
        report = render_report(store, directory)
    load_plugins().hook.on_run_finished(directory=directory, results=load_results(directory))
    return report
