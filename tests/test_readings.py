"""The readings of the paper's open choices: options, keys, effects and the readings study."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from paraeval import registry
from paraeval.api import RunContext
from paraeval.attacks.fgsm import MNIST_STD, FGSMSweep
from paraeval.defenses.parasite_reading import WHOLE_LAYER_OPTIONS, ParasiteReading, reading_options
from paraeval.errors import UserError
from paraeval.run.cells import cell_key
from paraeval.run.lookup import dataset_named
from paraeval.study.paper import ROWS_BY_NAME
from paraeval.study.readings import Reading, combinations, one_factor_readings, parse_reading

from .conftest import kill_after_first_cell, run_cli, stored_cells

#: A quick base reading for tests: one epoch per parasite, no selection.
QUICK_BASE = {"epochs": "1", "select": "1"}
#: The row each one-factor reading is checked on: an after-BN+act BN parasite on vm-batch
#: (every option applies to it), and row 12 for the row12 reading.
ROW = "t1-vmbatch-after-bn-small"
#: The row the whole-layer readings are checked on (a Table 2 row: a BN parasite, bias small).
WHOLE_ROW = "t2-bn-small-sigma0.2"


def _defense(spec: str) -> registry.Entry:
    (entry,) = registry.configured_defenses(spec)
    return entry


def _spec(row: str, options: dict[str, str]) -> str:
    suffix = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{row}:{suffix}" if suffix else row


def _readings() -> list[Reading]:
    return [r for r in one_factor_readings(QUICK_BASE) if r.defense]


#: Readings that leave a one-epoch, 16x16 parasite as it is: `budget` sets the steps only
#: when epochs=auto, at sides other than 16 (test_selection checks it on the config), and
#: a selection (or its bound) may keep the same candidate (test_selection checks what it
#: records).
SAME_MODEL = ("budget", "select", "max_drop")


@pytest.mark.parametrize("reading", _readings(), ids=lambda r: r.name)
def test_each_reading_changes_the_cell_key_and_the_protected_model(victims, reading) -> None:
    row = {"row12": "t3-row12", "table3_lines": "t3-row06"}.get(next(iter(reading.factors)), ROW)
    row = WHOLE_ROW if reading.factors & set(WHOLE_LAYER_OPTIONS) else row
    base = _defense(_spec(row, QUICK_BASE))
    changed = _defense(_spec(row, {**QUICK_BASE, **dict(reading.defense)}))
    victim_config = {"name": "vm-batch"}
    fgsm = registry.configured_attacks("fgsm")[0]
    assert cell_key(victim_config, base, fgsm, 0, 200) != cell_key(
        victim_config, changed, fgsm, 0, 200
    )
    if reading.factors & set(SAME_MODEL):
        return
    model = victims["vm-batch"][0]
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        before = base.obj.protect(model, seed=0).model(x)
        after = changed.obj.protect(model, seed=0).model(x)
    assert not torch.equal(before, after), f"{reading.name} did not change the protected model"


def test_every_option_has_alternatives_and_is_documented() -> None:
    names = {next(iter(r.factors)) for r in one_factor_readings({})}
    assert names == {*reading_options(), "eps_unit", "m_adv_over", "attacked"}
    for name, option in reading_options().items():
        assert option.help and option.rule, name


def test_row12_is_in_the_key_of_row_12_only() -> None:
    assert "row12" in _defense("t3-row12").obj.key_options()
    assert "row12" not in _defense("t3-row11").obj.key_options()
    assert len(_defense("t3-row12:row12=3").obj.specs) == 3
    assert len(_defense("t3-row12").obj.specs) == 4


def test_the_other_grouping_of_table3_lines_changes_rows_6_to_12_only() -> None:
    from paraeval.study.paper import TABLE3, TABLE3_PREVIOUS_LINES

    other = {row.name: _defense(f"{row.name}:table3_lines=previous").obj for row in TABLE3}
    changed = {
        name for name, defense in other.items() if defense.specs != ROWS_BY_NAME[name].parasites
    }
    assert changed == {f"t3-row{i:02d}" for i in range(6, 13)} == set(TABLE3_PREVIOUS_LINES)
    assert other["t3-row10"].specs == other["t3-row12"].specs  # the grouping's consequence
    for name, defense in other.items():  # no location prints "first n" twice any more
        places = [(s.placement.position, s.placement.neurons) for s in defense.specs]
        assert len(places) == len(set(places)), name
        assert ("table3_lines" in defense.key_options()) == (name in changed)
    assert "row12" not in other["t3-row12"].key_options()


def test_options_that_cannot_change_a_row_stay_out_of_its_key() -> None:
    """Whole-layer options change Table 2 keys only; ``bn_scale_shift`` only rows with a BN
    parasite; defenses without such placements refuse them rather than ignore them."""
    for name, value in (
        ("whole_site", "after-bn"),
        ("whole_parasites", "per-channel"),
        ("whole_side", "16"),
    ):
        assert name in _defense(f"{WHOLE_ROW}:{name}={value}").obj.key_options()
        assert name not in _defense(f"{ROW}:{name}={value}").obj.key_options()
        with pytest.raises(UserError, match="whole-layer"):
            registry.configured_defenses(f"dynamic-parasite:{name}={value}")
        with pytest.raises(UserError, match="LeNet"):
            registry.configured_defenses(f"mlp-bn-none-s0.2:{name}={value}")
    assert "bn_scale_shift" in _defense(f"{ROW}:bn_scale_shift=none").obj.key_options()
    assert (
        "bn_scale_shift"
        not in _defense("t1-vm-after-nobn-none:bn_scale_shift=none").obj.key_options()
    )
    with pytest.raises(UserError, match="fixed placements"):
        registry.configured_defenses("parasite:pool=after")


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
    from paraeval.study.readings import absolute

    reading = parse_reading("pool=after,eps_unit=normalized,init=dirac")
    assert reading.name == "init=dirac,pool=after,eps_unit=normalized"
    over = absolute(reading, {"epochs": "1", "init": "kaiming"})
    assert over.selections("table1,t3-row12") == (
        "table1:epochs=1,pool=after,t3-row12:epochs=1,pool=after",
        "fgsm:eps_unit=normalized",
    )
    # a reading that sets an option back to its default is measured at the default, not at
    # the base's value
    back = absolute(parse_reading(f"lr={ParasiteReading().lr}"), {"lr": "0.5"})
    assert back.selections("table1")[0] == "table1"
    with pytest.raises(UserError, match="must be one of"):
        parse_reading("eps_unit=inches")
    with pytest.raises(UserError, match="init"):
        parse_reading("init=zeros")


def _score(name: str, distance: float):
    from paraeval.study.readings import Score

    rows = pd.DataFrame(
        {
            "m_adv_mean": [distance],
            "paper_m_adv": [0.0],
            "accuracy_mean": [99.0],
            "paper_accuracy": [99.0],
        }
    )
    return Score(parse_reading(name), "screen", [0], rows, pd.DataFrame())


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


def test_a_measured_seed_noise_sets_what_matters() -> None:
    """With the seed-to-seed SD measured, distances are in SD units and a move must exceed
    the 95 % bound of a difference of two one-seed distances (1.96 * sqrt(2) per metric)."""
    from paraeval.study.readings import SeedNoise

    noise = SeedNoise(accuracy=1.0, m_adv=2.0)
    scores = [_score("default", 20.0), _score("init=kaiming", 10.0), _score("pool=after", 15.0)]
    for found in scores:
        found.noise = noise
    assert scores[0].distance == pytest.approx(10.0)  # 0 / 1 + 20 / 2
    assert noise.matters_pp == pytest.approx(1.96 * 2**0.5 * 2)
    # kaiming moved 5 SD units (> 5.54? no): neither moved beyond the noise
    assert combinations(scores, noise) == []
    assert [r.name for r in combinations(scores, SeedNoise())] == ["init=kaiming,pool=after"]


def _with_epochs(name: str) -> str:
    """The absolute name of a reading over the tests' base (epochs=1)."""
    from paraeval.study.readings import absolute

    return absolute(parse_reading(name), {"epochs": "1"}).name


