"""Shared fixtures: the real MNIST files in ../shared/data/mnist and a persistent model cache.

Trained victims and parasites are cached by config hash, so the cache can be shared between
test runs safely (a changed config trains a new model). It lives in PARAEVAL_TEST_CACHE or
.pytest_cache/paraeval-models; a clean checkout trains the victims once (about a minute).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
MODEL_CACHE = Path(
    os.environ.get("PARAEVAL_TEST_CACHE", ROOT / ".pytest_cache" / "paraeval-models")
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees the shared MNIST and the shared model cache, never the user's."""
    if not SHARED_MNIST.is_dir():
        pytest.fail(f"the shared MNIST files are missing: {SHARED_MNIST}")
    monkeypatch.setenv("PARAEVAL_DATA_DIR", str(SHARED_MNIST))
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(MODEL_CACHE))
    monkeypatch.setenv("PARAEVAL_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(scope="session")
def mnist():
    from paraeval.datasets.idx import load_mnist

    return load_mnist(SHARED_MNIST, allow_download=False)


@pytest.fixture(scope="session")
def victims(mnist) -> Iterator[dict]:
    """The two default victims, trained once into the model cache (or loaded from it)."""
    from paraeval.run.lookup import victim_config
    from paraeval.training.victims import load_or_train_victim

    previous = os.environ.get("PARAEVAL_CACHE_DIR")
    os.environ["PARAEVAL_CACHE_DIR"] = str(MODEL_CACHE)
    try:
        yield {
            name: load_or_train_victim(victim_config(name), mnist) for name in ("vm", "vm-batch")
        }
    finally:
        if previous is None:
            os.environ.pop("PARAEVAL_CACHE_DIR", None)
        else:
            os.environ["PARAEVAL_CACHE_DIR"] = previous


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m paraeval ARGS` in a subprocess with the test environment."""
    full_env = {
        **os.environ,
        "PARAEVAL_DATA_DIR": str(SHARED_MNIST),
        "PARAEVAL_CACHE_DIR": str(MODEL_CACHE),
        "COLUMNS": "200",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "paraeval", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=1800,
    )


def stored_cells(directory: Path) -> int:
    """How many cells DIRECTORY's results store holds (0 before it exists)."""
    try:
        with sqlite3.connect(directory / "results.sqlite", timeout=5) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM cells").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def kill_after_first_cell(args: list[str], directory: Path) -> int:
    """Start `python -m paraeval ARGS`, SIGKILL it once DIRECTORY holds a cell; the count."""
    env = {
        **os.environ,
        "PARAEVAL_DATA_DIR": str(SHARED_MNIST),
        "PARAEVAL_CACHE_DIR": str(MODEL_CACHE),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "paraeval", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while stored_cells(directory) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return stored_cells(directory)
