"""Ctrl-C and SIGTERM stop a run within seconds while parasites train, and keep what is done."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paraeval.core.interrupts import RESUME_LINE

from .conftest import MODEL_CACHE, SHARED_MNIST, run_cli

#: At least 8 parasites queued: 4 Table 1 kinds on vm x 3 candidates x 2 seeds.
ARGS = ["run", "--victims", "vm", "--defenses", "table1", "--attacks", "fgsm", "--seeds", "2",
        "--jobs", "2"]  # fmt: skip


def _cache_with_victims(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    (cache / "victims").mkdir(parents=True)
    for path in (MODEL_CACHE / "victims").glob("vm-*.safetensors"):
        shutil.copy2(path, cache / "victims" / path.name)
    return cache


def _interrupted(
    args: list[str],
    cache: Path,
    tmp_path: Path,
    marker: str,
    send: Callable[[subprocess.Popen[str]], None],
) -> tuple[int, float, str]:
    """Run `paraeval ARGS` until `marker` appears on its stderr, a few seconds more, then
    `send` it a signal: (exit status, seconds it took to stop, stderr)."""
    env = {**os.environ, "PARAEVAL_DATA_DIR": str(SHARED_MNIST), "PARAEVAL_CACHE_DIR": str(cache)}
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "paraeval", *args, "--out", str(tmp_path / "out")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while marker not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
        time.sleep(3)  # work is under way
        sent = time.monotonic()
        send(process)
        process.wait(timeout=60)
        return process.returncode, time.monotonic() - sent, log.read_text()


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_parasites_train_stops_within_seconds(victims, tmp_path, signum, status):
    cache = _cache_with_victims(tmp_path)
    returncode, took, text = _interrupted(
        ARGS, cache, tmp_path, "training parasites", lambda process: process.send_signal(signum)
    )
    assert returncode == status, text[-2000:]
    assert took < 10, f"took {took:.1f} s to stop"
    assert RESUME_LINE in text and "Traceback" not in text
    trained = list((cache / "parasites").glob("*.safetensors"))
    assert len(trained) < 24, "the queued parasites were not dropped"
    verified = run_cli("cache", "verify", env={"PARAEVAL_CACHE_DIR": str(cache)})
    assert "moved damaged" not in verified.stderr  # what was kept is whole


def test_a_signal_while_victims_train_in_workers_stops_within_seconds(tmp_path) -> None:
    """Two missing victims train side by side in worker processes (reporting their epochs
    through a relay process): Ctrl-C stops the workers and the relay at once."""
    cache = tmp_path / "cache"
    args = ["run", "--victims", "vm,vm-batch", "--jobs", "2"]
    returncode, took, text = _interrupted(
        args,
        cache,
        tmp_path,
        "training victims",
        lambda process: process.send_signal(signal.SIGINT),
    )
    assert returncode == 130, text[-2000:]
    assert took < 10, f"took {took:.1f} s to stop"
    assert RESUME_LINE in text and "Traceback" not in text
    assert not list((cache / "victims").glob("*.safetensors"))  # nothing half-trained kept


def test_ctrl_c_to_a_dask_run_stops_it_without_worker_tracebacks(victims, tmp_path) -> None:
    """A terminal's Ctrl-C reaches every process of the run's group, the Dask workers too:
    they leave it to the run, which closes its cluster (no worker dies printing a traceback)."""
    cache = _cache_with_victims(tmp_path)
    args = [
        "run",
        "--victims",
        "vm",
        "--defenses",
        "none",
        "--attacks",
        "fgsm,pgd",
        "--seeds",
        "3",
        "--executor",
        "dask:2",
    ]
    returncode, took, text = _interrupted(  # as a terminal does: the whole group, while the
        args,  # Dask workers craft the examples
        cache,
        tmp_path,
        "adversarial examples: 0/",
        lambda process: os.killpg(process.pid, signal.SIGINT),
    )
    assert returncode == 130, text[-2000:]
    assert took < 10, f"took {took:.1f} s to stop"
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert RESUME_LINE in text


#: A Ctrl-C that lands while a finalizer runs: Python drops the handler's exception there.
DROPPED_IN_A_FINALIZER = """
import signal, sys
from paraeval.core import interrupts
from paraeval.core.console import Tracker, status

interrupts.install_handlers()

class Finalized:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)
        sum(range(10))  # the handler runs here, inside the finalizer

Finalized()
print("the finalizer dropped it", flush=True)
try:
    Tracker(status, "cells", 2).advance()
except interrupts.Interrupted as stop:
    print("stopped at the next step", flush=True)
    sys.exit(stop.status)
"""


def test_a_signal_dropped_by_a_finalizer_stops_the_run_at_its_next_step() -> None:
    """The run goes on past a dropped Ctrl-C only to its next progress step, then stops with
    the interrupt's status, printing no "Exception ignored" traceback."""
    done = subprocess.run(
        [sys.executable, "-c", DROPPED_IN_A_FINALIZER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stdout.splitlines() == ["the finalizer dropped it", "stopped at the next step"]
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_dask_worker_outliving_its_scheduler_prints_no_traceback(caplog) -> None:
    """The local cluster's workers drop the heartbeat error of a scheduler that closed first
    (the run closing its cluster after Ctrl-C); their other errors still show."""
    import logging

    from paraeval.core import interrupts

    previous = signal.getsignal(signal.SIGINT)
    logger = logging.getLogger("distributed.worker")
    try:
        interrupts.dask_setup(object())
        with caplog.at_level(logging.ERROR, logger="distributed.worker"):
            logger.error("Failed to communicate with scheduler during heartbeat.")
            logger.error("Compute Failed")
    finally:
        signal.signal(signal.SIGINT, previous)
        logger.removeFilter(interrupts._not_scheduler_gone)
    assert [record.getMessage() for record in caplog.records] == ["Compute Failed"]
