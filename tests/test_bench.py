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


def test_the_performance_page_is_generated_from_the_committed_bench() -> None:
    from paraeval.bench_page import performance_page

    from .conftest import ROOT

    committed = ROOT / "reports" / "bench.csv"
    page = (ROOT / "docs" / "performance.md").read_text()
    assert page == performance_page(pd.read_csv(committed), "reports/bench.csv")
    assert "| fgsm-sweep | art-per-eps |" in page


def test_the_executor_verdict_follows_the_measured_ratios() -> None:
    from paraeval.bench import BENCH_COLUMNS
    from paraeval.bench_page import performance_page

    def page(dask_ratio: float) -> str:
        rows = [("executor-local:2", "local", 0.6), ("executor-dask:2", "local", dask_ratio),
                ("executor-dask:2", "local-1-thread", dask_ratio / 2)]  # fmt: skip
        frame = pd.DataFrame(
            [{c: None for c in BENCH_COLUMNS} | {"name": n, "baseline": b, "ratio": r,
              "ratio_low": r, "ratio_high": r, "candidate_s": 1.0, "baseline_s": 1.0,
              "repetitions": 1, "size": "grid", "device": "cpu"} for n, b, r in rows]
        )  # fmt: skip
        return performance_page(frame, "bench.csv")

    fast, slow = page(0.5), page(2.0)
    assert "ran 2.00x as fast as the in-process default" in fast and "is met" in fast
    assert "ran 0.50x as fast" in slow and "is not met" in slow and "pays its own start-up" in slow
    assert "pays its own start-up" not in fast  # explained only when slow


def test_the_cold_verdict_follows_the_measured_time() -> None:
    from paraeval.bench import BENCH_COLUMNS
    from paraeval.bench_page import performance_page

    def page(seconds: float) -> str:
        row = {c: None for c in BENCH_COLUMNS} | {
            "name": "cold-tables-1-3", "baseline": None, "ratio": None, "candidate_s": seconds,
            "repetitions": 1, "size": "grid", "device": "cpu (2 threads)"}  # fmt: skip
        return performance_page(pd.DataFrame([row]), "bench.csv")

    assert "took 12.0 min on cpu (2 threads); [G]'s target" in page(720.0)
    assert "15 min: met." in page(720.0) and "15 min: not met." in page(1320.0)


def test_the_readme_performance_block_is_generated_from_the_committed_bench() -> None:
    from paraeval.bench_page import BEGIN, END, readme_block

    from .conftest import ROOT

    text = (ROOT / "README.md").read_text()
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    committed = pd.read_csv(ROOT / "reports" / "bench.csv")
    assert block == readme_block(committed, "reports/bench.csv")
    assert "FGSM sweep <= 1.0x ART's per-eps loop" in block
