"""Everything a finished run writes, then the plugins' `on_run_finished` hook.

`paraeval run` and `paraeval reproduce` call :func:`write_outputs` after the runner returns:
the CSVs and results.json (`paraeval.run.results`), report.html (`paraeval.report.html`), and
then every plugin implementing ``on_run_finished(directory, results)`` sees the run (an
experiment tracker, a notifier).
While cells finish, the run calls :func:`write_interim` every few minutes
(:class:`paraeval.run.interim.InterimOutputs`), so a long run has something to look at.
"""

from __future__ import annotations

from pathlib import Path

from paraeval.plugin.manager import load_plugins
from paraeval.report.html import render_report
from paraeval.run.loading import load_results
from paraeval.run.results import write_tables
from paraeval.run.store import Store


def write_outputs(directory: Path, keys: list[str]) -> Path:
    """results.csv, summary.csv, prediction_change.csv, samples.csv, extraction.csv,
    results.json and report.html of the cells `keys` in DIR's store; returns the report."""
    with Store(directory) as store:
        write_tables(store, keys, directory)
        report = render_report(store, directory)
    load_plugins().hook.on_run_finished(directory=directory, results=load_results(directory))
    return report


def write_interim(directory: Path, keys: list[str]) -> None:
    """The CSVs and report.html of a run in progress (no hook: the run is not finished); the
    CLI hands it to the run, which calls it every few minutes while cells finish."""
    with Store(directory) as store:
        write_tables(store, keys, directory)
        render_report(store, directory)
