"""A run's files rewritten while its cells finish, so a long run has something to look at.

The engine does not render: whoever starts the run (the CLI) hands it the writer,
:func:`paraeval.report.outputs.write_interim`, and the run calls it at most every few minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

#: Rewrites the files of the run in DIRECTORY from its store, for the cells `keys`.
Refresh = Callable[[Path, list[str]], None]

#: How often a running grid rewrites its CSVs and report while cells finish (seconds).
REFRESH_SECONDS = 180.0


class InterimOutputs:
    """Calls `write` at most every `every` seconds as cells are stored (the first after the
    first cell); the final files are written after the run. A failure to write is reported
    once and never stops the run."""

    def __init__(
        self, directory: Path, keys: list[str], write: Refresh | None, every: float | None = None
    ) -> None:
        self.directory, self.keys, self.write = directory, keys, write
        self.every = REFRESH_SECONDS if every is None else every
        self.last: float | None = None
        self.failure: str | None = None

    def cell_stored(self) -> None:
        now = time.monotonic()
        if self.write is None or self.failure is not None:
            return
        if self.last is not None and now - self.last < self.every:
            return
        self.last = now
        try:
            self.write(self.directory, self.keys)
        except Exception as exc:  # the run goes on; its final outputs are written after it
            self.failure = f"{type(exc).__name__}: {exc}"
