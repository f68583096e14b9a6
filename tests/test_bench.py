"""`paraeval bench` in its small configuration: every row, with a ratio where it has a baseline
(the numbers themselves are not checked: no timings in unit tests)."""

from __future__ import annotations

import pandas as pd

from .conftest import run_cli


def test_bench_writes_every_row(victims, tmp_path) -> None:
    out = tmp_path / "bench.csv"
    done = run_cli("bench", "--quick", "--repetitions", "2", "--out", str(out), "--format", "csv")
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out)
    assert list(zip(frame["name"], frame["baseline"].fillna(""), strict=True)) == [
        ("fgsm-sweep", "art-per-eps"),
        ("fgsm-sweep", "per-image"),
        ("pgd", "torchattacks-pgd"),
        ("protected-t1-vm-after-bn-small", "victim"),
        ("parasite-training", ""),
        ("parasite-bank-cpu", "one-at-a-time"),
        ("executor-local:2", "local"),
        ("executor-dask:2", "local"),
        ("executor-dask:2", "local-1-thread"),
    ]
    with_baseline = frame[frame["baseline"].notna()]
    assert (with_baseline["ratio"] > 0).all()
    assert (with_baseline["ratio_low"] <= with_baseline["ratio_high"]).all()
    assert frame[frame["name"] == "parasite-training"]["ratio"].isna().all()
    assert (frame["repetitions"] >= 1).all() and frame["device"].str.startswith("cpu").all()


def test_bench_times_only_the_chosen_row_groups(victims, tmp_path) -> None:
    out = tmp_path / "bench.csv"
    done = run_cli(
        "bench",
        "--quick",
        "--repetitions",
        "1",
        "--rows",
        "pgd,parasite",
        "--out",
        str(out),
        "--format",
        "csv",
    )
    assert done.returncode == 0, done.stderr
    assert list(pd.read_csv(out)["name"]) == ["pgd", "parasite-training"]
    wrong = run_cli("bench", "--rows", "pgd,nope", "--out", str(out))
    assert wrong.returncode == 2 and "--rows nope: unknown; valid: fgsm, pgd" in wrong.stderr


def test_the_performance_page_is_generated_from_the_committed_bench() -> None:
    from paraeval.bench.page import performance_page

    from .conftest import ROOT

    committed = ROOT / "reports" / "bench.csv"
    page = (ROOT / "docs" / "performance.md").read_text()
    assert page == performance_page(pd.read_csv(committed), "reports/bench.csv", _gpu_run())
    assert "| fgsm-sweep | art-per-eps |" in page
    assert "## On a GPU: NVIDIA H200" in page and "| parasite-bank-cuda |" in page


def test_the_executor_verdict_follows_the_measured_ratios() -> None:
    from paraeval.bench.measure import BENCH_COLUMNS
    from paraeval.bench.page import performance_page

    def page(dask_ratio: float) -> str:
        rows = [
            ("executor-local:2", "local", 0.6),
            ("executor-dask:2", "local", dask_ratio),
            ("executor-dask:2", "local-1-thread", dask_ratio / 2),
        ]
        frame = pd.DataFrame(
            [
                {c: None for c in BENCH_COLUMNS}
                | {
                    "name": n,
                    "baseline": b,
                    "ratio": r,
                    "ratio_low": r,
                    "ratio_high": r,
                    "candidate_s": 1.0,
                    "baseline_s": 1.0,
                    "repetitions": 1,
                    "size": "grid",
                    "device": "cpu",
                }
                for n, b, r in rows
            ]
        )
        return performance_page(frame, "bench.csv")

    fast, slow = page(0.5), page(2.0)
    assert "ran 2.00x as fast as the in-process default" in fast and "is met" in fast
    assert "ran 0.50x as fast" in slow and "is not met" in slow
    assert "pays its own start-up" not in slow  # never measured: no sentence claims it


def test_the_executor_ceiling_is_computed_from_the_one_thread_and_local_runs() -> None:
    from paraeval.bench.measure import BENCH_COLUMNS
    from paraeval.bench.page import performance_page

    def page(local_s: float, one_thread_s: float) -> str:
        rows = [
            ("executor-local:2", "local", local_s),
            ("executor-dask:2", "local", local_s),
            ("executor-dask:2", "local-1-thread", one_thread_s),
        ]
        frame = pd.DataFrame(
            [
                {c: None for c in BENCH_COLUMNS}
                | {
                    "name": n,
                    "baseline": b,
                    "ratio": 1.3,
                    "ratio_low": 1.3,
                    "ratio_high": 1.3,
                    "candidate_s": 20.0,
                    "baseline_s": s,
                    "repetitions": 1,
                    "size": "grid",
                    "device": "cpu",
                }
                for n, b, s in rows
            ]
        )
        return performance_page(frame, "bench.csv")

    two_cores = page(16.0, 28.0)  # the in-process run already uses both cores
    assert "on one thread it takes 1.75x as long" in two_cores
    assert "could be at most 1.14x as fast as it: the target cannot be met" in two_cores
    serial = page(20.0, 22.0)  # an in-process run that gains little from its threads
    assert "could be at most 1.82x as fast as it." in serial and "cannot be met" not in serial


