"""The HTML report and CSVs: re-rendering from the store, escaping, and a real browser."""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch import nn

from paraeval import hookimpl
from paraeval.errors import UserError
from paraeval.plugin.manager import load_plugins, pm

from .conftest import ROOT, run_cli

ARTIFACTS = Path(os.environ.get("PARAEVAL_ARTIFACTS", ROOT / ".pytest_cache" / "artifacts"))
CSVS = ("results.csv", "summary.csv", "prediction_change.csv")


@pytest.fixture(scope="module")
def small_run(victims, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    result = run_cli(
        "run",
        "--victims",
        "vm,vm-batch",
        "--seeds",
        "2",
        "--n-images",
        "30",
        "--defenses",
        "none,t1-vm-after-bn-small,t2-bn-small-sigma0.2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return out


def test_report_command_rerenders_identical_files(small_run: Path, tmp_path: Path) -> None:
    copy_dir = tmp_path / "copy"
    shutil.copytree(small_run, copy_dir)
    for name in (*CSVS, "report.html"):
        (copy_dir / name).unlink()
    result = run_cli("report", str(copy_dir))
    assert result.returncode == 0, result.stderr
    for name in (*CSVS, "report.html"):
        assert (copy_dir / name).read_bytes() == (small_run / name).read_bytes(), name


def test_report_of_a_directory_without_results_exits_2(tmp_path: Path) -> None:
    result = run_cli("report", str(tmp_path))
    assert result.returncode == 2 and "no results.sqlite" in result.stderr


def test_html_shows_the_same_numbers_as_the_csvs(small_run: Path) -> None:
    html = (small_run / "report.html").read_text()
    summary = pd.read_csv(small_run / "summary.csv")
    row = summary[summary["defense"] == "t1-vm-after-bn-small"].iloc[0]
    half = (row["m_adv_pi_high"] - row["m_adv_pi_low"]) / 2  # the prediction interval
    assert f"28.00 | {row['m_adv_mean']:.2f} ± {half:.2f} | {row['m_adv_diff']:+.2f}" in html
    assert f"98.50 | {row['accuracy_mean']:.2f} ±" in html
    for section in ("Table 1", "Table 2", "Table 3", "Verdict", "Reproduction notes"):
        assert section in html
    assert "not measured" in html  # rows this small run did not cover say so
    results = pd.read_csv(small_run / "results.csv")
    vm = results[results["victim"] == "vm"]["victim_accuracy"].iloc[0]
    # each victim's measured accuracy beside the published one, on the first page
    assert (
        f'<td>vm</td><td>mnist</td><td class="num">{vm:.2f}</td><td class="num">98.78</td>' in html
    )
    evasion = summary[summary["mode"] != "extraction"]
    groups = {
        ("Table 1" if d.startswith("t1") else "Table 2") for d in evasion["defense"] if d != "none"
    }
    # one shaded matrix per pair, and one per (table, attack) summed over its rows
    assert html.count('<table class="matrix">') == len(evasion) + len(groups)
    assert "Table 1: paper (x) and measured mean" in html  # the forest plot, text kept as text
    assert html.count("<svg") >= 4  # forest plots, trade-off, sigma and success curves
    namespaces = re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", html)  # not fetched
    assert "<script" not in html and "http://" not in namespaces


class _Evil:
    name = "<script>alert('x')</script>"
    description = "<img src=x onerror=alert(1)>"

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return copy.deepcopy(model)


class _EvilPlugin:
    __name__ = "evil"

    @hookimpl
    def register_defenses(self, register):
        register(_Evil())


def test_plugin_strings_are_escaped(victims, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from paraeval.cli.main import app

    load_plugins()
    plugin = _EvilPlugin()
    pm.register(plugin, name="evil")
    try:
        out = tmp_path / "run"
        result = CliRunner().invoke(
            app,
            [
                "run",
                "--victims",
                "vm",
                "--defenses",
                "<script>*",
                "--n-images",
                "10",
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
    finally:
        pm.unregister(plugin)
    html = (out / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(" in html


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]  # fmt: skip


@pytest.mark.browser
def test_report_in_headless_chromium(small_run: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    url = (small_run / "report.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [browser, *FLAGS, *profile, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Table 1" in dom.stdout and "Table 3" in dom.stdout
    assert len(re.findall(r"<svg", dom.stdout)) >= 3
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    subprocess.run(
        [browser, *FLAGS, *profile, f"--screenshot={screenshot}", "--window-size=1280,2400", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one
    forest = tmp_path / "forest.html"
    html = (small_run / "report.html").read_text()
    start = html.index('<figure class="forest">')
    forest.write_text(f"<html><body>{html[start : html.index('</figure>', start)]}</body></html>")
    plot = ARTIFACTS / "forest.png"
    subprocess.run(
        [
            browser,
            *FLAGS,
            *profile,
            f"--screenshot={plot}",
            "--window-size=900,500",
            forest.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    colours = Image.open(plot).convert("RGB").getcolors(maxcolors=1 << 16) or []
    blue = sum(n for n, (r, g, b) in colours if b > 150 and r < 60 and 80 < g < 150)
    assert len(colours) > 20 and blue > 50  # the measured points and bars (#0072B2) rendered


def test_reproduce_copies_the_report_and_describes_the_run(victims, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from paraeval.cli import main as cli
    from paraeval.run.runner import RunConfig
    from paraeval.study import reproduce

    tiny = (
        RunConfig(victims=["vm"], defenses="none", attacks="fgsm", seeds=[0], n_images=10),
        RunConfig(
            victims=["vm"],
            defenses="none",
            attacks="critical-points:budget=300,normals=0",
            seeds=[0],
            n_images=10,
        ),
    )
    monkeypatch.setattr(reproduce, "REPRODUCTION", tiny)
    reports = tmp_path / "reports"
    result = CliRunner().invoke(
        cli.app, ["reproduce", "--work", str(tmp_path / "work"), "--reports", str(reports)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in reports.iterdir()) == [
        "README.md",
        "extraction.csv",
        "prediction_change.csv",
        "report.html",
        "results.csv",
        "summary.csv",
    ]
    readme = (reports / "README.md").read_text()
    assert "paraeval reproduce" in readme and "torch 2.13.0" in readme
    assert "2. victims vm; defenses `none`; attacks `critical-points" in readme
    results = pd.read_csv(reports / "results.csv")
    assert list(results["attack"]) == ["fgsm", "critical-points:budget=300,normals=0"]
    assert "critical-points" in (reports / "report.html").read_text()
    assert (reports / "results.csv").read_bytes() == (
        tmp_path / "work" / "results.csv"
    ).read_bytes()

    only = tmp_path / "only-part-2"
    result = CliRunner().invoke(
        cli.app,
        ["reproduce", "--work", str(tmp_path / "work"), "--reports", str(only), "--parts", "2"],
    )
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(only / "results.csv")["attack"]) == [
        "critical-points:budget=300,normals=0"
    ]
    readme = (only / "README.md").read_text()
    assert "Only parts 2 of 2 ran (`--parts`); parts 1 are not in these files." in readme
    bad = CliRunner().invoke(cli.app, ["reproduce", "--work", str(only), "--parts", "3"])
    assert isinstance(bad.exception, UserError) and "1..2" in str(bad.exception)


def test_the_committed_report_is_small_and_has_its_forest_plots() -> None:
    current = ROOT / "reports" / "report.html"  # the last reproduction, else the superseded one
    report = current if current.exists() else ROOT / "reports" / "framework-default" / "report.html"
    html = report.read_text()
    assert report.stat().st_size <= 1_000_000
    for table in (1, 2, 3):
        assert f"Table {table}: paper (x) and measured mean" in html


def test_a_verdict_without_paper_rows_says_how_to_measure_them() -> None:
    from paraeval.study.verdict import summary_sentences

    empty = pd.DataFrame(columns=["defense", "attack", "mode"])
    (sentence,) = summary_sentences(empty)
    assert "--defenses table1,table2,table3 --attacks fgsm" in sentence


def test_the_verdict_says_whether_its_seeds_varied_the_victim() -> None:
    from paraeval.run.results import summarise
    from paraeval.study.verdict import summary_sentences

    def summary(pipeline_seeds: bool) -> pd.DataFrame:
        return summarise(
            pd.DataFrame(
                [
                    {
                        "victim": "vm",
                        "defense": "t1-vm-after-nobn-none",
                        "attack": "fgsm",
                        "mode": "transfer",
                        "status": "ok",
                        "seed": s,
                        "victim_seed": s * pipeline_seeds,
                        "accuracy": 98.0 + 0.2 * s,
                        "m_adv": 10.0 + 4 * s,
                        "paper_accuracy": 98.7,
                        "paper_m_adv": 19.0,
                        "victim_accuracy": 99.0,
                        "robust_accuracy": None,
                        "dataset": "mnist",
                    }
                    for s in range(3)
                ]
            )
        )

    parasite, pipeline = summary(False), summary(True)
    assert summary_sentences(parasite)[0].startswith("Default reading, 3 seeds on one victim")
    assert "Default reading, 3 pipeline seeds (3 victims)," in summary_sentences(pipeline)[0]


def test_a_run_in_progress_rewrites_its_csvs_and_report_every_few_minutes(small_run, tmp_path):
    from paraeval.report.outputs import write_interim
    from paraeval.run.interim import InterimOutputs
    from paraeval.run.store import Store

    copy_dir = tmp_path / "copy"
    shutil.copytree(small_run, copy_dir)
    for name in (*CSVS, "report.html"):
        (copy_dir / name).unlink()
    with Store(copy_dir) as store:
        keys = store.run_cells(store.runs()[-1]["id"])
    interim = InterimOutputs(copy_dir, keys, write_interim, every=3600)
    interim.cell_stored()  # the first stored cell writes at once
    assert (copy_dir / "results.csv").exists() and (copy_dir / "report.html").exists()
    (copy_dir / "results.csv").unlink()
    interim.cell_stored()  # within the interval: nothing is rewritten
    assert not (copy_dir / "results.csv").exists() and interim.failure is None
    assert pd.read_csv(small_run / "results.csv").shape[0] == len(keys)


def test_the_fit_table_counts_seeds_not_cells() -> None:
    """One parasite per seed, carried by every attack's cell of that seed: n is the seeds."""
    from types import SimpleNamespace

    from paraeval.report.html import _fits

    def cell(seed: int, attack: str, mse: float) -> SimpleNamespace:
        fit = {
            "parasite": "p",
            "mse_to_target": mse,
            "mse_to_identity": 0.1,
            "identity_mse": 0.04,
            "bias_norm": 0.0,
            "constant_mse": 0.08,
        }
        return SimpleNamespace(
            row={"defense": "d", "seed": seed, "attack": attack, "parasite_fit": [fit]}
        )

    cells = [cell(s, a, 0.01 * (s + 1)) for s in (0, 1) for a in ("fgsm", "pgd", "deepfool")]
    (row,) = _fits(cells)
    assert row["n"] == 2 and row["mse_to_target"] == pytest.approx(0.015)


def test_samples_keep_each_images_epsilon_as_the_sweep_gave_it(small_run: Path) -> None:
    """FGSM's per-image ε is a value of its grid (0.1, not float32's 0.100000001490116)."""
    from paraeval.attacks.fgsm import FGSMSweep
    from paraeval.run.results import exact_epsilon

    samples = pd.read_csv(small_run / "samples.csv")
    fgsm = samples[(samples["attack"] == "fgsm") & (samples["adversarial"] == 1)]
    assert len(fgsm) > 0
    assert set(fgsm["epsilon"]) <= set(FGSMSweep().epsilons())
    assert exact_epsilon(float(np.float32(0.1))) == 0.1 and exact_epsilon(None) is None
    assert math.isnan(exact_epsilon(math.nan))
