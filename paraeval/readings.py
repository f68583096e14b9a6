"""`paraeval readings`: how each reading of the paper's open choices moves its 36 rows.

The paper leaves choices open (initialisation, training budget, where pooling falls, the scale
of FGSM's eps, ...; :mod:`paraeval.defenses.reading` and the ``eps_unit`` option of `fgsm`).
This study runs the paper's rows (FGSM, transfer) under each reading into one resumable store:

1. **screen**: the base reading (the defaults, or ``--base``) and every one-factor departure
   from it (each non-default value of each option), with the screen seeds;
2. **combinations**: the one-factor readings that moved the rows *toward* the paper by at least
   :data:`MATTERS_PP` of mean |measured - paper| M_adv, at most one value per option, the best
   :data:`TOP_FACTORS` of them combined pairwise and all together (the screen decides, not us);
3. **confirmation**: the base reading, the :data:`CONFIRMED` readings closest to the paper
   (smallest mean |measured - paper| M_adv) and :data:`ALWAYS_CONFIRMED` (the previous
   default) with the confirmation seeds.

It writes ``readings.csv`` (one line per reading and stage: how many rows have the paper's
values inside the interval, mean distances, rank correlation) and ``readings_rows.csv`` (per
reading and row: measured interval beside the paper value). With one seed the interval is the
cell's Wilson 95 % interval (binomial uncertainty of the 10,000-image accuracy and of M_adv
over its adversarial examples); with several seeds the Student t 95 % interval over seeds,
as in summary.csv. A reading's name lists its options; a cell's key contains them, so every
reading's cells are computed once and a killed study resumes where it stopped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from .attacks.fgsm import EPS_UNITS
from .defenses.reading import PREVIOUS_DEFAULT, ParasiteReading, reading_options, shown_value
from .errors import UserError
from .metrics import t_interval
from .paper import ROWS_BY_NAME
from .runner import RunConfig, RunResult, run
from .training import training_failure

#: The attack the paper's tables were measured with, and its reading option.
ATTACK = "fgsm"
ATTACK_OPTIONS = {"eps_unit": EPS_UNITS}
#: Departures tried for the numeric options (their defaults are 'auto' and 1e-3).
NUMERIC_ALTERNATIVES = {"epochs": ("3",), "lr": ("1e-2",)}
#: A one-factor reading "matters" when it moves mean |Δ M_adv| toward the paper by this much.
MATTERS_PP = 2.0
TOP_FACTORS = 3
CONFIRMED = 3
#: Confirmed whatever the screen says: the project's previous default (identity init and
#: lr 1e-2, chosen by a fit study before the default rule), so the change of default is
#: measured with the same seeds.
ALWAYS_CONFIRMED = (PREVIOUS_DEFAULT,)
PAPER_ROWS = "table1,table2,table3"

READINGS_COLUMNS = [
    "reading", "stage", "seeds", "interval", "rows", "rows_accuracy_in_ci", "rows_m_adv_in_ci",
    "rows_both_in_ci", "mean_abs_diff_accuracy", "mean_abs_diff_m_adv", "spearman_m_adv",
    "mean_m_adv", "mean_accuracy", "failed_cells", "cells_with_failed_parasite",
]  # fmt: skip


@dataclass(frozen=True)
class Reading:
    """One reading: options of the paper-row defenses and of the attack, relative to the base."""

    defense: tuple[tuple[str, str], ...] = ()
    attack: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        parts = [f"{k}={v}" for k, v in (*self.defense, *self.attack)]
        return ",".join(parts) or "default"

    @property
    def factors(self) -> set[str]:
        return {k for k, _ in (*self.defense, *self.attack)}

    def combined(self, other: Reading) -> Reading:
        return Reading(tuple(sorted({*self.defense, *other.defense})),
                       tuple(sorted({*self.attack, *other.attack})))  # fmt: skip

    def selections(self, base: dict[str, str], rows: str) -> tuple[str, str]:
        """(--defenses, --attacks) selection strings of this reading over `base`."""
        options = {**base, **dict(self.defense)}
        suffix = ",".join(f"{k}={v}" for k, v in options.items())
        defenses = ",".join(f"{item}:{suffix}" if suffix else item for item in rows.split(","))
        attack = ",".join(f"{k}={v}" for k, v in self.attack)
        return defenses, f"{ATTACK}:{attack}" if attack else ATTACK


def parse_reading(text: str) -> Reading:
    """'default' or 'init=dirac,eps_unit=normalized' -> a Reading (validated)."""
    if text.strip() in ("", "default"):
        return Reading()
    defense, attack = [], []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise UserError(f"reading item {item!r} is not option=value")
        if key in ATTACK_OPTIONS:
            if value not in ATTACK_OPTIONS[key]:
                raise UserError(f"{key}={value!r} must be one of {'|'.join(ATTACK_OPTIONS[key])}")
            attack.append((key, value))
        else:
            ParasiteReading.parse("reading", {key: value})  # validates, raises UserError
            defense.append((key, value))
    return Reading(tuple(sorted(defense)), tuple(sorted(attack)))


def one_factor_readings(base: dict[str, str]) -> list[Reading]:
    """Every single departure from `base`: each other value of each option."""
    current = ParasiteReading.parse("base", base)
    readings = []
    for name, option in reading_options().items():
        values = option.values if option.values is not None else NUMERIC_ALTERNATIVES[name]
        shown = shown_value(getattr(current, name))
        readings += [Reading(((name, str(v)),)) for v in values if str(v) != shown]
    for name, attack_values in ATTACK_OPTIONS.items():
        readings += [Reading((), ((name, v),)) for v in attack_values[1:]]
    return readings


@dataclass
class Score:
    """How one reading's rows compare with the paper (one line of readings.csv)."""

    reading: Reading
    stage: str
    seeds: list[int]
    rows: pd.DataFrame  # one line per paper row (readings_rows.csv)
    failed_cells: int = 0
    cells_with_failed_parasite: int = 0

    @property
    def distance(self) -> float:
        """Mean |measured - paper| M_adv over rows (pp): the study's distance to the paper."""
        return float((self.rows["m_adv_mean"] - self.rows["paper_m_adv"]).abs().mean())

    def line(self) -> dict[str, Any]:
        rows = self.rows
        both = rows["accuracy_in_ci"] & rows["m_adv_in_ci"]
        rho = (
            stats.spearmanr(rows["m_adv_mean"], rows["paper_m_adv"]).statistic
            if len(rows) > 2 else math.nan
        )  # fmt: skip
        return {
            "reading": self.reading.name,
            "stage": self.stage,
            "seeds": len(self.seeds),
            "interval": "t over seeds" if len(self.seeds) > 1 else "Wilson (one seed)",
            "rows": len(rows),
            "rows_accuracy_in_ci": int(rows["accuracy_in_ci"].sum()),
            "rows_m_adv_in_ci": int(rows["m_adv_in_ci"].sum()),
            "rows_both_in_ci": int(both.sum()),
            "mean_abs_diff_accuracy": round(
                float((rows["accuracy_mean"] - rows["paper_accuracy"]).abs().mean()), 3
            ),
            "mean_abs_diff_m_adv": round(self.distance, 3),
            "spearman_m_adv": round(float(rho), 3),
            "mean_m_adv": round(float(rows["m_adv_mean"].mean()), 3),
            "mean_accuracy": round(float(rows["accuracy_mean"].mean()), 3),
            "failed_cells": self.failed_cells,
            "cells_with_failed_parasite": self.cells_with_failed_parasite,
        }