def test_the_cold_verdict_follows_the_measured_time() -> None:
    from paraeval.bench.measure import BENCH_COLUMNS
    from paraeval.bench.page import performance_page

    def page(seconds: float) -> str:
        row = {c: None for c in BENCH_COLUMNS} | {
            "name": "cold-tables-1-3",
            "baseline": None,
            "ratio": None,
            "candidate_s": seconds,
            "repetitions": 1,
            "size": "grid",
            "device": "cpu (2 threads)",
        }
        return performance_page(pd.DataFrame([row]), "bench.csv")

    assert "took 12.0 min on cpu (2 threads); the target" in page(720.0)
    assert "15 min: met." in page(720.0) and "15 min: not met." in page(1320.0)
    assert "Where the time went" not in page(1320.0)  # a row measured before phases were kept


def test_the_cold_row_says_where_its_time_went() -> None:
    from paraeval.bench.measure import BENCH_COLUMNS
    from paraeval.bench.page import performance_page, readme_block

    def frame(parasite_s: int) -> pd.DataFrame:
        phases = f"victims 56 s, 125 parasites {parasite_s} s, examples 0 s, cells 310 s"
        size = f"Tables 1-3, whole run ({phases})"
        row = {c: None for c in BENCH_COLUMNS} | {
            "name": "cold-tables-1-3",
            "baseline": None,
            "ratio": None,
            "candidate_s": 1455.0,
            "repetitions": 1,
            "size": size,
            "device": "cpu",
        }
        return pd.DataFrame([row])

    slow = performance_page(frame(1086), "bench.csv")
    assert (
        "not met. Where the time went: victims 56 s, 125 parasites 1086 s, examples 0 s, "
        "cells 310 s. Training the 125 parasites alone took longer than the target" in slow
    )
    assert "Training the" not in performance_page(frame(500), "bench.csv")
    short = readme_block(frame(1086), "bench.csv")
    assert "Where the time went: victims 56 s" in short and "Training the" not in short


def test_a_run_says_where_its_time_went() -> None:
    from paraeval.run.dispatch import Phases

    phases = Phases()
    for name in ("victims", "parasites", "cells"):
        with phases.timing(name):
            pass
    phases.parasites = 3
    assert phases.line() == "victims 0 s, 3 parasites 0 s, cells 0 s"


def test_the_readme_performance_block_is_generated_from_the_committed_bench() -> None:
    from paraeval.bench.page import BEGIN, END, readme_block

    from .conftest import ROOT

    text = (ROOT / "README.md").read_text()
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    committed = pd.read_csv(ROOT / "reports" / "bench.csv")
    assert block == readme_block(committed, "reports/bench.csv", _gpu_run())
    assert "FGSM sweep <= 1.0x ART's per-eps loop" in block


def _gpu_run():
    """The committed GPU run (scripts/gpu_checks.sh on the device machine)."""
    from paraeval.study.device_evidence import DeviceEvidence

    from .conftest import ROOT

    return DeviceEvidence(ROOT / "reports" / "gpu-h200", "reports/gpu-h200")


def _device_folder(tmp_path, *, cold_s: float, reproduce: tuple[int, int], accuracies) -> object:
    """A folder as scripts/gpu_checks.sh leaves it, with chosen measurements."""
    from paraeval.bench.measure import BENCH_COLUMNS
    from paraeval.study.device_evidence import DeviceEvidence

    tmp_path.mkdir(parents=True, exist_ok=True)
    device = "cpu (16 threads, X); cuda (NVIDIA H100 80GB HBM3)"
    rows = [
        {c: None for c in BENCH_COLUMNS}
        | {
            "name": "cold-tables-1-3",
            "candidate_s": cold_s,
            "repetitions": 1,
            "size": "grid",
            "device": device,
        }
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "bench.csv", index=False)
    rc, wall = reproduce
    step = {
        "step": "reproduce",
        "command": "paraeval reproduce",
        "limit_s": 600,
        "rc": rc,
        "wall_s": wall,
    }
    pd.DataFrame([step]).to_csv(tmp_path / "steps.csv", index=False)
    (tmp_path / "gpu-tests.log").write_text(
        "FAILED tests/test_gpu.py::test_x - AssertionError\n"
        "==== 1 failed, 2 passed in 70.01s (0:01:10) ====\n"
    )
    for device_name, (mean, victim) in zip(("cpu", "cuda"), accuracies, strict=True):
        pd.DataFrame(
            [
                {
                    "victim": "vm",
                    "defense": "t1",
                    "accuracy_mean": mean,
                    "accuracy_ci_low": mean - 0.05,
                    "accuracy_ci_high": mean + 0.05,
                    "m_adv_mean": 20.0,
                    "m_adv_ci_low": 18.0,
                    "m_adv_ci_high": 22.0,
                    "victim_accuracy": victim,
                }
            ]
        ).to_csv(tmp_path / f"table1-summary-{device_name}.csv", index=False)
    return DeviceEvidence(tmp_path, "gpu-run")


