"""The readings of the paper's open choices: options, keys, effects and the readings study."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from paraeval import registry
from paraeval.api import RunContext
from paraeval.attacks.fgsm import MNIST_STD, FGSMSweep
from paraeval.cells import cell_key
from paraeval.defenses.reading import ParasiteReading, reading_options
from paraeval.errors import UserError
from paraeval.lookup import dataset_named
from paraeval.readings import Reading, combinations, one_factor_readings, parse_reading

from .conftest import kill_after_first_cell, run_cli, stored_cells

#: A quick base reading for tests: one epoch per parasite.
QUICK_BASE = {"epochs": "1"}
#: The row each one-factor reading is checked on: an after-BN+act BN parasite on vm-batch
#: (every option applies to it), and row 12 for the row12 reading.
ROW = "t1-vmbatch-after-bn-small"


def _defense(spec: str) -> registry.Entry:
    (entry,) = registry.configured_defenses(spec)
    return entry


def _spec(row: str, options: dict[str, str]) -> str:
    suffix = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{row}:{suffix}" if suffix else row


def _readings() -> list[Reading]:
    return [r for r in one_factor_readings(QUICK_BASE) if r.defense]


@pytest.mark.parametrize("reading", _readings(), ids=lambda r: r.name)
def test_each_reading_changes_the_cell_key_and_the_protected_model(victims, reading) -> None:
    row = "t3-row12" if reading.factors == {"row12"} else ROW
    base = _defense(_spec(row, QUICK_BASE))
    changed = _defense(_spec(row, {**QUICK_BASE, **dict(reading.defense)}))
    victim_config = {"name": "vm-batch"}
    fgsm = registry.configured_attacks("fgsm")[0]
    assert cell_key(victim_config, base, fgsm, 0, 200) != cell_key(
        victim_config, changed, fgsm, 0, 200
    )
    model = victims["vm-batch"][0]
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        before = base.obj.protect(model, seed=0).model(x)
        after = changed.obj.protect(model, seed=0).model(x)
    assert not torch.equal(before, after), f"{reading.name} did not change the protected model"


def test_every_option_has_alternatives_and_is_documented() -> None:
    names = {next(iter(r.factors)) for r in one_factor_readings({})}
    assert names == {*reading_options(), "eps_unit"}
    for name, option in reading_options().items():
        assert option.help and option.rule, name


def test_row12_is_in_the_key_of_row_12_only() -> None:
    assert "row12" in _defense("t3-row12").obj.key_options()
    assert "row12" not in _defense("t3-row11").obj.key_options()
    assert len(_defense("t3-row12:row12=3").obj.specs) == 3
    assert len(_defense("t3-row12").obj.specs) == 4


def test_tags_take_options_and_options_accumulate() -> None:
    entries = registry.configured_defenses("table2:init=dirac,pool=after")
    assert len(entries) == 12
    assert all(e.obj.reading == ParasiteReading(init="dirac", pool="after") for e in entries)
    again = entries[0].obj.configure(order="hwc")
    assert again.reading == ParasiteReading(init="dirac", pool="after", order="hwc")


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("table1:init=zeros", "init='zeros' must be one of torch|dirac|kaiming|glorot"),
        ("table1:epochs=0", "epochs='0' must be 'auto' or an integer in [1, 200]"),
        ("t3-row12:row12=5", "row12='5' must be one of 4|3"),
        ("table1:colour=red", "unknown option(s) colour; valid: init=one of"),
    ],
)
def test_bad_reading_values_are_user_errors_listing_the_valid_values(selection, expected) -> None:
    with pytest.raises(UserError) as error:
        registry.configured_defenses(selection)
    assert expected in str(error.value)


def test_bad_reading_on_the_command_line_exits_2(tmp_path) -> None:
    bad = run_cli("run", "--defenses", "table1:init=zeros", "--out", str(tmp_path))
    assert bad.returncode == 2 and "torch|dirac|kaiming|glorot" in bad.stderr
    bad = run_cli("run", "--attacks", "fgsm:eps_unit=furlongs", "--out", str(tmp_path))
    assert bad.returncode == 2 and "pixel|normalized" in bad.stderr


def test_normalized_eps_unit_scales_the_sweep_and_changes_the_key() -> None:
    pixel, normalized = FGSMSweep(), FGSMSweep(eps_unit="normalized")
    assert normalized.epsilons()[:3] == pytest.approx([k * 0.05 * MNIST_STD for k in (1, 2, 3)])
    assert normalized.epsilons()[-1] <= 1.0 < normalized.epsilons()[-1] + 0.05 * MNIST_STD
    assert pixel.epsilons()[0] == 0.05
    entries = registry.configured_attacks("fgsm,fgsm:eps_unit=normalized")
    none = registry.configured_defenses("none")[0]
    keys = {cell_key({"name": "vm"}, none, a, 0, 200) for a in entries}
    assert len(keys) == 2


def test_a_normalized_step_is_the_bound_datasets_std() -> None:
    """Bound to a run (as the runner binds every attack), one normalised step is the run's
    dataset's std: the declared one, else its training pixels'; MNIST declares 0.3081."""
    images = torch.rand(50, 1, 8, 8)
    declared = FGSMSweep(eps_unit="normalized").bind(RunContext(images, pixel_std=0.5))
    assert declared.epsilons()[:2] == pytest.approx([0.025, 0.05])
    computed = FGSMSweep(eps_unit="normalized").bind(RunContext(images))
    assert computed.epsilons()[0] == pytest.approx(0.05 * float(images.double().std()))
    assert FGSMSweep().bind(RunContext(images, pixel_std=0.5)).epsilons()[0] == 0.05  # pixel
    assert dataset_named("mnist").pixel_std == MNIST_STD


def test_reading_parser_and_combinations() -> None:
    reading = parse_reading("pool=after,eps_unit=normalized,init=dirac")
    assert reading.name == "init=dirac,pool=after,eps_unit=normalized"
    assert reading.selections({"epochs": "1"}, "table1,t3-row12") == (
        "table1:epochs=1,init=dirac,pool=after,t3-row12:epochs=1,init=dirac,pool=after",
        "fgsm:eps_unit=normalized",
    )
    with pytest.raises(UserError, match="must be one of"):
        parse_reading("eps_unit=inches")
    with pytest.raises(UserError, match="init"):
        parse_reading("init=zeros")


def _score(name: str, distance: float):
    from paraeval.readings import Score

    rows = pd.DataFrame({"m_adv_mean": [distance], "paper_m_adv": [0.0]})
    return Score(parse_reading(name), "screen", [0], rows)


def test_combinations_take_the_factors_that_moved_toward_the_paper() -> None:
    scores = [
        _score("default", 20.0),
        _score("init=dirac", 30.0),  # farther: not combined
        _score("init=kaiming", 10.0),
        _score("init=glorot", 12.0),  # same factor as a better one: not combined
        _score("pool=after", 15.0),
        _score("order=hwc", 19.0),  # moved 1 pp < MATTERS_PP: not combined
        _score("eps_unit=normalized", 5.0),
    ]
    combos = [r.name for r in combinations(scores)]
    assert combos == [
        "init=kaiming,eps_unit=normalized",
        "pool=after,eps_unit=normalized",
        "init=kaiming,pool=after",
        "init=kaiming,pool=after,eps_unit=normalized",
    ]


READINGS_ARGS = ["readings", "--rows", "t1-vm-after-nobn-none,t1-vm-after-bn-small",
                 "--base", "epochs=1", "--n-images", "40", "--confirm-seeds", "0",
                 "--no-combine"]  # fmt: skip


def test_readings_study_end_to_end_and_resume_after_sigkill(victims, tmp_path) -> None:
    """Two readings x two rows x one seed; killed after its first cell, resumed, complete."""
    work = tmp_path / "study"
    screen = ["--readings", "default;init=dirac"]
    stored_at_kill = kill_after_first_cell([*READINGS_ARGS, *screen, "--work", str(work)], work)
    assert 1 <= stored_at_kill < 4, "the kill must land mid-study"

    again = run_cli(*READINGS_ARGS, *screen, "--work", str(work), "--reports", str(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    assert stored_cells(work) == 4  # nothing recomputed twice, nothing lost
    first_run = again.stderr.split("already stored")[0]
    assert f"{min(stored_at_kill, 2)} of 2 cell(s)" in first_run
    readings = pd.read_csv(tmp_path / "readings.csv")
    assert list(readings["reading"]) == ["default", "init=dirac"]
    assert (readings["rows"] == 2).all() and (readings["seeds"] == 1).all()
    assert (readings["interval"] == "Wilson (one seed)").all()
    rows = pd.read_csv(tmp_path / "readings_rows.csv")
    assert len(rows) == 4
    report = run_cli("report", str(work))
    assert report.returncode == 0, report.stderr
    html = (work / "report.html").read_text()
    assert 'id="readings"' in html and "<code>init=dirac</code>" in html
    results = pd.read_csv(work / "results.csv")  # the last reading's run
    dirac = results[results["defense"].str.contains("init=dirac")]
    for _, measured in dirac.iterrows():
        row = rows[
            (rows["reading"] == "init=dirac") & (rows["row"] == measured["defense"].split(":")[0])
        ]
        assert float(row["m_adv_mean"].iloc[0]) == pytest.approx(measured["m_adv"])
        inside = (
            measured["m_adv_wilson_low"]
            <= row["paper_m_adv"].iloc[0]
            <= measured["m_adv_wilson_high"]
        )
        assert bool(row["m_adv_in_ci"].iloc[0]) == inside


def test_readings_csvs_and_verdict_from_scored_cells(tmp_path) -> None:
    """Scores count a row as reproduced only when the paper value is inside the interval, and
    the verdict sentences are built from the written CSVs."""
    from paraeval.readings import score, write_csvs

    cells = [
        {"status": "ok", "defense": "t1-vm-after-nobn-none", "accuracy": 98.7, "m_adv": 19.0,
         "paper_m_adv": 19.0, "accuracy_wilson_low": 98.5, "accuracy_wilson_high": 98.9,
         "m_adv_wilson_low": 10.0, "m_adv_wilson_high": 30.0, "parasite_fit": []},
    ]  # fmt: skip
    scores = [score(Reading(), "screen", [0], cells),
              score(parse_reading("init=dirac"), "screen", [0],
                    [{**cells[0], "m_adv": 2.0, "m_adv_wilson_low": 0.5,
                      "m_adv_wilson_high": 6.0}])]  # fmt: skip
    write_csvs(scores, tmp_path)
    lines = pd.read_csv(tmp_path / "readings.csv")
    assert list(lines["rows_both_in_ci"]) == [1, 0]  # paper 19.0 in [10, 30], not in [0.5, 6]
    assert list(lines["mean_abs_diff_m_adv"]) == [0.0, 17.0]
    from paraeval.verdict import readings_sentences

    text = " ".join(readings_sentences(lines, pd.read_csv(tmp_path / "readings_rows.csv")))
    assert "2 readings" in text
    assert "Closest to the paper among the screened readings: default (mean" in text
    assert "goes from 19.0 % (default) to 2.0 %" in text


def test_list_options_shows_every_reading_with_its_values() -> None:
    listed = run_cli("list", "defenses", "--options", env={"COLUMNS": "250"})
    assert listed.returncode == 0, listed.stderr
    for name in reading_options():
        assert f" {name} " in listed.stdout
    assert "torch|dirac|kaiming|glorot" in listed.stdout
    attacks = run_cli("list", "attacks", "--options", env={"COLUMNS": "250"})
    assert "eps_unit" in attacks.stdout and "(x the dataset's pixel std" in attacks.stdout


def test_reading_dataclass_round_trips_through_its_options() -> None:
    reading = ParasiteReading(init="glorot", epochs=3, lr=0.01, pool="after")
    assert ParasiteReading.parse("x", {k: str(v) for k, v in reading.changed().items()}) == reading
    assert dataclasses.asdict(reading) == reading.as_options()


def test_readme_verdict_is_generated_from_the_committed_reports() -> None:
    """The README's verdict block is exactly what paraeval.verdict writes from reports/*.csv:
    a sentence the committed data contradicts fails this test."""
    from paraeval.verdict import readme_block, readme_block_of

    from .conftest import ROOT

    assert readme_block_of(ROOT / "README.md") == readme_block(ROOT / "reports")
    full = readme_block(ROOT / "reports", short=False)
    assert readme_block_of(ROOT / "reports" / "README.md") == full
    assert full.count("| t") == 36  # every paper row in the generated Tables 1-3
