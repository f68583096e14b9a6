"""Tables for people and for pipes: the CLI prints every table through :func:`emit`.

A rich table fits its terminal; printed into a pipe or a file, rich would draw it 80 columns
wide and cut names ("xcheck-logit-shif", "98.…"), which breaks `grep` and CI logs. So the
format follows the destination unless ``--format`` says otherwise: ``table`` (rich, wrapped,
never cut) on a terminal, ``plain`` (aligned text, one row per line, nothing cut) elsewhere;
``csv`` and ``json`` for scripts. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any, cast

from rich.console import Console

from paraeval.core.interrupts import raise_if_interrupted

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


#: Where results go (stdout), and where notes, progress and status lines go (stderr; `--quiet`
#: and `--log` configure both).
stdout = Console()
status = Console(stderr=True)
#: A worker process's progress, sent to the run that shows it (set in the worker: a victim
#: trained there reports each epoch to the run's bar,
#: :func:`paraeval.run.dispatch.pretrain_victims`).
relay: Callable[[int, str], None] | None = None


class Tee(io.TextIOBase):
    """Writes to a stream and to a log file (`--log FILE`); a terminal if the stream is one."""

    def __init__(self, stream: Any, log: Any) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(self.stream.isatty())


def configure(console: Console, *, quiet: bool = False, log: Any = None) -> None:
    """`--quiet`: no notes or progress on `status` (errors still print); `--log`: everything
    both consoles print is also appended to the log file."""
    status.quiet = quiet
    if log is not None:
        for target in (console, status):
            target.file = cast(IO[str], Tee(target.file, log))


class Format(StrEnum):
    auto = "auto"
    table = "table"
    plain = "plain"
    csv = "csv"
    json = "json"


def resolve(fmt: Format, console: Console) -> Format:
    """`auto` -> table on a terminal, plain text anywhere else."""
    if fmt is not Format.auto:
        return fmt
    return Format.table if console.is_terminal else Format.plain


def emit(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    fmt: Format = Format.auto,
    title: str = "",
) -> None:
    """Print `rows` under `columns` in `fmt` (see the module docstring)."""
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    chosen = resolve(fmt, console)
    if chosen is Format.table:
        from rich.table import Table

        table = Table(title=title or None)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*row)
        console.print(table)
    elif chosen is Format.plain:
        _write(console, plain(columns, cells, title))
    elif chosen is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows([list(columns), *cells])
        _write(console, buffer.getvalue())
    else:
        _write(
            console,
            json.dumps(
                [dict(zip(columns, row, strict=True)) for row in cells],
                indent=1,
                ensure_ascii=False,
            )
            + "\n",
        )


def plain(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> str:
    """Aligned columns, two spaces apart, nothing cut; the title as a `#` line."""
    widths = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [f"# {title}"] if title else []
    for row in [list(columns), *rows]:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def _write(console: Console, text: str) -> None:
    """Raw text, never re-wrapped by rich (its console would fold long lines)."""
    stream = console.file if console.file is not None else sys.stdout
    stream.write(text)
    stream.flush()


#: Seconds between two progress lines when stderr is not a terminal.
PROGRESS_EVERY = 10.0


class Tracker:
    """Progress of one long phase: a live bar on a terminal, a line every PROGRESS_EVERY
    seconds (done/total, elapsed, ETA) anywhere else, so logs show the run is alive."""

    def __init__(self, console: Console, description: str, total: int) -> None:
        self.console, self.description, self.total = console, description, total
        self.done, self.status = 0, ""
        self.started = self.last = time.monotonic()
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def advance(self, steps: int = 1, status: str = "") -> None:
        raise_if_interrupted()  # each step is a checkpoint for a Ctrl-C a finalizer dropped
        self.done += steps
        self.status = status
        if relay is not None:
            relay(steps, status)
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=steps, status=status)
        elif time.monotonic() - self.last >= PROGRESS_EVERY or self.done >= self.total:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.started
        eta = remaining_seconds(elapsed, self.done, self.total)
        eta_text = "" if eta is None else f", ETA {eta:.0f} s"
        status = f", {self.status}" if self.status else ""
        self.console.print(
            f"{self.description}: {self.done}/{self.total}, {elapsed:.0f} s{eta_text}{status}",
            highlight=False,
            soft_wrap=True,
        )


def remaining_seconds(elapsed: float, done: float, total: float) -> float | None:
    """The time left at the rate measured since the start (elapsed / done per step): the same
    figure on the bar and in the log; None before the first step."""
    return elapsed / done * (total - done) if done else None


def _rate_eta_column() -> Any:
    """A rich column showing :func:`remaining_seconds` (rich's own estimates the rate over
    the last 30 s, which a phase whose steps finish in bursts throws far off)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateETA(ProgressColumn):
        def render(self, task: Any) -> Text:
            eta = remaining_seconds(task.elapsed or 0.0, task.completed, task.total or 0)
            if eta is None:
                return Text("ETA -:--:--", style="progress.remaining")
            minutes, seconds = divmod(int(eta), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"ETA {hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")

    return RateETA()


@contextmanager
def progress(description: str, total: int, console: Console | None = None) -> Iterator[Tracker]:
    """A :class:`Tracker` for `total` steps (see its docstring)."""
    console = console or status
    tracker = Tracker(console, description, total)
    if not console.is_terminal:
        console.print(f"{description}: 0/{total}", highlight=False)
        yield tracker
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns: tuple[Any, ...] = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        _rate_eta_column(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        tracker.bar, tracker.task = bar, bar.add_task(description, total=total, status="")
        yield tracker