def test_the_gpu_sentences_follow_the_device_run(tmp_path) -> None:
    from paraeval.study.device_evidence import (
        cold_lines,
        readme_lines,
        reproduce_lines,
        table1_lines,
    )

    fast = _device_folder(
        tmp_path / "a", cold_s=80.0, reproduce=(0, 500), accuracies=[(98.9, 99.0), (98.92, 99.0)]
    )
    (line,) = cold_lines(fast)
    assert "80.0 s on one NVIDIA H100 80GB HBM3;" in line and line.endswith("is met on this card.")
    slow = _device_folder(
        tmp_path / "b", cold_s=95.0, reproduce=(0, 700), accuracies=[(1, 1), (1, 1)]
    )
    assert "700 s; the target, 10 min on one H100, is not met" in reproduce_lines(slow)[0]
    assert reproduce_lines(fast)[0].endswith(
        "on one NVIDIA H100 80GB HBM3: 500 s; the target, 10 min on one H100, is met on this card."
    )
    assert table1_lines(fast) == [
        "Table 1 (5 seeds, FGSM) on the CPU and on the GPU: 2 of 2 95 % "
        "intervals (accuracy and M_adv per row) overlap."
    ]
    assert "1 failed, 2 passed in 70.01s (docs/" in readme_lines(fast)[-1]
    assert fast.failed_tests() == ["test_x"]


def test_the_gpu_comparison_names_the_intervals_apart(tmp_path) -> None:
    from paraeval.study.device_evidence import cold_lines, reproduce_lines, table1_lines

    apart = _device_folder(
        tmp_path, cold_s=120.0, reproduce=(124, 300), accuracies=[(98.9, 99.05), (99.1, 99.11)]
    )
    (line,) = table1_lines(apart)
    assert "1 of 2 95 % intervals" in line
    assert "apart: accuracy of vm t1: 98.900 on the CPU, 99.100 on the GPU." in line
    assert "own victims (trained on its device; test accuracy vm 99.05 % vs 99.11 %)" in line
    assert cold_lines(apart)[0].endswith("is not met on this card.")
    assert "stopped at its 600 s limit (exit 124)" in reproduce_lines(apart)[0]
    assert reproduce_lines(apart)[0].endswith("target is not shown.")  # no part times logged
    (tmp_path / "reproduce-partial.log").write_text(
        "cells: 3/3\npart 1 of 8 done in 81 s: 190 cell(s)\ncells: 9/9\n"
        "part 2 of 8 done in 70 s: 600 cell(s), 190 stored before\ncells: 0/70\n"
    )
    assert apart.part_times() == [(1, 81), (2, 70)]
    assert reproduce_lines(apart)[0].endswith("not shown. Part 1: 81 s. Part 2: 70 s.")


def test_merge_replaces_the_rows_measured_again_and_keeps_the_others() -> None:
    from paraeval.bench.measure import BENCH_COLUMNS, merged, row_groups

    def frame(*rows: tuple[str, str | None, float]) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {c: None for c in BENCH_COLUMNS} | {"name": n, "baseline": b, "candidate_s": s}
                for n, b, s in rows
            ]
        )

    earlier = frame(
        ("fgsm-sweep", "art-per-eps", 1.0),
        ("fgsm-sweep", "per-image", 2.0),
        ("cold-tables-1-3", None, 900.0),
    )
    now = frame(
        ("cold-tables-1-3", None, 800.0),
        ("fgsm-sweep", "per-image", 3.0),
        ("parasite-bank-cuda", "one-at-a-time", 0.4),
    )
    result = merged(earlier, now)
    assert list(zip(result["name"], result["candidate_s"], strict=True)) == [
        ("fgsm-sweep", 1.0),
        ("fgsm-sweep", 3.0),
        ("cold-tables-1-3", 800.0),
        ("parasite-bank-cuda", 0.4),
    ]
    assert row_groups("cold") == ("cold",) and row_groups("") == ()


def test_the_scaling_sentence_says_where_the_time_went(tmp_path) -> None:
    from paraeval.study.device_evidence import scaling_lines

    evidence = _device_folder(
        tmp_path, cold_s=80.0, reproduce=(0, 500), accuracies=[(1, 1), (1, 1)]
    )
    steps = pd.read_csv(tmp_path / "steps.csv")
    steps.loc[1] = ["scaling", "paraeval run", 200, 0, 120]
    steps.to_csv(tmp_path / "steps.csv", index=False)
    log = tmp_path / "scaling-16-cores.log"
    log.write_text(
        "training victims: 2/2, 40 s, ETA 0 s, vm\ntraining victim vm: 6/6, 39 s, "
        "ETA 0 s\ntraining parasites: 25/25, 30 s, ETA 0 s\ncells: 36/36, 14 s, ETA "
        "0 s, vm\n"
    )
    (line,) = scaling_lines(evidence)
    assert line.endswith(
        "16 CPU cores: 120 s (victims 40 s side by side; training parasites 30 s; cells 14 s)."
    )
