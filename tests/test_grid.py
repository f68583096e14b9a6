"""Grids as files: `paraeval run --config grid.toml`, and reproduce.toml."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from paraeval.errors import UserError
from paraeval.grid import load_grid

from .conftest import ROOT, run_cli

TWO_PARTS = """
victims = ["vm"]
defenses = "none"
n_images = 12

[[part]]
attacks = "fgsm"

[[part]]
attacks = "pgd:steps=2"
seeds = [0]
"""


def test_a_grid_file_has_parts_with_defaults(tmp_path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(TWO_PARTS)
    first, second = load_grid(grid)
    assert (first.victims, first.attacks, first.seeds, first.n_images) == (["vm"], "fgsm", [0], 12)
    assert second.attacks == "pgd:steps=2" and second.defenses == "none"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'victims = ["vm"]\ndefences = "none"\nattacks = "fgsm"',
            r"unknown key\(s\) defences; valid: victims",
        ),
        (
            'victims = "vm"\ndefenses = "none"\nattacks = "fgsm"',
            "victims = 'vm' must be victim names",
        ),
        ('victims = ["vm"]\nattacks = "fgsm"', "defenses missing"),
        ("victims = [", "grid file"),
    ],
)
def test_a_bad_grid_file_is_one_line_naming_the_key(tmp_path, text: str, message: str) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    with pytest.raises(UserError, match=message):
        load_grid(grid)
    done = run_cli("run", "--config", str(grid), "--dry-run")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_a_two_part_grid_equals_the_same_command_line(victims, tmp_path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(TWO_PARTS)
    from_file = run_cli("run", "--config", str(grid), "--out", str(tmp_path / "file"))
    by_hand = run_cli("run", "--victims", "vm", "--defenses", "none", "--n-images", "12",
                      "--attacks", "fgsm,pgd:steps=2", "--out", str(tmp_path / "hand"))  # fmt: skip
    assert from_file.returncode == 0 and by_hand.returncode == 0, from_file.stderr
    # the summary printed into a pipe keeps every name whole
    assert "pgd:steps=2" in from_file.stdout and "…" not in from_file.stdout
    a, b = (
        pd.read_csv(tmp_path / d / "results.csv").drop(columns="seconds") for d in ("file", "hand")
    )
    pd.testing.assert_frame_equal(a, b)
    assert re.search(r"part 1 of 2 done in \d+ s: 1 cell\(s\)\n", from_file.stderr)
    assert "part 2 of 2 done in" in from_file.stderr and "part " not in by_hand.stderr
    # in-process: no examples phase (the cells craft them)
    assert re.search(r"time: victims \d+ s, 0 parasites \d+ s, cells \d+ s\n", by_hand.stderr)
    again = run_cli("run", "--config", str(grid), "--out", str(tmp_path / "file"))
    assert re.search(r"part 2 of 2 done in \d+ s: 1 cell\(s\), 1 stored before", again.stderr)
    overridden = run_cli("run", "--config", str(grid), "--n-images", "5", "--out",
                         str(tmp_path / "override"))  # fmt: skip
    assert overridden.returncode == 0, overridden.stderr
    rows = pd.read_csv(tmp_path / "override" / "results.csv")
    assert list(rows["attack"]) == ["fgsm", "pgd:steps=2"]  # the parts stay
    assert (rows["n_attacked"] + rows["n_misclassified"] == 5).all()  # --n-images wins


def test_reproduce_reads_the_shipped_grid_file() -> None:
    from paraeval.reproduce import REPRODUCTION

    shipped = ROOT / "paraeval" / "reproduce.toml"
    assert load_grid(shipped) == REPRODUCTION
    assert [p.attacks for p in REPRODUCTION][:2] == ["fgsm", "fgsm,pgd,deepfool"]
    assert len(REPRODUCTION) == 8
    companions = REPRODUCTION[6]  # the companions: the three families on the same victim
    assert companions.victims == ["vm"] and "t1-vm-*" in companions.defenses
    assert {"knockoff", "query-streams"} <= set(companions.attacks.split(","))


def test_the_grid_example_of_the_docs_loads(tmp_path) -> None:
    text = (ROOT / "docs" / "usage.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    grid = tmp_path / "grid.toml"
    grid.write_text(example)
    fgsm, pgd = load_grid(grid)
    assert (fgsm.seeds, pgd.seeds, pgd.attacks) == ([0, 1, 2], [0], "pgd:steps=20")
