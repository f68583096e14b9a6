"""The scores of `paraeval readings` (:mod:`paraeval.study.readings`): how one reading's cells
compare
with the paper, and the two CSVs they are written to.

A reading is named by every option that differs from the code's defaults (:func:`absolute`).
Its rows are judged with the 95 % prediction interval for one run (the paper's numbers are
single draws of its pipeline), clipped to [0, 100], beside the interval of the mean and the
do-nothing baseline (the unprotected victim judged with the row's half-width); its parasites'
fit to x + N is summarised against the identity map (rule 3, docs/readings.md), and a row
whose protected accuracy falls more than BREAKS_VICTIM_PP below its victim's breaks it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from scipy import stats

from paraeval.attacks.fgsm import EPS_UNITS
from paraeval.core.metrics import (
    M_ADV_DENOMINATORS,
    inside,
    m_adv_over,
    seed_intervals,
    within_half_width,
)
from paraeval.defenses.parasite_reading import ParasiteReading, reading_options, shown_value
from paraeval.errors import UserError
from paraeval.run.groups import ATTACKED_SPLITS
from paraeval.run.results import parasite_fits
from paraeval.study.paper import BREAKS_VICTIM_PP, ROWS_BY_NAME
from paraeval.training.parasites import ParasiteFit, constant_ratio, fit_ratio, training_failure

#: The attack the paper's tables were measured with, and its reading option.
ATTACK = "fgsm"
ATTACK_OPTIONS = {"eps_unit": EPS_UNITS}
#: Options of how stored cells are counted (no new measurement, no cell key): M_adv's
#: denominator, the adversarial examples (default, Sec. 6.2's wording) or every attacked
#: image (each published M_adv is a multiple of 0.5 % = k/200: "over the first 200 images").
SCORING_OPTIONS = {"m_adv_over": M_ADV_DENOMINATORS}
#: Options of the run itself (new cells): which split's first images are attacked.
RUN_OPTIONS = {"attacked": ATTACKED_SPLITS}
#: "Matters" when no seed-to-seed SD was measured (the base has fewer than 2 confirm seeds).
MATTERS_PP = 2.0
PREDICTION = "95 % prediction interval for one run (t)"
NO_INTERVAL = "none (one seed)"
METRICS = ("accuracy", "m_adv")

READINGS_COLUMNS = [
    "reading", "stage", "seeds", "seed_scope", "interval", "rows",
    "rows_accuracy_in_pi", "rows_m_adv_in_pi", "rows_both_in_pi", "rows_both_in_ci_of_mean",
    "baseline_rows_accuracy_in_pi", "baseline_rows_m_adv_in_pi", "baseline_rows_both_in_pi",
    "mean_abs_diff_accuracy", "mean_abs_diff_m_adv", "combined_distance", "pareto",
    "spearman_m_adv", "mean_m_adv", "mean_accuracy", "max_accuracy_drop",
    "rows_breaking_victim", "breaks_victim", "median_fit_ratio", "share_better_than_identity",
    "share_better_than_constant", "approximates_identity", "noise_sd_accuracy",
    "noise_sd_m_adv", "failed_cells", "cells_with_failed_parasite",
]  # fmt: skip


@dataclass(frozen=True)
class Reading:
    """One reading: options of the paper-row defenses and of the attack, relative to the base."""

    defense: tuple[tuple[str, str], ...] = ()
    attack: tuple[tuple[str, str], ...] = ()
    scoring: tuple[tuple[str, str], ...] = ()
    run: tuple[tuple[str, str], ...] = ()

    @property
    def items(self) -> tuple[tuple[str, str], ...]:
        return (*self.defense, *self.attack, *self.scoring, *self.run)

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.items) or "default"

    @property
    def factors(self) -> set[str]:
        return {k for k, _ in self.items}

    def combined(self, other: Reading) -> Reading:
        return Reading(
            tuple(sorted({*self.defense, *other.defense})),
            tuple(sorted({*self.attack, *other.attack})),
            tuple(sorted({*self.scoring, *other.scoring})),
            tuple(sorted({*self.run, *other.run})),
        )

    @property
    def attacked(self) -> str:
        """Which split's first images the reading's cells attack (``attacked``)."""
        return dict(self.run).get("attacked", ATTACKED_SPLITS[0])

    @property
    def m_adv_denominator(self) -> str:
        """Which images M_adv is counted over (``m_adv_over``; see SCORING_OPTIONS)."""
        return dict(self.scoring).get("m_adv_over", M_ADV_DENOMINATORS[0])

    def selections(self, rows: str) -> tuple[str, str]:
        """(--defenses, --attacks) selection strings of this reading, an absolute one
        (:func:`absolute`): its options on top of the code's defaults, no base merged in (a
        base's value of an option the reading sets back to its default would win)."""
        suffix = ",".join(f"{k}={v}" for k, v in self.defense)
        defenses = ",".join(f"{item}:{suffix}" if suffix else item for item in rows.split(","))
        attack = ",".join(f"{k}={v}" for k, v in self.attack)
        return defenses, f"{ATTACK}:{attack}" if attack else ATTACK


