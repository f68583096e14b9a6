"""Executors: local processes and a Dask cluster compute what the sequential run computes,
a killed driver resumes, and workers on other machines get the cache files they need."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from paraeval.errors import UserError
from paraeval.run.executors import ExecutorSpec, parse_executor

from .conftest import MODEL_CACHE, SHARED_MNIST, run_cli, stored_cells

DEFENSES = "none,t1-vm-after-nobn-small,t1-vm-after-nobn-none,t1-vm-after-bn-small"
GRID = ["--victims", "vm", "--seeds", "2", "--n-images", "20", "--defenses", DEFENSES,
        "--attacks", "fgsm,pgd:steps=2"]  # fmt: skip
GRID_CELLS = 16  # 4 defenses x 2 seeds x 2 attacks: 8 groups


def _csv(directory: Path, name: str = "results.csv") -> pd.DataFrame:
    return pd.read_csv(directory / name).drop(columns=["seconds"], errors="ignore")


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sequential")
    done = run_cli("run", *GRID, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def _assert_same_results(out: Path, reference: Path) -> None:
    """Every column but `seconds`, and every per-image row, as the sequential run."""
    pd.testing.assert_frame_equal(_csv(out), _csv(reference))
    pd.testing.assert_frame_equal(
        _csv(out, "prediction_change.csv"), _csv(reference, "prediction_change.csv")
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("local", ExecutorSpec("local", 1)),
        ("local:3", ExecutorSpec("local", 3)),
        ("dask", ExecutorSpec("dask", None)),
        ("dask:2", ExecutorSpec("dask", 2)),
        ("dask:tcp://10.0.0.5:8786", ExecutorSpec("dask", None, "tcp://10.0.0.5:8786")),
    ],
)
def test_executor_specs_parse(text: str, expected: ExecutorSpec) -> None:
    assert parse_executor(text) == expected
    assert parse_executor(str(expected)) == expected  # the record reads back


@pytest.mark.parametrize("text", ["ray", "local:0", "local:host:1", "dask:0"])
def test_bad_executor_specs_are_user_errors(text: str) -> None:
    with pytest.raises(UserError, match=r"executor|workers"):
        parse_executor(text)


def test_a_bad_executor_exits_2_before_any_work() -> None:
    done = run_cli("run", "--executor", "spark", "--dry-run")
    assert done.returncode == 2 and "unknown executor 'spark'" in done.stderr


def test_local_worker_processes_compute_the_sequential_results(
    victims, sequential, tmp_path
) -> None:
    done = run_cli("run", *GRID, "--out", str(tmp_path), "--executor", "local:2")
    assert done.returncode == 0, done.stderr
    _assert_same_results(tmp_path, sequential)


def test_a_dask_cluster_computes_the_sequential_results(victims, sequential, tmp_path) -> None:
    pytest.importorskip("dask.distributed")
    done = run_cli("run", *GRID, "--out", str(tmp_path), "--executor", "dask:2")
    assert done.returncode == 0, done.stderr
    assert "adversarial examples: 4/4" in done.stderr  # crafted once per (attack, seed)
    _assert_same_results(tmp_path, sequential)
    assert stored_cells(tmp_path) == GRID_CELLS


def test_killing_the_dask_driver_loses_nothing_and_duplicates_nothing(
    victims, sequential, tmp_path
) -> None:
    pytest.importorskip("dask.distributed")
    args = ["run", *GRID, "--out", str(tmp_path), "--executor", "dask:2"]
    env = {
        **os.environ,
        "PARAEVAL_DATA_DIR": str(SHARED_MNIST),
        "PARAEVAL_CACHE_DIR": str(MODEL_CACHE),
    }
    driver = subprocess.Popen(
        [sys.executable, "-m", "paraeval", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while stored_cells(tmp_path) < 1 and driver.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)  # the driver only: its cluster is orphaned
        driver.wait()
    finally:
        with_suppressed_kill(driver.pid)
    stored_at_kill = stored_cells(tmp_path)
    assert 1 <= stored_at_kill < GRID_CELLS, "the kill must land mid-grid"

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"{stored_at_kill} of {GRID_CELLS} cell(s) already stored" in again.stderr
    _assert_same_results(tmp_path, sequential)
    assert not _csv(tmp_path).duplicated(["victim", "defense", "attack", "seed"]).any()
    assert stored_cells(tmp_path) == GRID_CELLS


def with_suppressed_kill(pid: int) -> None:
    """Kill whatever is left of the killed driver's session (its cluster's processes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def test_a_worker_without_our_cache_gets_the_files_and_trains_nothing(
    victims, tmp_path, monkeypatch
) -> None:
    """A remote worker: an empty cache, the group's victim and parasites shipped with it."""
    from paraeval.run import groups
    from paraeval.run.dispatch import Dispatch
    from paraeval.run.executors import RunExecutor
    from paraeval.run.runner import RunConfig, plan, validate
    from paraeval.training import parasite_cache as training
    from paraeval.training import victims as victim_training

    config = RunConfig(
        victims=["vm"],
        defenses="t1-vm-after-nobn-small",
        n_images=20,
        attacks="fgsm",
        out=tmp_path / "run",
    )
    resolved = validate(config)
    defenses, attacks = resolved.defenses, resolved.attacks
    cells, _ = plan(config, resolved)
    setup = groups.WorkerSetup(config.defenses, config.attacks, 20, 0, str(SHARED_MNIST), False)
    model = victims["vm"][0]
    worker = groups.Worker(setup, defenses=defenses, attacks=attacks, models={"vm": model})
    executor = RunExecutor(parse_executor("dask"), shares_cache=False)
    remote = Dispatch(setup, executor, {"vm": model}, worker)
    training.pretrain_parasites(cells[0].defense.obj.parasite_configs(model, seed=0), 1)
    label = cells[0].defense.label or cells[0].defense.name
    (task,) = [t for t in remote.tasks({("vm", label, 0): cells}, _NoClaims(), "me")]
    assert {Path(p).parent.name for p, _ in task.artifacts} == {"victims", "parasites"}

    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(victim_training, "train_victim", _must_not_train)
    monkeypatch.setattr(training, "train_parasite", _must_not_train)
    monkeypatch.setattr(groups, "_worker", None)
    (outcome,) = groups.run_task(task)
    key, row, _samples = outcome
    assert key == cells[0].key and row["status"] == "ok", row.get("error")
    local = groups.Worker(setup, defenses=defenses, attacks=attacks)
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(MODEL_CACHE))
    (expected,) = local.run(groups.GroupTask(setup, "vm", task.defense, 0, task.keys))
    assert {k: v for k, v in row.items() if k != "seconds"} == {
        k: v for k, v in expected[1].items() if k != "seconds"
    }


