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
from collections.abc import Sequence
from enum import StrEnum

from rich.console import Console
from rich.table import Table


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
        _write(console, json.dumps([dict(zip(columns, row, strict=True)) for row in cells],
                                   indent=1, ensure_ascii=False) + "\n")  # fmt: skip


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
