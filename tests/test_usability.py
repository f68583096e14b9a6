"""output that survives a pipe, a CLI that answers at once, machine-readable results."""

from __future__ import annotations

import io
import subprocess
import sys

import pandas as pd
import pytest

from paraeval import hookimpl
from paraeval.core.console import plain

from .conftest import run_cli


def test_plain_tables_never_cut_a_cell() -> None:
    text = plain(["name", "description"], [["a-very-long-defense-name", "x" * 300]], "t")
    assert "a-very-long-defense-name" in text and "x" * 300 in text
    assert text.splitlines()[0] == "# t"


def test_list_into_a_pipe_keeps_every_name_and_description_whole() -> None:
    from paraeval import registry

    done = run_cli("list", "defenses", env={"COLUMNS": "80"})  # stdout is a pipe here
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for entry in registry.defenses().entries.values():
        assert sum(entry.name in line and entry.obj.description in line for line in lines) == 1
    assert "…" not in done.stdout


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_list_as_csv_and_json(fmt: str) -> None:
    import io
    import json

    done = run_cli("list", "attacks", "--format", fmt)
    assert done.returncode == 0, done.stderr
    if fmt == "csv":
        names = list(pd.read_csv(io.StringIO(done.stdout))["name"])
    else:
        names = [row["name"] for row in json.loads(done.stdout)]
    assert {"fgsm", "pgd", "deepfool", "critical-points", "fee"} <= set(names)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["run", "--help"]])