READINGS_ARGS = ["readings", "--rows", "t1-vm-after-nobn-none,t1-vm-after-bn-small",
                 "--base", "epochs=1", "--n-images", "40", "--confirm-seeds", "0",
                 "--no-combine"]  # fmt: skip


def test_readings_study_end_to_end_and_resume_after_sigkill(victims, tmp_path) -> None:
    """Two readings x two rows x one seed; killed after its first cell, resumed, complete."""
    work = tmp_path / "study"
    screen = ["--readings", "default;init=torch"]  # the default and the framework's init
    stored_at_kill = kill_after_first_cell([*READINGS_ARGS, *screen, "--work", str(work)], work)
    assert 1 <= stored_at_kill < 4, "the kill must land mid-study"

    again = run_cli(*READINGS_ARGS, *screen, "--work", str(work), "--reports", str(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    assert stored_cells(work) == 4  # nothing recomputed twice, nothing lost
    first_run = again.stderr.split("already stored")[0]
    assert f"{min(stored_at_kill, 2)} of 2 cell(s)" in first_run
    readings = pd.read_csv(tmp_path / "readings.csv")
    # names list what differs from the code's defaults: the base's epochs=1 included
    assert list(readings["reading"]) == ["epochs=1", _with_epochs("init=torch")]
    assert (readings["rows"] == 2).all() and (readings["seeds"] == 1).all()
    assert (readings["interval"] == "none (one seed)").all()
    assert readings["rows_both_in_pi"].isna().all()  # one run has no interval: no counts
    rows = pd.read_csv(tmp_path / "readings_rows.csv")
    assert len(rows) == 4
    report = run_cli("report", str(work))
    assert report.returncode == 0, report.stderr
    html = (work / "report.html").read_text()
    assert 'id="readings"' in html and f"<code>{_with_epochs('init=torch')}</code>" in html
    results = pd.read_csv(work / "results.csv")  # the last reading's run
    torch_init = results[results["defense"].str.contains("init=torch")]
    assert len(torch_init) == 2
    for _, measured in torch_init.iterrows():
        row = rows[
            (rows["reading"] == _with_epochs("init=torch"))
            & (rows["row"] == measured["defense"].split(":")[0])
        ]
        assert float(row["m_adv_mean"].iloc[0]) == pytest.approx(measured["m_adv"])
        assert pd.isna(row["m_adv_in_pi"].iloc[0])


def _cell(seed: int, accuracy: float, m_adv: float, victim: float = 98.9, ratio: float = 0.8):
    fit = {"mse_to_target": ratio * 0.04, "identity_mse": 0.04, "constant_mse": 0.083}
    return {
        "status": "ok",
        "defense": "t1-vm-after-nobn-none",
        "seed": seed,
        "accuracy": accuracy,
        "m_adv": m_adv,
        "victim_accuracy": victim,
        "paper_accuracy": 98.7,
        "paper_m_adv": 19.0,
        "parasite_fit": [fit],
    }


def test_m_adv_over_every_image_rescores_the_same_cells() -> None:
    """``m_adv_over=all`` counts the recovered examples over every image of the run (k/200),
    from the stored counts: the same cells, a lower M_adv, its own reading name."""
    from paraeval.study.readings import score

    cells = [
        {**_cell(s, 98.6, 50.0), "n_recovered": 90, "n_attacked": 196, "n_misclassified": 4}
        for s in range(2)
    ]
    reading = parse_reading("m_adv_over=all")
    assert reading.scoring == (("m_adv_over", "all"),) and reading.defense == ()
    assert reading.name == "m_adv_over=all" and reading.selections("table1") == ("table1", "fgsm")
    over_all = score(reading, "confirm", [0, 1], cells)
    over_adversarial = score(Reading(), "confirm", [0, 1], cells)
    assert over_all.rows["m_adv_mean"].iloc[0] == pytest.approx(45.0)  # 90 / 200
    assert over_adversarial.rows["m_adv_mean"].iloc[0] == pytest.approx(50.0)
    with pytest.raises(UserError, match=r"adversarial\|all"):
        parse_reading("m_adv_over=some")


def test_attacking_the_first_training_images_is_a_run_option_with_its_own_keys() -> None:
    from paraeval.study.readings import StudyConfig, run_config

    reading = parse_reading("attacked=train")
    assert reading.run == (("attacked", "train"),) and reading.attacked == "train"
    config = run_config(StudyConfig(rows="t1-vm-after-nobn-none"), reading, [0])
    assert config.attacked == "train" and config.defenses == "t1-vm-after-nobn-none"
    none, fgsm = registry.configured_defenses("none")[0], registry.configured_attacks("fgsm")[0]
    test_key = cell_key({"name": "vm"}, none, fgsm, 0, 200)
    assert cell_key({"name": "vm"}, none, fgsm, 0, 200, "test") == test_key  # keys kept
    assert cell_key({"name": "vm"}, none, fgsm, 0, 200, "train") != test_key


def test_the_attacked_split_gives_the_first_images_of_that_split(mnist) -> None:
    from paraeval.run.groups import attacked_images
    from paraeval.run.lookup import load_dataset

    data = load_dataset("mnist")
    images, labels = attacked_images(data, 5, "train")
    assert torch.equal(images, data.train_images[:5]) and torch.equal(labels, data.train_labels[:5])
    images, _ = attacked_images(data, 5, "test")
    assert torch.equal(images, data.test_images[:5])


def test_readings_csvs_and_verdict_from_scored_cells(tmp_path) -> None:
    """A row agrees when the paper value lies in the prediction interval for one run (wider
    than the interval of the mean), beside the do-nothing baseline; one seed gives no counts;
    the fit rule and the victim bound are read from the cells; the verdict comes from the
    written CSVs."""
    from scipy import stats

    from paraeval.study.readings import score, write_csvs

    values = [18.0, 19.5, 21.0]  # M_adv over 3 seeds; paper 19.0
    near = [_cell(s, 98.6 + 0.1 * s, v) for s, v in enumerate(values)]
    broken = [_cell(s, 80.0 + s, 2.0 + s, ratio=1.5) for s in range(3)]
    scores = [
        score(Reading(), "confirm", [0, 1, 2], near, "pipeline"),
        score(parse_reading("init=torch"), "confirm", [0, 1, 2], broken, "pipeline"),
        score(parse_reading("lr=1e-2"), "screen", [0], near[:1]),
    ]
    write_csvs(scores, tmp_path)
    lines = pd.read_csv(tmp_path / "readings.csv")
    rows = pd.read_csv(tmp_path / "readings_rows.csv")
    mean, sd = sum(values) / 3, pd.Series(values).std()
    half = stats.t.ppf(0.975, 2) * sd * (1 + 1 / 3) ** 0.5
    first = rows.iloc[0]
    assert first["m_adv_pi_low"] == pytest.approx(max(mean - half, 0.0), abs=1e-4)
    assert first["m_adv_pi_high"] == pytest.approx(mean + half, abs=1e-4)
    assert (
        first["m_adv_ci_high"] - first["m_adv_ci_low"]
        < first["m_adv_pi_high"] - first["m_adv_pi_low"]
    )
    assert rows.iloc[1]["accuracy_pi_low"] >= 0 and rows.iloc[1]["m_adv_pi_low"] == 0.0  # clipped
    assert list(lines["rows_both_in_pi"].iloc[:2]) == [1, 0]
    # do nothing: the victim's 98.9 % is within the accuracy half-width of 98.7; M_adv 0 is not
    # within the M_adv half-width of 19.0
    assert lines["baseline_rows_accuracy_in_pi"].iloc[0] == 1
    assert lines["baseline_rows_m_adv_in_pi"].iloc[0] == 0
    assert pd.isna(lines["rows_both_in_pi"].iloc[2]) and lines["interval"].iloc[2] == (
        "none (one seed)"
    )
    assert list(lines["breaks_victim"]) == [False, True, False]
    assert list(lines["approximates_identity"]) == [True, False, True]
    assert lines["median_fit_ratio"].iloc[1] == pytest.approx(1.5)
    assert lines["share_better_than_identity"].iloc[0] == 1.0
    assert list(lines["seed_scope"].iloc[:2]) == ["pipeline", "pipeline"]
    from paraeval.study.verdict import readings_sentences

    text = " ".join(readings_sentences(lines, rows))
    assert "3 readings" in text
    assert "better than the identity map as a rule" in text
    assert "default (3 pipeline seed(s)) 0.80" in text
    assert "init=torch (3 pipeline seed(s)): 1 rows" in text
    assert "default 1/1 [0; 1; 0.00 / 0.5 pp]" in text


def test_prediction_interval_matches_scipy_and_is_wider_than_the_mean_interval() -> None:
    from scipy import stats

    from paraeval.core.metrics import clipped, prediction_interval, seed_intervals, t_interval

    values = [97.0, 98.5, 99.2, 98.8, 99.9]
    mean, sd, low, high = prediction_interval(values)
    expected = stats.t.ppf(0.975, 4) * stats.tstd(values) * (1 + 1 / 5) ** 0.5
    assert (high - low) / 2 == pytest.approx(expected)
    assert mean == pytest.approx(sum(values) / 5) and sd == pytest.approx(stats.tstd(values))
    _m, _s, ci_low, ci_high = t_interval(values)
    assert (high - low) / (ci_high - ci_low) == pytest.approx((5 + 1) ** 0.5)
    assert clipped(low, high)[1] == 100.0 and clipped(low, high)[0] == pytest.approx(low)
    assert all(v != v for v in prediction_interval([50.0])[2:])  # NaN bounds for one value
    both = seed_intervals(values)  # the summary's and the readings' one computation
    assert (both.pi_low, both.ci_low) == pytest.approx((low, ci_low))
    assert both.pi_high == 100.0 and both.ci_high == min(ci_high, 100.0)


def test_summary_carries_the_prediction_interval_and_the_do_nothing_baseline() -> None:
    from paraeval.run.results import do_nothing_inside, paper_inside, summarise

    results = pd.DataFrame(
        [
            {
                "victim": "vm",
                "defense": "t1-vm-after-nobn-none",
                "attack": "fgsm",
                "mode": "transfer",
                "status": "ok",
                "seed": s,
                "accuracy": 98.0 + 0.2 * s,
                "m_adv": 10.0 + 4 * s,
                "paper_accuracy": 98.7,
                "paper_m_adv": 19.0,
                "victim_accuracy": 99.0,
                "robust_accuracy": None,
                "dataset": "mnist",
            }
            for s in range(4)
        ]
    )
    record = summarise(results).to_dict("records")[0]
    assert (
        record["m_adv_pi_low"]
        < record["m_adv_ci_low"]
        <= record["m_adv_ci_high"]
        < record["m_adv_pi_high"]
    )
    assert paper_inside(record, "m_adv") is True and paper_inside(record, "accuracy") is True
    assert do_nothing_inside(record, "accuracy") is True  # 99.0 vs 98.7, half-width > 0.3
    assert do_nothing_inside(record, "m_adv") is False


def test_generated_verdict_follows_a_changed_number(tmp_path) -> None:
    """Perturb one value of a copy of the committed CSVs: the regenerated sentences differ."""
    import shutil

    from paraeval.study.verdict import sentences

    from .conftest import ROOT

    for name in ("readings.csv", "readings_rows.csv"):
        shutil.copy2(ROOT / "reports" / name, tmp_path / name)
    for name in ("summary.csv", "results.csv"):
        shutil.copy2(ROOT / "reports" / "framework-default" / name, tmp_path / name)
    before = sentences(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    first = summary.index[summary["defense"] == "t1-vm-after-nobn-none"][0]
    summary.loc[first, "m_adv_mean"] = 99.0  # above every row's: the span moves
    summary.to_csv(tmp_path / "summary.csv", index=False)
    readings = pd.read_csv(tmp_path / "readings.csv")
    confirmed = readings.index[readings["stage"] == "confirm"][0]
    readings.loc[confirmed, "mean_abs_diff_m_adv"] += 3.0
    readings.to_csv(tmp_path / "readings.csv", index=False)
    after = sentences(tmp_path)
    changed = set(after) - set(before)
    assert any("M_adv spans" in s for s in changed)
    assert any(s.startswith("Confirmed readings") for s in changed)


def test_list_options_shows_every_reading_with_its_values() -> None:
    listed = run_cli("list", "defenses", "--options", env={"COLUMNS": "250"})
    assert listed.returncode == 0, listed.stderr
    for name in reading_options():
        assert f" {name} " in listed.stdout
    assert "torch|dirac|kaiming|glorot" in listed.stdout
    attacks = run_cli("list", "attacks", "--options", env={"COLUMNS": "250"})
    assert "eps_unit" in attacks.stdout and "(x the dataset's pixel std" in attacks.stdout


def test_reading_dataclass_round_trips_through_its_options() -> None:
    reading = ParasiteReading(
        init="glorot", epochs=3, lr=0.01, pool="after", select=3, max_drop=0.5, schedule="constant"
    )
    assert ParasiteReading.parse("x", {k: str(v) for k, v in reading.changed().items()}) == reading
    assert dataclasses.asdict(reading) == reading.as_options()


def test_readme_verdict_is_generated_from_the_committed_reports() -> None:
    """The README's verdict block is exactly what paraeval.study.verdict writes from reports/*.csv:
    a sentence the committed data contradicts fails this test."""
    from paraeval.study.verdict import FRAMEWORK_FOLDER, readme_block, readme_block_of

    from .conftest import ROOT

    assert readme_block_of(ROOT / "README.md") == readme_block(ROOT / "reports")
    full = readme_block(ROOT / "reports", short=False)
    assert readme_block_of(ROOT / "reports" / "README.md") == full
    assert full.count("| t") == 36  # every paper row in the generated Tables 1-3
    folder, label = FRAMEWORK_FOLDER
    superseded = readme_block(ROOT / "reports" / folder, short=False, label=label)
    assert readme_block_of(ROOT / "reports" / folder / "README.md") == superseded


def test_reading_names_are_absolute_and_studies_merge_their_lines(tmp_path) -> None:
    """A reading is named by what differs from the code's defaults whatever the study's base,
    so a second study's lines join the first's in one readings.csv (with merge)."""
    from paraeval.study.readings import absolute, score, write_csvs

    base = {"init": "kaiming"}
    assert absolute(Reading(), base).name == "init=kaiming"
    assert absolute(parse_reading("pool=after"), base).name == "init=kaiming,pool=after"
    assert absolute(parse_reading("init=kaiming"), {}).name == "init=kaiming"
    default_init = ParasiteReading().init
    assert absolute(parse_reading(f"init={default_init}"), base).name == "default"
    cells = [_cell(s, 98.0, 20.0 + s) for s in range(2)]
    write_csvs([score(absolute(Reading(), base), "screen", [0], cells[:1])], tmp_path)
    write_csvs([score(Reading(), "confirm", [1, 2], cells)], tmp_path, merge=True)
    lines = pd.read_csv(tmp_path / "readings.csv")
    assert list(zip(lines["reading"], lines["stage"], strict=True)) == [
        ("init=kaiming", "screen"),
        ("default", "confirm"),
    ]
    assert len(pd.read_csv(tmp_path / "readings_rows.csv")) == 2
    write_csvs([score(Reading(), "confirm", [1, 2], cells)], tmp_path, merge=True)
    assert len(pd.read_csv(tmp_path / "readings.csv")) == 2  # replaced, not duplicated


def test_a_row_spelled_with_other_options_is_one_row() -> None:
    """The same reading's cells may come from runs that spelled its options differently
    (a stored seed from an earlier base): they are one row, their seeds pooled."""
    from paraeval.study.readings import score

    cells = [
        _cell(0, 98.0, 20.0),
        {**_cell(1, 98.2, 21.0), "defense": "t1-vm-after-nobn-none:select=1"},
    ]
    scored = score(Reading(), "confirm", [0, 1], cells)
    assert len(scored.rows) == 1 and scored.rows["accuracy_mean"].iloc[0] == pytest.approx(98.1)


def test_the_study_measures_each_reading_over_its_base_once(tmp_path) -> None:
    """A reading that sets an option of the base back to the code's default is measured at the
    default: the grid the runner gets spells exactly the reading's options."""
    from paraeval.run.runner import RunResult
    from paraeval.study.readings import StudyConfig, study

    asked: list[str] = []

    def runner(config):
        asked.append(config.defenses)
        cells = [{**_cell(0, 98.0, 20.0), "defense": f"t1-vm-after-nobn-none:{config.defenses}"}]
        return RunResult(rows=cells)

    default = ParasiteReading()
    base = {"init": "kaiming"}
    config = StudyConfig(
        work=tmp_path,
        rows="t1-vm-after-nobn-none",
        base=base,
        confirm_seeds=[],
        readings=[Reading(), parse_reading(f"init={default.init}")],
    )
    study(config, runner)
    assert asked == ["t1-vm-after-nobn-none:init=kaiming", "t1-vm-after-nobn-none"]


def test_the_base_line_shares_the_studys_noise_units(tmp_path) -> None:
    """The base's combined distance is in the same units as every other line of its study."""
    from paraeval.run.runner import RunResult
    from paraeval.study.readings import StudyConfig, study

    def runner(config):
        cells = [{**_cell(s, 98.0 + s, 20.0 + 2 * s), "seed": s} for s in config.seeds]
        return RunResult(rows=cells)

    config = StudyConfig(
        work=tmp_path,
        rows="t1-vm-after-nobn-none",
        readings=[],
        screen_seeds=[],
        confirm_seeds=[1, 2, 3],
        seed_scope="parasite",
        confirm=[parse_reading("select=1")],
    )
    scores = study(config, runner)
    assert {s.noise for s in scores} == {scores[0].noise} and scores[0].noise.m_adv
    lines = pd.read_csv(tmp_path / "readings.csv")
    assert lines["noise_sd_m_adv"].notna().all()


def test_list_options_leaves_out_what_a_defense_refuses() -> None:
    from paraeval.cli.listing import option_rows

    _columns, rows = option_rows(defenses=True)
    listed = {(applies.split(" and ")[0], option) for applies, option, *_ in rows}
    assert ("mlp-nobn-none-s0.1", "pool") not in listed
    assert ("mlp-nobn-none-s0.1", "select") in listed
    assert ("dynamic-parasite", "row12") not in listed and ("parasite", "pool") not in listed
    assert ("t1-vm-after-nobn-small", "whole_site") in listed  # the paper rows take them all


def test_row12_under_the_other_grouping_is_refused_not_ignored() -> None:
    with pytest.raises(UserError, match="no line is left dangling"):
        registry.configured_defenses("t3-row12:table3_lines=previous,row12=3")


def test_the_largest_one_factor_move_is_judged_against_its_own_base() -> None:
    """A screen from another base (the framework default's readings name its options too) is
    not compared with the current default's screen line."""
    from paraeval.study.verdict_readings import _noise_sentences

    screen = pd.DataFrame(
        [
            {"reading": "default", "mean_m_adv": 19.0, "mean_accuracy": 98.9},
            {"reading": "whole_side=16", "mean_m_adv": 21.0, "mean_accuracy": 98.9},
            {
                "reading": "init=torch,lr=0.001,select=1,eps_unit=normalized",
                "mean_m_adv": 50.6,
                "mean_accuracy": 91.5,
            },
        ]
    ).assign(seeds=1)
    (sentence,) = _noise_sentences(pd.DataFrame({"reading": []}), screen)
    assert "most is whole_side=16: 19.0 % (default) -> 21.0 %" in sentence