def parse_reading(text: str) -> Reading:
    """'default' or 'init=dirac,eps_unit=normalized' -> a Reading (validated)."""
    if text.strip() in ("", "default"):
        return Reading()
    defense: list[tuple[str, str]] = []
    attack: list[tuple[str, str]] = []
    scoring: list[tuple[str, str]] = []
    run: list[tuple[str, str]] = []
    parts = {
        **dict.fromkeys(ATTACK_OPTIONS, attack),
        **dict.fromkeys(SCORING_OPTIONS, scoring),
        **dict.fromkeys(RUN_OPTIONS, run),
    }
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise UserError(f"reading item {item!r} is not option=value")
        fixed = {**ATTACK_OPTIONS, **SCORING_OPTIONS, **RUN_OPTIONS}
        if key in fixed:
            if value not in fixed[key]:
                raise UserError(f"{key}={value!r} must be one of {'|'.join(fixed[key])}")
            parts[key].append((key, value))
        else:
            ParasiteReading.parse("reading", {key: value})  # validates, raises UserError
            defense.append((key, value))
    return Reading(
        tuple(sorted(defense)), tuple(sorted(attack)), tuple(sorted(scoring)), tuple(sorted(run))
    )


def absolute(reading: Reading, base: dict[str, str]) -> Reading:
    """`reading` over `base`, named by every option that differs from the code's defaults:
    the same reading has the same name whatever base a study started from (studies from
    different bases share one readings.csv). ``default`` is the code's default."""
    defaults = ParasiteReading()
    given = {**base, **dict(reading.defense)}
    parsed = ParasiteReading.parse("reading", given)
    differing = tuple(
        (name, shown_value(getattr(parsed, name)))
        for name in reading_options()
        if name in given and getattr(parsed, name) != getattr(defaults, name)
    )
    return Reading(differing, reading.attack, reading.scoring, reading.run)


@dataclass(frozen=True)
class SeedNoise:
    """The seed-to-seed SD (pp) of a one-seed distance to the paper, per metric, measured on
    the base reading's confirmation seeds (None: fewer than 2 seeds were measured)."""

    accuracy: float | None = None
    m_adv: float | None = None

    @property
    def matters_pp(self) -> float:
        """What a one-factor move of the combined distance must exceed (in SD units), or
        MATTERS_PP of M_adv when no SD was measured (see :func:`matters_threshold`)."""
        return matters_threshold(self)

    def combined(self, accuracy: float, m_adv: float) -> float:
        """Both distances in units of their seed-to-seed SD, summed (pp when unmeasured)."""
        if self.accuracy and self.m_adv:
            return accuracy / self.accuracy + m_adv / self.m_adv
        return accuracy + m_adv


def matters_threshold(noise: SeedNoise) -> float:
    """A move "matters" beyond the 95 % bound of the difference of two one-seed distances:
    1.96 * sqrt(2) in SD units for each metric's combined share, i.e. 1.96 * sqrt(2) * 2 on the
    sum of both; MATTERS_PP (in pp of the summed distances) when no SD was measured."""
    if noise.accuracy and noise.m_adv:
        return 1.96 * math.sqrt(2) * 2
    return MATTERS_PP


