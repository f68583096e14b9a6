"""A damaged results store: found when it is opened, moved aside, and salvaged row by row.

SQLite reports a damaged file (a truncated copy, a zeroed header, a disk error) as
``DatabaseError``; :func:`paraeval.run.store.check_store` turns that into one line naming the way
out, and ``paraeval store recover DIR`` (:func:`recover_store`) moves the file aside and
copies every row it can still read into a new store. Cells are recomputed by the next run
only where they were lost; a cell is content-addressed, so a salvaged one is exactly what was
stored.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from paraeval.errors import UserError
from paraeval.run.store import DB_NAME, Store

#: The store's tables, parents first (a cell refers to its run, a sample to its cell).
TABLES = ("runs", "cells", "samples")


@dataclass
class Salvage:
    """What :func:`recover_store` kept and lost, per table, and where the damaged file went."""

    moved_to: Path
    kept: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        kept = ", ".join(f"{self.kept.get(t, 0)} {t}" for t in TABLES)
        lost = sum(self.lost.values())
        where = ", ".join(f"{n} {t}" for t, n in self.lost.items() if n)
        tail = f"; {lost} row(s) could not be read ({where})" if lost else "; no row was unreadable"
        return f"kept {kept}{tail}; the damaged file is {self.moved_to}"


def recover_store(directory: Path) -> Salvage:
    """Move DIR/results.sqlite (and its WAL files) aside and copy every readable run, cell and
    sample into a new store. Rows SQLite cannot read are skipped and their damaged ranges
    counted, not guessed; a sample whose cell was lost is dropped (the cell is recomputed with
    its samples)."""
    path = directory / DB_NAME
    if not path.is_file():
        raise UserError(f"no results store in {directory} (no {DB_NAME})")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    moved = path.with_name(f"{DB_NAME}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        if path.with_name(DB_NAME + suffix).exists():
            shutil.move(path.with_name(DB_NAME + suffix), moved.with_name(moved.name + suffix))
    salvage = Salvage(moved)
    readable = moved.with_name(moved.name + ".readable")
    readable.write_bytes(readable_header(moved.read_bytes()))
    source = sqlite3.connect(readable)
    try:
        with Store(directory) as store:
            kept_cells: set[str] = set()
            for table in TABLES:
                rows, lost = readable_rows(source, table)
                if table == "samples":
                    rows = [r for r in rows if r[0] in kept_cells]
                for row in rows:
                    marks = ", ".join("?" * len(row))
                    store.connection.execute(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", row)
                if table == "cells":
                    kept_cells = {row[0] for row in rows}
                salvage.kept[table], salvage.lost[table] = len(rows), lost
    finally:
        source.close()
        readable.unlink()
    return salvage


#: SQLite's file header (https://sqlite.org/fileformat.html): its size and first 16 bytes.
HEADER_SIZE = 100
MAGIC = b"SQLite format 3\x00"


def readable_header(data: bytes) -> bytes:
    """A copy of a store's bytes SQLite will open as far as it can: rollback-journal mode (no
    WAL file is needed), the in-header size marked stale so the file's own size counts (a
    truncated file), and a zeroed header rebuilt with SQLite's defaults (4,096-byte pages,
    UTF-8), since page 1's schema follows the header intact."""
    header = bytearray(data[:HEADER_SIZE].ljust(HEADER_SIZE, b"\x00"))
    if not header.startswith(MAGIC):
        header[:16] = MAGIC
        header[16:18] = (4096).to_bytes(2, "big")
        header[20:24] = bytes([0, 64, 32, 32])  # reserved bytes, payload fractions
        header[44:48] = (4).to_bytes(4, "big")  # schema format
        header[56:60] = (1).to_bytes(4, "big")  # UTF-8
    header[18:20] = bytes([1, 1])  # rollback journal, not WAL
    header[92:96] = bytes(4)  # "version-valid-for" != change counter: the size is recomputed
    return bytes(header) + data[HEADER_SIZE:]


def readable_rows(connection: sqlite3.Connection, table: str) -> tuple[list[tuple], int]:
    """Every row of `table` SQLite can read, and how many damaged rowid ranges it skipped: the
    whole table at once when that works, else in rowid order, jumping over each subtree that
    cannot be read to the next rowid that can."""
    try:
        return connection.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall(), 0
    except sqlite3.DatabaseError:
        pass
    rows: list[tuple] = []
    skipped, last = 0, -(2**63)
    while True:
        try:
            found = connection.execute(
                f"SELECT rowid, * FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1", (last,)
            ).fetchone()
        except sqlite3.DatabaseError:
            skipped += 1
            following = _next_readable(connection, table, last)
            if following is None:
                break
            last = following - 1
            continue
        if found is None:
            break
        rows.append(tuple(found[1:]))
        last = found[0]
    return rows, skipped


def _next_readable(connection: sqlite3.Connection, table: str, after: int) -> int | None:
    """The first rowid above `after` from which `table` reads again (exponential jumps, then a
    binary search back to the damaged subtree's end), or None when nothing after it reads."""

    def first_from(rowid: int) -> int | bool | None:
        try:
            found = connection.execute(
                f"SELECT rowid FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1", (rowid,)
            ).fetchone()
        except sqlite3.DatabaseError:
            return False
        return None if found is None else int(found[0])

    failing, step = max(after, -(2**62)), 1
    while failing + step < 2**62:
        if first_from(failing + step) is not False:
            break
        step *= 2
    else:
        return None
    low, high = failing + step // 2, failing + step
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if first_from(middle) is not False else (middle, high)
    result = first_from(high)
    return None if result is False else result
