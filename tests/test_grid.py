"""Grids as files: `paraeval run --config grid.toml`, and reproduce.toml."""

from __future__ import annotations

import dataclasses
import re

import pandas as pd
import pytest

from paraeval.errors import UserError
from paraeval.run.grid import load_grid

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
    by_hand = run_cli(
        "run",
        "--victims",
        "vm",
        "--defenses",
        "none",
        "--n-images",
        "12",
        "--attacks",
        "fgsm,pgd:steps=2",
        "--out",
        str(tmp_path / "hand"),
    )
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
    overridden = run_cli(
        "run", "--config", str(grid), "--n-images", "5", "--out", str(tmp_path / "override")
    )
    assert overridden.returncode == 0, overridden.stderr
    rows = pd.read_csv(tmp_path / "override" / "results.csv")
    assert list(rows["attack"]) == ["fgsm", "pgd:steps=2"]  # the parts stay
    assert (rows["n_attacked"] + rows["n_misclassified"] == 5).all()  # --n-images wins


def test_reproduce_reads_the_shipped_grid_file() -> None:
    from paraeval.study.reproduce import REPRODUCTION

    shipped = ROOT / "paraeval" / "study" / "reproduce.toml"
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


def test_pipeline_seeds_are_one_run_per_seed_each_on_its_own_victim() -> None:
    from paraeval.run.grid import run_parts, seed_runs
    from paraeval.run.runner import RunConfig, RunResult

    parasite = RunConfig(victims=["vm"], seeds=[0, 1, 2])
    assert seed_runs(parasite) == [parasite]
    pipeline = dataclasses.replace(parasite, seed_scope="pipeline")
    assert [(r.seeds, r.victim_seed) for r in seed_runs(pipeline)] == [([0], 0), ([1], 1), ([2], 2)]
    seen: list[tuple[list[int], int, list[str]]] = []

    def runner(config: RunConfig) -> RunResult:
        seen.append((config.seeds, config.victim_seed, list(config.earlier_cells)))
        return RunResult(keys=[*config.earlier_cells, f"cell-{config.seeds[0]}"], planned=1)

    result = run_parts([pipeline], runner)
    assert seen == [([0], 0, []), ([1], 1, ["cell-0"]), ([2], 2, ["cell-0", "cell-1"])]
    assert result.keys == ["cell-0", "cell-1", "cell-2"]  # the last run lists every seed's cell
    with pytest.raises(UserError, match="exclude each other"):
        seed_runs(dataclasses.replace(pipeline, victim_seed=4))
    with pytest.raises(UserError, match="valid: parasite, pipeline"):
        seed_runs(dataclasses.replace(parasite, seed_scope="victim"))
    # the paper's numbers are single draws of the whole pipeline: reproduce varies the victims
    from paraeval.study.reproduce import REPRODUCTION

    assert {part.seed_scope for part in REPRODUCTION} == {"pipeline"}


def test_a_bad_seed_scope_is_a_usage_error() -> None:
    done = run_cli("run", "--victims", "vm", "--seed-scope", "victims", "--dry-run")
    assert done.returncode == 2 and "valid: parasite, pipeline" in done.stderr
    planned = run_cli(
        "run", "--victims", "vm", "--seeds", "3", "--seed-scope", "pipeline", "--dry-run"
    )
    assert planned.returncode == 0, planned.stderr
    assert "3 cell(s) planned" in planned.stdout + planned.stderr


def test_rows_name_their_victims_seed_and_the_summary_counts_the_victims(tmp_path) -> None:
    from paraeval.run.results import summarise
    from paraeval.run.store import Store

    row = {
        "victim": "vm",
        "defense": "t1-vm-after-nobn-none",
        "attack": "fgsm",
        "mode": "transfer",
        "status": "ok",
        "paper_accuracy": 98.7,
        "paper_m_adv": 19.0,
        "robust_accuracy": None,
        "dataset": "mnist",
    }
    with Store(tmp_path) as store:
        for seed, victim_accuracy in ((0, 99.0), (1, 98.6)):
            run_id = store.start_run("paraeval run", {}, {"victim_seed": seed}, [])
            store.put_cell(
                f"cell{seed}",
                run_id,
                {
                    **row,
                    "seed": seed,
                    "accuracy": 98.0 + seed,
                    "m_adv": 10.0,
                    "victim_accuracy": victim_accuracy,
                },
            )
        old_run = store.start_run("paraeval run", {}, {}, [])  # a record from before the option
        store.put_cell(
            "cell2",
            old_run,
            {**row, "seed": 2, "accuracy": 98.5, "m_adv": 12.0, "victim_accuracy": 99.0},
        )
        rows = [store.cell(f"cell{seed}").row for seed in range(3)]
    assert [r["victim_seed"] for r in rows] == [0, 1, 0]
    record = summarise(pd.DataFrame(rows[:2])).to_dict("records")[0]
    assert record["n_seeds"] == 2 and record["n_victim_seeds"] == 2
    assert record["victim_accuracy"] == pytest.approx(98.8)  # the mean over the seeds' victims
    one_victim = summarise(pd.DataFrame([rows[0], rows[2]])).to_dict("records")[0]
    assert one_victim["n_victim_seeds"] == 1


def test_results_json_names_every_run_that_computed_its_cells(tmp_path) -> None:
    """A grid of pipeline seeds is one run per seed: results.json keeps each one's record,
    not only the last (a run that computed none of the listed cells is left out)."""
    import json

    from paraeval.run.results import write_tables
    from paraeval.run.store import Store

    row = {"victim": "vm", "defense": "none", "attack": "fgsm", "seed": 0, "status": "failed",
           "mode": "transfer", "error": "x"}  # fmt: skip
    with Store(tmp_path) as store:
        first = store.start_run("paraeval run", {}, {"victim_seed": 0}, ["a"])
        store.put_cell("a", first, row, [])
        second = store.start_run("paraeval run", {}, {"victim_seed": 1}, ["a", "b"])
        store.put_cell("b", second, {**row, "seed": 1}, [])
        store.start_run("paraeval run", {}, {"victim_seed": 2}, ["c"])
        write_tables(store, ["a", "b"], tmp_path)
    computed_by = json.loads((tmp_path / "results.json").read_text())["computed_by"]
    assert [run["id"] for run in computed_by] == [first, second]
    assert [run["config"]["victim_seed"] for run in computed_by] == [0, 1]
    assert computed_by[1]["n_cells"] == 2 and "cells" not in computed_by[1]