def test_help_and_version_do_not_import_torch(args: list[str]) -> None:
    probe = (
        "import sys\n"
        f"sys.argv = ['paraeval', *{args!r}]\n"
        "from paraeval.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH", done.stdout + done.stderr
    if args == ["--version"]:
        assert done.stdout.startswith("paraeval 0.")


class Tracker:
    __name__ = "tracker"

    def __init__(self) -> None:
        self.seen: list[object] = []

    @hookimpl
    def on_run_finished(self, directory, results):
        self.seen.append((directory, results))


def test_a_run_is_machine_readable_and_tells_its_plugins(victims, tmp_path) -> None:
    from paraeval import load_results
    from paraeval.plugin.manager import load_plugins, pm
    from paraeval.report.outputs import write_outputs
    from paraeval.run.runner import RunConfig, run

    load_plugins()
    tracker = Tracker()
    pm.register(tracker, name="tracker")
    try:
        config = RunConfig(
            victims=["vm"],
            defenses="none",
            attacks="fgsm,pgd:steps=2",
            n_images=12,
            out=tmp_path,
            command="paraeval run (test)",
        )
        result = run(config)
        write_outputs(tmp_path, result.keys)
    finally:
        pm.unregister(tracker)
    loaded = load_results(tmp_path)
    assert [d for d, _ in tracker.seen] == [tmp_path]
    assert len(loaded.samples) == 2 * 12  # one row per attacked image of each evasion cell
    assert set(loaded.samples["attack"]) == {"fgsm", "pgd:steps=2"}
    counted = loaded.samples.groupby("attack")["counted"].sum()
    assert list(counted) == list(loaded.results.set_index("attack")["n_adversarial"])
    assert loaded.run["command"] == "paraeval run (test)" and "torch" in loaded.run["packages"]
    csv = pd.read_csv(tmp_path / "results.csv")
    pd.testing.assert_frame_equal(loaded.results, csv)


def test_load_results_names_what_is_missing(tmp_path) -> None:
    from paraeval import load_results
    from paraeval.errors import UserError

    with pytest.raises(UserError, match=r"results\.csv"):
        load_results(tmp_path)


def test_long_phases_print_progress_lines_into_a_log(monkeypatch) -> None:
    import io

    from rich.console import Console

    from paraeval.core import console as output

    log = io.StringIO()
    console = Console(file=log, force_terminal=False)
    monkeypatch.setattr(output, "PROGRESS_EVERY", 0.0)
    with output.progress("training parasites", 3, console) as bar:
        for _ in range(3):
            bar.advance(status="ok")
    lines = log.getvalue().splitlines()
    assert lines[0] == "training parasites: 0/3"
    assert [line.split(",")[0] for line in lines[1:]] == [
        f"training parasites: {n}/3" for n in (1, 2, 3)
    ]
    assert "ETA" in lines[1] and lines[-1].endswith(", ok")


def test_claims_keep_two_runs_from_computing_one_cell(tmp_path) -> None:
    import os
    import socket
    import time

    from paraeval.run.store import Store

    with Store(tmp_path) as store:
        assert store.claim(["a", "b"], "run-1") == ["a", "b"]
        assert store.claim(["a", "b", "c"], "run-2") == ["c"]  # run-1 is alive (this process)
        run_id = store.start_run("test", {}, {}, [])
        store.put_cell(
            "a",
            run_id,
            {"victim": "vm", "defense": "none", "attack": "fgsm", "seed": 0, "status": "ok"},
        )
        store.release("run-1")
        assert store.claim(["a", "b"], "run-2") == ["b"]  # a is stored, b was released
        dead = 2**22 + 4321  # beyond the default pid_max: no such process
        store.connection.execute(
            "INSERT INTO claims VALUES ('d', 'run-9', ?, ?, ?)",
            (socket.gethostname(), dead, time.time()),
        )
        assert store.claim(["d"], "run-2") == ["d"]  # a killed run's claim is stale
        store.connection.execute(
            "INSERT INTO claims VALUES ('e', 'run-8', 'another-host', ?, ?)",
            (os.getpid(), time.time()),
        )
        assert store.claim(["e"], "run-2") == []  # cannot check another host: wait for TTL


def test_a_run_skips_the_cells_another_run_is_computing(victims, tmp_path) -> None:
    import os
    import socket
    import time

    from paraeval.run.runner import RunConfig, plan, run, validate
    from paraeval.run.store import Store

    config = RunConfig(
        victims=["vm"], defenses="none", attacks="fgsm,pgd:steps=2", n_images=10, out=tmp_path
    )
    cells, _ = plan(config, validate(config))
    with Store(tmp_path) as store:
        store.connection.execute(
            "INSERT INTO claims VALUES (?, 'other-run', ?, ?, ?)",
            (cells[1].key, socket.gethostname(), os.getpid(), time.time()),
        )
    first = run(config)
    assert [row["attack"] for row in first.rows] == ["fgsm"]
    assert any("being computed by another run" in note for note in first.notes)
    with Store(tmp_path) as store:
        store.release("other-run")
    second = run(config)
    assert [row["attack"] for row in second.rows] == ["fgsm", "pgd:steps=2"]
    assert second.reused == 1


def test_quiet_hides_notes_and_log_keeps_everything(tmp_path) -> None:
    log = tmp_path / "paraeval.log"
    args = ["run", "--victims", "vm", "--defenses", "none,table2", "--dry-run"]
    loud = run_cli("--log", str(log), *args)
    quiet = run_cli("--quiet", *args)
    assert loud.returncode == quiet.returncode == 0, loud.stderr
    assert "note:" in loud.stderr and "note:" not in quiet.stderr
    assert "cell(s) planned" in quiet.stdout  # results still print
    logged = log.read_text()
    assert "note:" in logged and "cell(s) planned" in logged
    bad = run_cli("--quiet", "run", "--defenses", "nonsense", "--dry-run")
    assert bad.returncode == 2 and "unknown defense" in bad.stderr  # errors print when quiet


def test_the_run_record_names_the_processor() -> None:
    from paraeval.run.provenance import cpu_model, versions

    assert cpu_model() in versions()["device"] and cpu_model() not in ("", "?")


def test_one_pretraining_pool_serves_every_victim(victims, tmp_path, monkeypatch) -> None:
    """every parasite of the grid is trained in one pool, not one per victim."""
    from paraeval.run import dispatch, runner
    from paraeval.training import parasite_cache as training

    calls: list[list[object]] = []

    def recording(configs, workers=None, pool=None):
        calls.append(list(configs))
        return training.pretrain_parasites(calls[-1], workers, pool)

    monkeypatch.setattr(dispatch, "pretrain_parasites", recording)
    config = runner.RunConfig(
        victims=["vm", "vm-batch"],
        n_images=10,
        out=tmp_path,
        defenses="t1-vm-after-nobn-small,t2-nobn-small-sigma0.1",
    )
    result = runner.run(config)
    assert result.failed == 0 and len(result.rows) == 2
    assert len(calls) == 1 and {c.side for c in calls[0]} == {16, 28}  # both victims' parasites


def test_verbose_lists_every_skipped_pair() -> None:
    args = ["run", "--victims", "vm", "--defenses", "none,table2", "--dry-run"]
    short, every = run_cli(*args), run_cli(*args, "--verbose")
    assert short.stderr.count("skipped") == 1 and "12 defense" not in short.stderr
    assert "and 9 more on vm" in short.stderr
    assert every.stderr.count("skipped t2-") == 12


def test_a_failed_cell_can_be_claimed_again_for_a_retry(tmp_path) -> None:
    from paraeval.run.store import Store

    with Store(tmp_path) as store:
        run_id = store.start_run("test", {}, {}, [])
        row = {"victim": "vm", "defense": "x", "attack": "fgsm", "seed": 0}
        store.put_cell("failed-cell", run_id, {**row, "status": "failed"})
        store.put_cell("ok-cell", run_id, {**row, "status": "ok"})
        assert store.claim(["failed-cell", "ok-cell"], "retry-run") == ["failed-cell"]


def test_a_run_with_nothing_to_do_exits_2_and_says_why(tmp_path) -> None:
    result = run_cli("run", "--victims", "vm", "--defenses", "table2", "--dry-run")
    assert result.returncode == 2
    assert "nothing to run: skipped" in result.stderr and "Traceback" not in result.stderr


def test_store_prune_keeps_what_the_recent_runs_asked_for(tmp_path) -> None:
    """Cells no run from --since-run on lists go (with their per-image rows), and so do the
    earlier run records no kept cell was stored by; the rest is untouched."""
    from paraeval.run.store import Store

    def row(victim: str) -> dict:
        return {"victim": victim, "defense": "none", "attack": "fgsm", "seed": 0, "status": "ok"}

    sample = (0, 7, 7, 7, 7, 0.1, 1, 1)
    with Store(tmp_path) as store:
        superseded = store.start_run("old code", {}, {}, ["gone"])
        store.put_cell("gone", superseded, row("vm"), [sample])
        first = store.start_run("first", {}, {}, ["old", "shared"])
        store.put_cell("old", first, row("vm"), [sample])
        store.put_cell("shared", first, row("vm"), [sample])
        again = store.start_run("rerun", {}, {}, ["shared", "new"])  # "old"'s key changed
        store.put_cell("new", again, row("vm-batch"))
        assert store.prune(again, dry_run=True) == (2, 1) and store.count_cells() == 4
        assert store.prune(again) == (2, 1)
        assert sorted(k for (k,) in store.connection.execute("SELECT key FROM cells")) == [
            "new",
            "shared",
        ]
        assert [run["command"] for run in store.runs()] == ["first", "rerun"]  # first stored one
        assert store.samples("shared") and not store.samples("old")
        counted = store.connection.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        assert counted == 1


def test_store_command_lists_runs_and_prunes(tmp_path) -> None:
    from paraeval.run.store import Store

    with Store(tmp_path) as store:
        kept = store.start_run("paraeval run --out x", {}, {}, ["a"])
        store.put_cell(
            "a",
            kept,
            {"victim": "vm", "defense": "none", "attack": "fgsm", "seed": 0, "status": "ok"},
        )
    listed = run_cli("store", "runs", str(tmp_path), "--format", "csv")
    assert listed.returncode == 0, listed.stderr
    assert pd.read_csv(io.StringIO(listed.stdout)).iloc[0]["cells stored"] == 1
    no_id = run_cli("store", "prune", str(tmp_path))
    assert no_id.returncode == 2 and "--since-run" in no_id.stderr
    too_late = run_cli("store", "prune", str(tmp_path), "--since-run", "9")
    assert too_late.returncode == 2 and "no run with id >= 9" in too_late.stderr
    pruned = run_cli("store", "prune", str(tmp_path), "--since-run", str(kept))
    assert pruned.returncode == 0 and "deleted 0 cell(s) and 0 run record(s)" in pruned.stderr
    missing = run_cli("store", "runs", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no results store" in missing.stderr
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("cifar10", "--dataset cifar10 does not apply to vm (it classifies mnist)"),
        ("nosuchset", "unknown dataset 'nosuchset'"),
    ],
)
def test_a_dataset_flag_that_cannot_apply_is_exit_2_even_in_a_dry_run(tmp_path, dataset, expected):
    result = run_cli(
        "run",
        "--victims",
        "vm",
        "--dataset",
        dataset,
        "--defenses",
        "none",
        "--attacks",
        "fgsm",
        "--out",
        str(tmp_path),
        "--dry-run",
    )
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    same = run_cli(
        "run",
        "--victims",
        "vm",
        "--dataset",
        "mnist",
        "--defenses",
        "none",
        "--attacks",
        "fgsm",
        "--out",
        str(tmp_path),
        "--dry-run",
    )
    assert same.returncode == 0, same.stderr  # the victim's own dataset: it does what it says


def test_more_images_than_the_test_split_holds_is_a_note_with_the_real_count() -> None:
    from paraeval.run.lookup import load_dataset
    from paraeval.run.runner import image_count_notes

    digits = load_dataset("digits")
    (note,) = image_count_notes(1000, {"digits": digits})
    held = len(digits.test_labels)
    assert f"digits has {held} test images; its cells attack all {held}" in note
    assert image_count_notes(held, {"digits": digits}) == []


def test_the_bar_and_the_log_give_the_same_eta_from_the_rate_since_the_start() -> None:
    """A phase whose steps come in bursts: the bar's ETA is elapsed / done x remaining, as the
    log line's, not an estimate from the last seconds."""
    from types import SimpleNamespace

    from paraeval.core import console as output

    column = output._rate_eta_column()
    task = SimpleNamespace(elapsed=600.0, completed=10, total=115)
    assert str(column.render(task)) == "ETA 1:45:00"  # 60 s per step, 105 steps left
    assert output.remaining_seconds(600.0, 10, 115) == 6300.0
    assert "-:--:--" in str(column.render(SimpleNamespace(elapsed=5.0, completed=0, total=9)))
