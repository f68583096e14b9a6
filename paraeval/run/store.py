"""SQLite results store (``DIR/results.sqlite``): runs, cells and per-sample rows.

Every CSV (and the report) is derived from this file. A cell is written in one transaction
together with its per-sample rows, so after a crash a cell is either fully stored or absent;
re-running the same command skips the cells already stored (resume). WAL mode lets a reader
(e.g. a test watching progress) look while a run writes.

Tables
  runs     id, started, command, versions (JSON), config (JSON), cells (JSON list of the
           grid's cell keys, in order), finished, wall_seconds
  cells    key (content hash), run_id, victim, defense, attack, seed, mode, status,
           row (JSON: the results.csv row), seconds, error, finished
  samples  cell_key, image_index, label, clean_pred, victim_pred, protected_pred, epsilon,
           adversarial (on the victim), counted (in M_adv)
  claims   key, owner (run), host, pid, claimed: cells a running run is computing, so that a
           second run on the same directory skips them instead of computing them twice
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paraeval.errors import UserError

DB_NAME = "results.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL,
    command TEXT NOT NULL,
    versions TEXT NOT NULL,
    config TEXT NOT NULL,
    cells TEXT NOT NULL DEFAULT '[]',
    finished TEXT,
    wall_seconds REAL
);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    victim TEXT NOT NULL,
    defense TEXT NOT NULL,
    attack TEXT NOT NULL,
    seed INTEGER NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    row TEXT NOT NULL,
    seconds REAL,
    error TEXT,
    finished TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    cell_key TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE,
    image_index INTEGER NOT NULL,
    label INTEGER NOT NULL,
    clean_pred INTEGER NOT NULL,
    victim_pred INTEGER NOT NULL,
    protected_pred INTEGER NOT NULL,
    epsilon REAL,
    adversarial INTEGER NOT NULL,
    counted INTEGER NOT NULL,
    PRIMARY KEY (cell_key, image_index)
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed REAL NOT NULL
);
"""

#: A claim older than this is stale even when its process cannot be checked (another host).
CLAIM_TTL_SECONDS = 6 * 3600

SAMPLE_COLUMNS = (
    "image_index", "label", "clean_pred", "victim_pred", "protected_pred", "epsilon",
    "adversarial", "counted",
)  # fmt: skip


class DamagedStore(UserError):
    """A results.sqlite SQLite cannot read."""


#: Stores this process found sound, as (path, inode, size, modification time): a file that has
#: not changed since it passed is not checked again (the check reads the whole file).
_SOUND: set[tuple[str, int, int, int]] = set()


def check_store(path: Path, connection: sqlite3.Connection) -> None:
    """SQLite's quick check of an existing store (once per process while the file is
    unchanged); a DamagedStore naming the recovery command when it fails."""
    stat = path.stat()
    state = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if state in _SOUND:
        return
    try:
        verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise damaged(path, str(exc)) from None
    if verdict != "ok":
        raise damaged(path, str(verdict).splitlines()[0])
    _SOUND.add(state)


def damaged(path: Path, reason: str) -> DamagedStore:
    return DamagedStore(
        f"the results store {path} is damaged ({reason}); `paraeval store recover "
        f"{path.parent}` moves it aside and keeps every cell it can still read"
    )


@dataclass(frozen=True)
class StoredCell:
    key: str
    status: str
    row: dict[str, Any]


