"""What the CLI prints after a run or a dry run: notes, the plan, the summary table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from paraeval.core.console import Format, emit, status
from paraeval.core.console import stdout as console

if TYPE_CHECKING:
    from paraeval.run.runner import RunResult

#: Notes printed before "... and N more" (``--verbose`` prints all).
NOTES_SHOWN = 10


def print_notes(results: list[RunResult], verbose: bool) -> None:
    """Every distinct note once; only the first NOTES_SHOWN unless `verbose`."""
    notes = list(dict.fromkeys(note for result in results for note in result.notes))
    shown = notes if verbose else notes[:NOTES_SHOWN]
    for note in shown:
        status.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if len(notes) > len(shown):
        status.print(f"[yellow]note:[/] ... and {len(notes) - len(shown)} more (--verbose)")


def print_plan(results: list[RunResult], verbose: bool = False) -> None:
    """What a run would do (`--dry-run`): its cells, and notes about what it would skip."""
    print_notes(results, verbose)
    planned = sum(r.planned for r in results)
    console.print(f"{planned} cell(s) planned (dry run: nothing was loaded, run or stored)")


def print_summary(result: RunResult, out: Path, fmt: Format, verbose: bool = False) -> None:
    """Per (victim, defense, attack): mean ± 95 % CI half-width beside the paper value."""
    from paraeval.run.results import summary_table

    print_notes([result], verbose)
    columns, rows = summary_table(result.summary)
    title = (
        f"summary ({out / 'summary.csv'}); ✗ = paper value outside the 95 % prediction "
        "interval for one run"
    )
    emit(console, columns, rows, fmt, title)
    for line in failed_lines(result.rows, verbose):
        status.print(f"[red]failed:[/] {line}", highlight=False, soft_wrap=True)
    status.print(
        f"{result.ok} cell(s) ok, {result.failed} failed ({result.reused} reused from the store). "
        f"Results in {out}/results.csv, report in {out}/report.html",
        highlight=False,
        soft_wrap=True,
    )


def failed_lines(rows: list[dict], verbose: bool = False) -> list[str]:
    """One line per failed cell: which cell, and the last line of its error (the full
    traceback is in results.csv's `error`); the first NOTES_SHOWN unless `verbose`."""
    failed = [row for row in rows if row.get("status") == "failed"]
    lines = [
        f"{row['victim']} · {row['defense']} · {row['attack']} · seed {row['seed']}: "
        f"{(str(row.get('error') or '').strip().splitlines() or ['(no error recorded)'])[-1]}"
        for row in failed
    ]
    if len(lines) > NOTES_SHOWN and not verbose:
        return [*lines[:NOTES_SHOWN], f"... and {len(lines) - NOTES_SHOWN} more (--verbose)"]
    return lines
