"""The example victim plugin, installed: listed, trained on digits, protected and attacked."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path


def paraeval(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARAEVAL_CACHE_DIR": str(cache), "COLUMNS": "200"}
    env.pop("PARAEVAL_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run(
        [sys.executable, "-m", "paraeval", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def test_the_victim_is_listed_with_its_dataset_and_package(tmp_path: Path) -> None:
    listed = paraeval("list", "victims", "--format", "csv", cache=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in csv.DictReader(listed.stdout.splitlines()) if r["victim"] == "digits-cnn")
    assert row["dataset"] == "digits" and row["provided by"].startswith("paraeval-digits-cnn")


def test_a_parasite_protects_it_by_layer_name(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = paraeval(
        "run",
        "--victims",
        "digits-cnn",
        "--defenses",
        "none,parasite:layer=conv2,neurons=whole",
        "--attacks",
        "fgsm",
        "--n-images",
        "60",
        "--out",
        str(out),
        cache=tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {row["defense"] for row in rows} == {"none", "parasite:layer=conv2,neurons=whole"}
    assert all(row["dataset"] == "digits" and row["status"] == "ok" for row in rows)
    assert float(rows[0]["victim_accuracy"]) > 80.0  # trained by its recipe on 1,297 images