def score(reading: Reading, stage: str, seeds: list[int], cells: list[dict[str, Any]]) -> Score:
    """Score the FGSM-transfer cells of one reading (failed cells are counted, not scored)."""
    ok = [c for c in cells if c["status"] == "ok" and c.get("paper_m_adv") is not None]
    records = []
    for defense, group in itertools.groupby(
        sorted(ok, key=lambda c: c["defense"]), key=lambda c: c["defense"]
    ):
        records.append(_row_record(defense.split(":")[0], list(group)))
    failed_parasite = sum(
        any(training_failure(fit) for fit in cell.get("parasite_fit") or []) for cell in ok
    )
    frame = pd.DataFrame(records)
    if frame.empty:
        raise UserError(f"reading {reading.name}: no paper row was measured")
    frame.insert(0, "reading", reading.name)
    frame.insert(1, "stage", stage)
    frame.insert(2, "seeds", len(seeds))
    return Score(reading, stage, seeds, frame,
                 failed_cells=sum(c["status"] == "failed" for c in cells),
                 cells_with_failed_parasite=failed_parasite)  # fmt: skip


def _row_record(name: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    row = ROWS_BY_NAME[name]
    record: dict[str, Any] = {"victim": row.victim, "row": name, "table": row.table}
    for metric, paper in (("accuracy", row.accuracy), ("m_adv", row.m_adv)):
        values = [float(c[metric]) for c in cells]
        if len(values) > 1:
            mean, _std, low, high = t_interval(values)
        else:
            mean = values[0]
            low, high = (float(cells[0][f"{metric}_wilson_{s}"]) for s in ("low", "high"))
        record.update({
            f"paper_{metric}": paper, f"{metric}_mean": round(mean, 4),
            f"{metric}_low": round(low, 4), f"{metric}_high": round(high, 4),
            f"{metric}_in_ci": bool(low <= paper <= high),
        })  # fmt: skip
    return record


@dataclass
class StudyConfig:
    """What `paraeval readings` runs."""

    work: Path = Path("runs/readings")
    rows: str = PAPER_ROWS
    base: dict[str, str] = field(default_factory=dict)
    #: Readings of the screen; None: the base and every one-factor departure from it.
    readings: list[Reading] | None = None
    screen_seeds: list[int] = field(default_factory=lambda: [0])
    confirm_seeds: list[int] = field(default_factory=lambda: list(range(5)))
    combine: bool = True
    #: Readings to confirm; None: the base, the closest to the paper and ALWAYS_CONFIRMED.
    confirm: list[Reading] | None = None
    n_images: int = 200
    data_dir: Path | None = None
    jobs: int | None = None
    #: Where the groups of cells run (`--executor`).
    executor: str = "local"
    #: Where the models compute (`--device`).
    device: str = "auto"
    command: str = ""


Runner = Callable[[RunConfig], RunResult]


def study(config: StudyConfig, runner: Runner = run) -> list[Score]:
    """Screen, combine, confirm (see the module docstring); write the two CSVs into work."""
    scores = [_measure(config, r, "screen", config.screen_seeds, runner) for r in screen(config)]
    if config.combine:
        scores += [
            _measure(config, r, "combination", config.screen_seeds, runner)
            for r in combinations(scores)
        ]
    if config.confirm_seeds and config.confirm_seeds != config.screen_seeds:
        confirmed = config.confirm if config.confirm is not None else _to_confirm(config, scores)
        scores += [_measure(config, r, "confirm", config.confirm_seeds, runner) for r in confirmed]
    write_csvs(scores, config.work)
    return scores


def _to_confirm(config: StudyConfig, scores: list[Score]) -> list[Reading]:
    """The base, the CONFIRMED readings closest to the paper, and ALWAYS_CONFIRMED."""
    closest = sorted((s for s in scores if s.reading != Reading()), key=lambda s: s.distance)
    always = [parse_reading(r) for r in ALWAYS_CONFIRMED if config.readings is None]
    picked = [s.reading for s in closest[:CONFIRMED]]
    return list(dict.fromkeys([Reading(), *picked, *always]))


def combinations(scores: Iterable[Score]) -> list[Reading]:
    """Pairs and the whole set of the best one-factor readings that moved toward the paper."""
    scores = list(scores)
    base = next((s for s in scores if s.reading == Reading()), None)
    if base is None:
        return []
    helpful = sorted(
        (s for s in scores if len(s.reading.factors) == 1
         and base.distance - s.distance >= MATTERS_PP),
        key=lambda s: s.distance,
    )  # fmt: skip
    chosen: list[Reading] = []
    for candidate in helpful:
        if not any(candidate.reading.factors & r.factors for r in chosen):
            chosen.append(candidate.reading)
    chosen = chosen[:TOP_FACTORS]
    combos = [a.combined(b) for a, b in itertools.combinations(chosen, 2)]
    if len(chosen) > 2:
        whole = chosen[0]
        for reading in chosen[1:]:
            whole = whole.combined(reading)
        combos.append(whole)
    return combos


def _measure(
    config: StudyConfig, reading: Reading, stage: str, seeds: list[int], runner: Runner
) -> Score:
    result = runner(run_config(config, reading, seeds))
    return score(reading, stage, seeds, result.rows)


def run_config(config: StudyConfig, reading: Reading, seeds: list[int]) -> RunConfig:
    """The grid that measures `reading` on the study's rows."""
    defenses, attacks = reading.selections(config.base, config.rows)
    victims = sorted({ROWS_BY_NAME[n].victim for n in _row_names(config.rows)})
    return RunConfig(
        victims=victims, defenses=defenses, attacks=attacks, seeds=seeds, out=config.work,
        data_dir=config.data_dir, n_images=config.n_images, jobs=config.jobs,
        executor=config.executor, device=config.device,
        command=config.command or f"paraeval readings ({reading.name})",
    )  # fmt: skip


def screen_configs(config: StudyConfig) -> list[RunConfig]:
    """The screen's grids (what ``--dry-run`` checks; later stages depend on its results)."""
    return [run_config(config, reading, config.screen_seeds) for reading in screen(config)]


def screen(config: StudyConfig) -> list[Reading]:
    """The readings the screen measures: the given ones, else the base and every one-factor
    departure from it (the base is validated first)."""
    ParasiteReading.parse("--base", config.base)
    if config.readings is not None:
        return config.readings
    return [Reading(), *one_factor_readings(config.base)]


def _row_names(rows: str) -> list[str]:
    from . import registry

    return [e.name for e in registry.defenses().select(rows) if e.name in ROWS_BY_NAME]


def write_csvs(scores: list[Score], work: Path) -> None:
    """readings.csv and readings_rows.csv (temporary name, then rename)."""
    lines = pd.DataFrame([s.line() for s in scores], columns=READINGS_COLUMNS)
    rows = pd.concat([s.rows for s in scores], ignore_index=True)
    for frame, name in ((lines, "readings.csv"), (rows, "readings_rows.csv")):
        tmp = work / f"{name}.tmp"
        frame.to_csv(tmp, index=False)
        tmp.replace(work / name)
