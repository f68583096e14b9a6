"""A damaged results store: one line and exit 2 on open, and `store recover` keeps every cell
SQLite can still read."""

from __future__ import annotations

import sqlite3

import pytest

from paraeval.run.store import DB_NAME, DamagedStore, Store
from paraeval.run.store_recovery import recover_store

from .conftest import run_cli

CELLS = 400


def _filled(directory) -> None:
    with Store(directory) as store:
        run = store.start_run("paraeval run", {}, {}, [])
        for index in range(CELLS):
            row = {
                "victim": "vm",
                "defense": f"d{index}",
                "attack": "fgsm",
                "seed": 0,
                "status": "ok",
                "accuracy": 99.0,
                "padding": "x" * 400,
            }
            samples = [(i, 1, 1, 2, 1, 0.1, 1, 1) for i in range(20)]
            store.put_cell(f"key{index:04d}", run, row, samples)
        store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _cells(directory) -> int:
    with Store(directory) as store:
        return store.count_cells()


def test_a_truncated_store_is_one_line_and_recover_keeps_the_readable_cells(tmp_path) -> None:
    _filled(tmp_path)
    path = tmp_path / DB_NAME
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DamagedStore, match="store recover"):
        Store(tmp_path)
    runs = run_cli("store", "runs", str(tmp_path))
    assert runs.returncode == 2 and "Traceback" not in runs.stderr
    assert "is damaged" in runs.stderr and "store recover" in runs.stderr
    recovered = run_cli("store", "recover", str(tmp_path))
    assert recovered.returncode == 0, recovered.stderr
    kept = _cells(tmp_path)
    assert 0 < kept < CELLS  # what the first half held, no more
    assert list(tmp_path.glob(f"{DB_NAME}.damaged-*")), "the damaged file is kept aside"
    with Store(tmp_path) as store:  # every kept cell comes back whole, with its samples
        keys = [k for (k,) in store.connection.execute("SELECT key FROM cells")]
        assert all(len(store.samples(k)) in (0, 20) for k in keys)
        assert store.cell(keys[0]).row["padding"] == "x" * 400


def test_a_zeroed_header_is_one_line_and_recover_rebuilds_it_keeping_every_cell(tmp_path):
    _filled(tmp_path)
    path = tmp_path / DB_NAME
    data = bytearray(path.read_bytes())
    data[:100] = bytes(100)
    path.write_bytes(bytes(data))
    run = run_cli("report", str(tmp_path))
    assert "is damaged (file is not a database)" in run.stderr
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    salvage = recover_store(tmp_path)
    assert salvage.kept == {"runs": 1, "cells": CELLS, "samples": CELLS * 20}  # page 1 intact
    assert _cells(tmp_path) == CELLS
    with sqlite3.connect(tmp_path / DB_NAME) as connection:  # a sound store again
        assert connection.execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_a_sound_store_recovers_whole(tmp_path) -> None:
    _filled(tmp_path)
    salvage = recover_store(tmp_path)
    assert salvage.kept == {"runs": 1, "cells": CELLS, "samples": CELLS * 20}
    assert sum(salvage.lost.values()) == 0 and _cells(tmp_path) == CELLS


def test_an_unchanged_store_is_checked_once_and_a_changed_one_again(tmp_path, monkeypatch):
    import paraeval.run.store as store_module

    _filled(tmp_path)
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):
        connection = connect(*args, **kwargs)
        connection.set_trace_callback(statements.append)
        return connection

    monkeypatch.setattr(store_module.sqlite3, "connect", traced)
    for _ in range(3):
        Store(tmp_path).close()
    assert statements.count("PRAGMA quick_check") == 1  # the whole file is read once
    path = tmp_path / DB_NAME
    data = bytearray(path.read_bytes())
    data[:100] = bytes(100)  # same size, new content
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedStore, match="store recover"):
        Store(tmp_path)