class _NoClaims:
    def claim(self, keys: list[str], owner: str) -> list[str]:
        return keys


def _must_not_train(*args: object, **kwargs: object) -> None:
    raise AssertionError("a worker retrained a shared artifact")


def test_shipped_files_never_land_outside_the_cache(tmp_path, monkeypatch) -> None:
    from paraeval.run.groups import install_artifacts

    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="outside the cache"):
        install_artifacts((("../escaped.safetensors", b"x"),))
    assert not (tmp_path / "escaped.safetensors").exists()
    install_artifacts((("victims/a.safetensors", b"new"),))
    install_artifacts((("victims/a.safetensors", b"other"),))  # an entry is kept, not replaced
    assert (tmp_path / "cache" / "victims" / "a.safetensors").read_bytes() == b"new"


def test_a_worker_with_other_plugins_says_so(victims) -> None:
    from paraeval.run.groups import GroupTask, Worker, WorkerSetup

    setup = WorkerSetup("none", "fgsm", 20, 0, str(SHARED_MNIST), False)
    with pytest.raises(UserError, match="same paraeval version and plugins"):
        list(Worker(setup).run(GroupTask(setup, "vm", "none", 0, ("not-a-key",))))


def test_dask_missing_is_one_line_with_the_install_hint(monkeypatch) -> None:
    from paraeval.run.executors import open_executor

    monkeypatch.setitem(sys.modules, "dask", None)  # import dask -> ImportError
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with (
        pytest.raises(UserError, match=r"pip install 'paraeval\[dask\]'"),
        open_executor(parse_executor("dask")),
    ):
        pass


def test_a_worker_uses_the_victim_the_run_loaded(monkeypatch, mnist, victims) -> None:
    """In this process the run's victims are passed in: the worker must not load them again."""
    import paraeval.run.groups as groups
    from paraeval.training.victims import as_splits

    def no_second_load(*_args, **_kwargs):
        raise AssertionError("the worker loaded the victim a second time")

    monkeypatch.setattr(groups, "load_or_train_victim", no_second_load)
    setup = groups.WorkerSetup("none", "fgsm", 20, 0, str(SHARED_MNIST), False)
    model = victims["vm"][0]
    data = {"mnist": as_splits(mnist)}
    worker = groups.Worker(setup, data, models={"vm": model})
    assert worker.victim("vm").model is model
    with pytest.raises(AssertionError, match="second time"):
        groups.Worker(setup, data).victim("vm")


def test_results_do_not_depend_on_the_thread_count(victims, tmp_path) -> None:
    """The in-process run uses every core, a local worker one thread, a run beside another
    whatever it is given: the attacks that loop (DeepFool) or search in float64 (critical
    points, FEE) must give the same cells, per-image rows included, on 1 and 2 threads. (The
    Knockoff thief did not, so it trains on one thread: paraeval.attacks.knockoff.)"""
    import torch

    from paraeval.run.runner import RunConfig, run
    from paraeval.run.store import Store

    grid = {
        "victims": ["vm", "mlp"],
        "defenses": "none,t1-vm-after-nobn-small,mlp-nobn-small-s0.1",
        "attacks": "deepfool:steps=10,critical-points:budget=500,normals=1,fee",
        "n_images": 20,
        "seeds": [0],
    }
    threads, outcomes = torch.get_num_threads(), []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            result = run(RunConfig(**grid, out=tmp_path / str(count)))
            with Store(tmp_path / str(count)) as store:
                samples = [store.samples(key) for key in result.keys]
            rows = [{k: v for k, v in row.items() if k != "seconds"} for row in result.rows]
            outcomes.append((rows, samples))
    finally:
        torch.set_num_threads(threads)
    assert len(outcomes[0][0]) >= 8 and all(row["status"] == "ok" for row in outcomes[0][0])
    assert outcomes[0] == outcomes[1]