@dataclass
class Score:
    """How one reading's rows compare with the paper (one line of readings.csv)."""

    reading: Reading
    stage: str
    seeds: list[int]
    rows: pd.DataFrame  # one line per paper row (readings_rows.csv)
    per_seed: pd.DataFrame  # one line per (row, seed): accuracy, m_adv, victim_accuracy
    fits: list[ParasiteFit] = field(default_factory=list)
    seed_scope: str = "parasite"
    failed_cells: int = 0
    cells_with_failed_parasite: int = 0
    noise: SeedNoise = field(default_factory=SeedNoise)

    @property
    def distances(self) -> tuple[float, float]:
        """Mean |measured mean - paper| (pp) over rows, for accuracy and for M_adv."""
        rows = self.rows
        return tuple(  # type: ignore[return-value]
            float((rows[f"{m}_mean"] - rows[f"paper_{m}"]).abs().mean()) for m in METRICS
        )

    @property
    def distance(self) -> float:
        """The study's distance to the paper: both metrics, each in units of its measured
        seed-to-seed SD (never M_adv alone)."""
        return self.noise.combined(*self.distances)

    def seed_distances(self) -> pd.DataFrame:
        """Per seed: the one-seed distance to the paper of each metric (pp)."""
        frame = self.per_seed.assign(
            **{f"{m}_abs": lambda f, m=m: (f[m] - f[f"paper_{m}"]).abs() for m in METRICS}
        )
        return frame.groupby("seed")[[f"{m}_abs" for m in METRICS]].mean()

    def line(self) -> dict[str, Any]:
        rows = self.rows
        several = len(self.seeds) > 1
        counts: dict[str, Any] = {}
        for prefix, column in (("rows", "in_pi"), ("baseline_rows", "baseline_in_pi")):
            inside = {m: rows[f"{m}_{column}"].astype("boolean") for m in METRICS}
            for m in METRICS:
                counts[f"{prefix}_{m}_in_pi"] = int(inside[m].sum()) if several else None
            both = inside["accuracy"] & inside["m_adv"]
            counts[f"{prefix}_both_in_pi"] = int(both.sum()) if several else None
        in_ci = rows["accuracy_in_ci"].astype("boolean") & rows["m_adv_in_ci"].astype("boolean")
        rho = (
            stats.spearmanr(rows["m_adv_mean"], rows["paper_m_adv"]).statistic
            if len(rows) > 2
            else math.nan
        )
        ratios = [fit_ratio(f) for f in self.fits]
        constants = [r for r in (constant_ratio(f) for f in self.fits) if not math.isnan(r)]
        median_ratio = float(pd.Series(ratios).median()) if ratios else math.nan
        breaking = int(rows["breaks_victim"].sum())
        acc, m_adv = self.distances
        return {
            "reading": self.reading.name,
            "stage": self.stage,
            "seeds": len(self.seeds),
            "seed_scope": self.seed_scope,
            "interval": PREDICTION if several else NO_INTERVAL,
            "rows": len(rows),
            **counts,
            "rows_both_in_ci_of_mean": int(in_ci.sum()) if several else None,
            "mean_abs_diff_accuracy": round(acc, 3),
            "mean_abs_diff_m_adv": round(m_adv, 3),
            "combined_distance": round(self.distance, 3),
            "pareto": None,  # set over all lines by write_csvs
            "spearman_m_adv": round(float(rho), 3),
            "mean_m_adv": round(float(rows["m_adv_mean"].mean()), 3),
            "mean_accuracy": round(float(rows["accuracy_mean"].mean()), 3),
            "max_accuracy_drop": round(float(rows["accuracy_drop"].max()), 3),
            "rows_breaking_victim": breaking,
            "breaks_victim": breaking > 0,
            "median_fit_ratio": round(median_ratio, 4),
            "share_better_than_identity": _share(ratios),
            "share_better_than_constant": _share(constants),
            "approximates_identity": bool(median_ratio < 1),
            "noise_sd_accuracy": _rounded(self.noise.accuracy),
            "noise_sd_m_adv": _rounded(self.noise.m_adv),
            "failed_cells": self.failed_cells,
            "cells_with_failed_parasite": self.cells_with_failed_parasite,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _share(ratios: list[float]) -> float:
    """The share of parasites whose ratio is below 1 (NaN when none was recorded)."""
    return round(sum(r < 1 for r in ratios) / len(ratios), 4) if ratios else math.nan


def score(
    reading: Reading,
    stage: str,
    seeds: list[int],
    cells: list[dict[str, Any]],
    seed_scope: str = "parasite",
) -> Score:
    """Score the FGSM-transfer cells of one reading (failed cells are counted, not scored),
    M_adv counted over the reading's denominator (``m_adv_over``)."""
    over = reading.m_adv_denominator
    ok = [
        {**c, "m_adv": m_adv_over(c, over)}
        for c in cells
        if c["status"] == "ok" and c.get("paper_m_adv") is not None
    ]
    records = []

    def row_of(cell: dict[str, Any]) -> str:  # the same row under any spelling of its options
        return str(cell["defense"]).split(":")[0]

    for name, group in itertools.groupby(sorted(ok, key=row_of), key=row_of):
        records.append(_row_record(name, list(group)))
    fits = [fit for cell in ok for fit in parasite_fits(cell)]
    failed_parasite = sum(any(training_failure(fit) for fit in parasite_fits(cell)) for cell in ok)
    frame = pd.DataFrame(records)
    if frame.empty:
        raise UserError(f"reading {reading.name}: no paper row was measured")
    frame.insert(0, "reading", reading.name)
    frame.insert(1, "stage", stage)
    frame.insert(2, "seeds", len(seeds))
    frame.insert(3, "seed_scope", seed_scope)
    per_seed = pd.DataFrame(
        [
            {
                "row": c["defense"].split(":")[0],
                "seed": c["seed"],
                "accuracy": float(c["accuracy"]),
                "m_adv": float(c["m_adv"]),
                "victim_accuracy": float(c["victim_accuracy"]),
                "paper_accuracy": float(c["paper_accuracy"]),
                "paper_m_adv": float(c["paper_m_adv"]),
            }
            for c in ok
        ]
    )
    return Score(
        reading,
        stage,
        seeds,
        frame,
        per_seed,
        fits,
        seed_scope,
        failed_cells=sum(c["status"] == "failed" for c in cells),
        cells_with_failed_parasite=failed_parasite,
    )


def _row_record(name: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's measured values beside the paper's: mean, SD, the prediction interval for one
    run and the interval of the mean (both clipped to [0, 100]; NaN for one seed), whether
    the paper value lies inside each, and the do-nothing baseline judged the same way."""
    row = ROWS_BY_NAME[name]
    record: dict[str, Any] = {"victim": row.victim, "row": name, "table": row.table}
    victim_accuracy = float(pd.Series([float(c["victim_accuracy"]) for c in cells]).mean())
    do_nothing = {"accuracy": victim_accuracy, "m_adv": 0.0}
    for metric, paper in (("accuracy", row.accuracy), ("m_adv", row.m_adv)):
        values = [float(c[metric]) for c in cells]
        mean, std, ci_low, ci_high, pi_low, pi_high = seed_intervals(values)
        record.update(
            {
                f"paper_{metric}": paper,
                f"{metric}_mean": round(mean, 4),
                f"{metric}_sd": round(std, 4),
                f"{metric}_pi_low": round(pi_low, 4),
                f"{metric}_pi_high": round(pi_high, 4),
                f"{metric}_ci_low": round(ci_low, 4),
                f"{metric}_ci_high": round(ci_high, 4),
                f"{metric}_in_pi": inside(paper, pi_low, pi_high),
                f"{metric}_in_ci": inside(paper, ci_low, ci_high),
                f"{metric}_do_nothing": round(do_nothing[metric], 4),
                f"{metric}_baseline_in_pi": within_half_width(
                    paper, do_nothing[metric], pi_low, pi_high
                ),
            }
        )
    drop = victim_accuracy - record["accuracy_mean"]
    record.update(accuracy_drop=round(drop, 4), breaks_victim=bool(drop > BREAKS_VICTIM_PP))
    ratios = [fit_ratio(fit) for c in cells for fit in parasite_fits(c)]
    record["median_fit_ratio"] = round(float(pd.Series(ratios).median()), 4) if ratios else None
    return record
