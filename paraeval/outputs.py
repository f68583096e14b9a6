"""Everything a finished run writes, then the plugins' `on_run_finished` hook.

`paraeval run` and `paraeval reproduce` call :func:`write_outputs` after the runner returns:
the CSVs and results.json (`paraeval.results`), report.html (`paraeval.report.html`), and
then every plugin implementing ``on_run_finished(directory, results)`` sees the run (an
experiment tracker, a notifier).
While cells finish, :class:`InterimOutputs` rewrites the CSVs and the report every few minutes
(no hook: the run is not finished), so a long run has something to look at.
"""

from __future__ import annotations

import time
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


#: How often a running grid rewrites its CSVs and report while cells finish (seconds).
REFRESH_SECONDS = 180.0


class InterimOutputs:
    """The CSVs and report.html of a run in progress, rewritten at most every `every` seconds
    as its cells are stored (the first after the first cell); :func:`write_outputs` writes the
    final ones. A failure to write is reported once and never stops the run."""

    def __init__(self, directory: Path, keys: list[str], every: float | None = None) -> None:
        self.directory, self.keys = directory, keys
        self.every = REFRESH_SECONDS if every is None else every
        self.last: float | None = None
        self.failure: str | None = None

    def cell_stored(self) -> None:
        now = time.monotonic()
        if self.failure is not None or (self.last is not None and now - self.last < self.every):
            return
        self.last = now
        try:
            with Store(self.directory) as store:
                write_tables(store, self.keys, self.directory)
                render_report(store, self.directory)
        except Exception as exc:  # the run goes on; its final outputs are written after it
            self.failure = f"{type(exc).__name__}: {exc}"
