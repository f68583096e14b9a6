"""Two runs on one cache never train the same parasite or victim twice: the second waits
for the first's file (paraeval.core.cache.entry_lock), and trains the entry itself only when the
first run ended without writing it (killed)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable

import pytest
import torch

from paraeval.core.cache import entry_lock, load_weights
from paraeval.run.lookup import victim_config
from paraeval.training import parasite_cache as training
from paraeval.training import victims as victim_training
from paraeval.training.parasite_cache import (
    parasite_path,
    pretrain_parasites,
    save_parasite,
    train_banks,
)
from paraeval.training.parasites import ParasiteConfig
from paraeval.training.victims import load_or_train_victim, victim_path

from .conftest import MODEL_CACHE

#: A real, tiny parasite (8x8 inputs, one epoch of 200): trains in well under a second.
SMALL = {"batch_norm": False, "bias": "small", "side": 8, "n_train": 200, "n_heldout": 50,
         "epochs": 1}  # fmt: skip
#: What "the other run" writes as its training time, to tell its file from this run's.
THEIRS = 12345.0


def _parasites() -> tuple[ParasiteConfig, ParasiteConfig]:
    return ParasiteConfig(seed=1, **SMALL), ParasiteConfig(seed=2, **SMALL)  # type: ignore[arg-type]


def _waits(run: threading.Thread, ready: Callable[[], bool]) -> bool:
    """Whether `run`, once `ready()`, is still blocked a second later."""
    deadline = time.monotonic() + 120
    while not ready() and run.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    run.join(timeout=1.0)
    return run.is_alive()


@pytest.mark.parametrize("other_run_finishes", [True, False], ids=["finishes", "is-killed"])
def test_a_run_waits_for_the_parasite_another_run_trains(
    tmp_path, monkeypatch, capsys, other_run_finishes: bool
) -> None:
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    theirs, ours = _parasites()
    real, trained_here = training.train_parasite, []
    monkeypatch.setattr(training, "train_parasite", lambda c: trained_here.append(c) or real(c))
    other_run = entry_lock(parasite_path(theirs))
    other_run.acquire()
    run = threading.Thread(target=pretrain_parasites, args=([theirs, ours], 1))
    run.start()
    assert _waits(run, parasite_path(ours).exists)  # its own parasite first, then it waits
    assert trained_here == [ours] and not parasite_path(theirs).exists()
    assert "another run is training 1 of these parasite(s)" in capsys.readouterr().err
    if other_run_finishes:
        save_parasite(theirs, real(theirs), seconds=THEIRS)
    other_run.release()
    run.join(timeout=120)
    assert not run.is_alive()
    _, meta = load_weights(parasite_path(theirs))
    if other_run_finishes:  # read, not trained again
        assert trained_here == [ours] and meta["train_seconds"] == THEIRS
    else:  # the lock died with its run: this run trains the parasite itself
        assert trained_here == [ours, theirs] and meta["train_seconds"] != THEIRS


def test_a_gpu_bank_leaves_out_the_parasites_another_run_trains(tmp_path, monkeypatch) -> None:
    """The bank path (GPU runs), exercised on the CPU: a bank trains only what it claimed."""
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    theirs, ours = _parasites()
    real, banked = training.train_bank, []
    monkeypatch.setattr(training, "train_bank", lambda b: banked.append(list(b)) or real(b))
    other_run = entry_lock(parasite_path(theirs))
    other_run.acquire()
    run = threading.Thread(target=train_banks, args=([theirs, ours],))
    run.start()
    assert _waits(run, parasite_path(ours).exists)
    save_parasite(theirs, training.train_parasite(theirs), seconds=THEIRS)
    other_run.release()
    run.join(timeout=120)
    assert not run.is_alive() and banked == [[ours]]
    assert load_weights(parasite_path(theirs))[1]["train_seconds"] == THEIRS


def test_a_run_waits_for_the_victim_another_run_trains(
    tmp_path, monkeypatch, mnist, victims
) -> None:
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    config = victim_config("vm")
    trained_here = []
    monkeypatch.setattr(victim_training, "train_victim", lambda *args: trained_here.append(args))
    path = victim_path(config)
    other_run = entry_lock(path)
    other_run.acquire()
    loaded = []
    run = threading.Thread(target=lambda: loaded.append(load_or_train_victim(config, mnist)))
    run.start()
    assert _waits(run, lambda: True) and not trained_here
    theirs = MODEL_CACHE / "victims" / path.name  # the other run's victim (the session's)
    shutil.copy2(theirs, path)
    other_run.release()
    run.join(timeout=60)
    assert not run.is_alive() and not trained_here
    ((model, _info),) = loaded
    for name, tensor in load_weights(theirs)[0].items():
        assert torch.equal(model.state_dict()[name], tensor)


def test_a_run_names_the_other_runs_computing_beside_it(tmp_path, monkeypatch, victims) -> None:
    """Two in-process runs at once oversubscribe the cores: the second says so, naming the
    first (its lock in <cache>/running/); once that run is gone its file is cleaned up."""
    from io import StringIO

    from rich.console import Console

    from paraeval.core.other_runs import FOLDER, live_runs
    from paraeval.run.runner import RunConfig, run

    cache = tmp_path / "cache"  # this test's own: no real run of this user is in it
    shutil.copytree(MODEL_CACHE / "victims", cache / "victims")
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(cache))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    other = entry_lock(cache / FOLDER / "999999999")  # another run's lock
    other.acquire()
    try:
        printed = StringIO()
        config = RunConfig(victims=["vm"], attacks="fgsm", n_images=5, out=tmp_path / "a")
        run(config, Console(file=printed, width=400))
        said = printed.getvalue()
        assert "1 other paraeval run(s) compute on this machine (pid 999999999)" in said
        assert "OMP_NUM_THREADS=1" in said
        assert 999999999 in live_runs()
        other.release()
        printed = StringIO()
        run(
            RunConfig(victims=["vm"], attacks="fgsm", n_images=6, out=tmp_path / "b"),
            Console(file=printed, width=400),
        )
        assert "other paraeval run" not in printed.getvalue() and "time:" in printed.getvalue()
        assert not (cache / FOLDER / "999999999.lock").exists()
    finally:
        other.release()
        torch.set_num_threads(threads)