class Store:
    """One results.sqlite; use as a context manager or call :meth:`close`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DB_NAME
        existed = self.path.is_file() and self.path.stat().st_size > 0
        self.connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            if existed:  # a damaged file is one line naming `store recover`, not a traceback
                check_store(self.path, self.connection)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA foreign_keys=ON")
            self.connection.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.connection.close()
            raise damaged(self.path, str(exc)) from None
        except UserError:
            self.connection.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def start_run(
        self, command: str, versions: dict[str, str], config: dict[str, Any], cells: list[str]
    ) -> int:
        with self._transaction():
            cursor = self.connection.execute(
                "INSERT INTO runs (started, command, versions, config, cells) VALUES (?,?,?,?,?)",
                (
                    _now(),
                    command,
                    json.dumps(versions),
                    json.dumps(config, default=str),
                    json.dumps(cells),
                ),
            )
        return int(cursor.lastrowid or 0)

    def run_cells(self, run_id: int) -> list[str]:
        """The cell keys run `run_id` asked for, in order."""
        found = self.connection.execute("SELECT cells FROM runs WHERE id = ?", (run_id,)).fetchone()
        return list(json.loads(found[0])) if found else []

    def finish_run(self, run_id: int, wall_seconds: float) -> None:
        with self._transaction():
            self.connection.execute(
                "UPDATE runs SET finished = ?, wall_seconds = ? WHERE id = ?",
                (_now(), round(wall_seconds, 2), run_id),
            )

    def cell(self, key: str) -> StoredCell | None:
        """The cell stored under `key`; its row names the seed of the victim it was measured
        on (``victim_seed``), from the record of the run that computed it."""
        found = self.connection.execute(
            "SELECT c.key, c.status, c.row, json_extract(r.config, '$.victim_seed') "
            "FROM cells c LEFT JOIN runs r ON r.id = c.run_id WHERE c.key = ?",
            (key,),
        ).fetchone()
        if not found:
            return None
        row = json.loads(found[2])
        row.setdefault("victim_seed", found[3] if found[3] is not None else 0)
        return StoredCell(found[0], found[1], row)

    def put_cell(
        self,
        key: str,
        run_id: int,
        row: dict[str, Any],
        samples: Iterable[tuple[Any, ...]] = (),
    ) -> None:
        """Insert or replace a cell and its samples, atomically."""
        with self._transaction():
            self.connection.execute("DELETE FROM samples WHERE cell_key = ?", (key,))
            self.connection.execute("DELETE FROM claims WHERE key = ?", (key,))
            self.connection.execute(
                "INSERT OR REPLACE INTO cells (key, run_id, victim, defense, attack, seed, mode,"
                " status, row, seconds, error, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key,
                    run_id,
                    row["victim"],
                    row["defense"],
                    row["attack"],
                    row["seed"],
                    row.get("mode", "transfer"),
                    row["status"],
                    json.dumps(row, default=_json),
                    row.get("seconds"),
                    row.get("error"),
                    _now(),
                ),
            )
            self.connection.executemany(
                f"INSERT INTO samples (cell_key, {', '.join(SAMPLE_COLUMNS)}) "
                f"VALUES (?, {', '.join('?' * len(SAMPLE_COLUMNS))})",
                ((key, *sample) for sample in samples),
            )

    def claim(self, keys: list[str], owner: str) -> list[str]:
        """Claim the cells `keys` for `owner` (a run); return those it may compute.

        Two runs on one directory never compute the same cell: a cell already stored as ok, or
        claimed by another live run, is not returned (the caller skips it; a failed cell the
        caller retries is granted). A claim is stale,
        and taken over, when its process is gone (same host) or it is older than
        CLAIM_TTL_SECONDS. Storing a cell (:meth:`put_cell`) releases its claim.
        """
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        with self._transaction():
            for key, other_host, other_pid, claimed in self.connection.execute(
                "SELECT key, host, pid, claimed FROM claims WHERE owner != ?", (owner,)
            ).fetchall():
                if _stale(other_host, other_pid, claimed, host, now):
                    self.connection.execute("DELETE FROM claims WHERE key = ?", (key,))
            granted = []
            for key in keys:
                taken = self.connection.execute(
                    "SELECT 1 FROM cells WHERE key = ? AND status = 'ok' UNION ALL "
                    "SELECT 1 FROM claims WHERE key = ? AND owner != ?",
                    (key, key, owner),
                ).fetchone()
                if taken is None:
                    self.connection.execute(
                        "INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?)",
                        (key, owner, host, pid, now),
                    )
                    granted.append(key)
        return granted

    def release(self, owner: str) -> None:
        """Drop every claim `owner` still holds (its run is over)."""
        with self._transaction():
            self.connection.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    def samples(self, key: str) -> list[dict[str, Any]]:
        cursor = self.connection.execute(
            f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples WHERE cell_key = ? "
            "ORDER BY image_index",
            (key,),
        )
        return [dict(zip(SAMPLE_COLUMNS, values, strict=True)) for values in cursor]

    def computing_runs(self, keys: list[str]) -> list[int]:
        """The ids of the runs that computed the cells `keys`, oldest first: a grid of parts
        or of pipeline seeds is several runs, and a resumed one reuses earlier runs' cells."""
        found = self.connection.execute(
            "SELECT DISTINCT run_id FROM cells WHERE key IN (SELECT value FROM json_each(?)) "
            "ORDER BY run_id",
            (json.dumps(keys),),
        )
        return [run_id for (run_id,) in found]

    def runs(self) -> list[dict[str, Any]]:
        columns = (
            "id",
            "started",
            "command",
            "versions",
            "config",
            "cells",
            "finished",
            "wall_seconds",
        )
        cursor = self.connection.execute(f"SELECT {', '.join(columns)} FROM runs ORDER BY id")
        runs = [dict(zip(columns, values, strict=True)) for values in cursor]
        for run in runs:
            for key in ("versions", "config", "cells"):
                run[key] = json.loads(run[key])
        return runs

    def count_cells(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM cells").fetchone()[0])

    def prune(self, since_run: int, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete the cells no run from `since_run` on lists (with their samples), and the
        earlier runs no remaining cell was stored by; returns (cells, runs) deleted.

        A store keeps every cell it was given, also those no current command asks for again
        (cells of superseded code versions or options: their keys changed). Run the commands
        whose cells matter once more (all stored, nothing is computed: each run still records
        the keys it asked for), then prune since the first of those runs.
        """
        runs = self.runs()
        if not any(run["id"] >= since_run for run in runs):
            raise UserError(f"no run with id >= {since_run} in {self.path} (paraeval store runs)")
        kept = {key for run in runs if run["id"] >= since_run for key in run["cells"]}
        stored = dict(self.connection.execute("SELECT key, run_id FROM cells").fetchall())
        doomed = [key for key in stored if key not in kept]
        referenced = {run_id for key, run_id in stored.items() if key in kept}
        old = [run["id"] for run in runs if run["id"] < since_run and run["id"] not in referenced]
        if dry_run:
            return len(doomed), len(old)
        with self._transaction():  # samples go with their cells (ON DELETE CASCADE)
            self.connection.executemany("DELETE FROM cells WHERE key = ?", ((k,) for k in doomed))
            self.connection.executemany("DELETE FROM runs WHERE id = ?", ((i,) for i in old))
        self.connection.execute("VACUUM")  # give the space back: the file shrinks
        return len(doomed), len(old)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if anything inside raises."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")


def _stale(host: str, pid: int, claimed: float, this_host: str, now: float) -> bool:
    if now - claimed > CLAIM_TTL_SECONDS:
        return True
    if host != this_host:
        return False
    try:
        os.kill(pid, 0)  # signal 0: does the process exist?
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
