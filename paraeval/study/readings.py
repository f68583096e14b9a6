"""`paraeval readings`: how each reading of the paper's open choices moves its 36 rows.

The paper leaves choices open (initialisation, training recipe, selection, where pooling
falls, the scale of FGSM's eps, ...; :mod:`paraeval.defenses.parasite_reading` and the ``eps_unit``
option of `fgsm`). This study runs the paper's rows (FGSM, transfer) under each reading into
one resumable store:

1. **screen**: the base reading (the defaults, or ``--base``) and every one-factor departure
   from it, with the screen seeds. One seed gives distances to the paper, not in-interval
   counts (one run has no interval).
2. **base confirmation**: the base reading on the confirmation seeds. Its seed-to-seed SD of
   the one-seed distance to the paper sets what "matters" (:func:`matters_threshold`: the
   95 % bound of a difference of two one-seed distances, 1.96 * sqrt(2) * SD).
3. **combinations**: the one-factor readings that moved the rows toward the paper by more
   than that threshold (distance: the sum of both metrics' distances, each in units of its
   seed-to-seed SD), at most one value per option, the best :data:`TOP_FACTORS` combined
   pairwise and together.
4. **confirmation**: the :data:`CONFIRMED` readings closest to the paper on that combined
   distance and :data:`ALWAYS_CONFIRMED`, on the confirmation seeds, which exclude the seeds
   the screen chose with.

Confirmation seeds are *pipeline* seeds by default (``seed_scope=pipeline``: seed s trains
victim s too), because each published number is one draw of the whole pipeline (its own
victim, its own parasites); ``parasite`` keeps victim 0 and varies only the parasites.

It writes ``readings.csv`` (one line per reading and stage) and ``readings_rows.csv`` (per
reading and row). A row *agrees* with the paper when the paper's value lies inside the 95 %
prediction interval for one run (:func:`paraeval.core.metrics.prediction_interval`, clipped to
[0, 100]); the interval of the mean is a second, named column. Every count stands beside its
do-nothing baseline: the unprotected victim judged as if it were the row (its accuracy, and
M_adv 0, against the paper's values with the row's own interval half-width). Each reading
also reports its parasites' fit to x + N against the identity map (rule 3 of
docs/readings.md) and whether some row's protected accuracy falls more than
:data:`BREAKS_VICTIM_PP` below its victim's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from paraeval.defenses.parasite_reading import (
    FRAMEWORK_DEFAULT,
    NO_SELECTION,
    ParasiteReading,
    reading_options,
)
from paraeval.errors import UserError
from paraeval.run.grid import SEED_SCOPES, seed_runs
from paraeval.run.runner import RunConfig, RunResult, run
from paraeval.study.paper import ROWS_BY_NAME
from paraeval.study.reading_scores import (
    ATTACK_OPTIONS,
    METRICS,
    READINGS_COLUMNS,
    RUN_OPTIONS,
    SCORING_OPTIONS,
    Reading,
    Score,
    SeedNoise,
    absolute,
    matters_threshold,
    parse_reading,
    score,
)

__all__ = [
    "READINGS_COLUMNS", "Reading", "Score", "SeedNoise", "StudyConfig", "absolute",
    "combinations", "matters_threshold", "one_factor_readings", "parse_reading", "score",
    "study", "write_csvs",
]  # fmt: skip

#: Departures tried for the numeric options (their defaults in parentheses): epochs (auto),
#: lr (1e-3), batch (100), select (the default's; 1, 3 and 10 are always among the values).
NUMERIC_ALTERNATIVES = {"epochs": ("3",), "lr": ("1e-2", "1e-3"), "batch": ("32",),
                        "select": ("1", "3", "10"), "max_drop": ("0.5",)}  # fmt: skip
TOP_FACTORS = 3
CONFIRMED = 3
#: Confirmed whatever the screen says: the framework default (the project's default before
#: the fit rule) and the default without selection, so each change of default is measured
#: with the same seeds.
ALWAYS_CONFIRMED = (FRAMEWORK_DEFAULT, NO_SELECTION)
PAPER_ROWS = "table1,table2,table3"


def one_factor_readings(base: dict[str, str]) -> list[Reading]:
    """Every single departure from `base`: each other value of each option."""
    current = ParasiteReading.parse("base", base)
    readings = []
    for name, option in reading_options().items():
        values = option.values if option.values is not None else NUMERIC_ALTERNATIVES[name]
        now = getattr(current, name)
        readings += [
            Reading(((name, str(v)),))
            for v in values
            if (option.parse(v) if isinstance(v, str) else v) != now
        ]
    for name, attack_values in ATTACK_OPTIONS.items():
        readings += [Reading((), ((name, v),)) for v in attack_values[1:]]
    for name, scoring_values in SCORING_OPTIONS.items():
        readings += [Reading((), (), ((name, v),)) for v in scoring_values[1:]]
    for name, run_values in RUN_OPTIONS.items():
        readings += [Reading((), (), (), ((name, v),)) for v in run_values[1:]]
    return readings


@dataclass
class StudyConfig:
    """What `paraeval readings` runs."""

    work: Path = Path("runs/readings")
    rows: str = PAPER_ROWS
    base: dict[str, str] = field(default_factory=dict)
    #: Readings of the screen; None: the base and every one-factor departure from it.
    readings: list[Reading] | None = None
    screen_seeds: list[int] = field(default_factory=lambda: [0])
    #: Seeds of the confirmation: by default not the screen's (a reading chosen on seed 0 is
    #: confirmed on seeds that did not choose it).
    confirm_seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    #: "pipeline": confirmation seed s also trains victim s (each published number is one draw
    #: of the whole pipeline); "parasite": victim 0 for every seed, only the parasites vary.
    seed_scope: str = "pipeline"
    combine: bool = True
    #: Readings to confirm; None: the base, the closest to the paper and ALWAYS_CONFIRMED.
    confirm: list[Reading] | None = None
    #: Keep the lines of readings.csv already in `work` that this study does not measure.
    merge: bool = False
    n_images: int = 200
    data_dir: Path | None = None
    jobs: int | None = None
    #: Where the groups of cells run (`--executor`).
    executor: str = "local"
    #: Where the models compute (`--device`).
    device: str = "auto"
    command: str = ""

    def __post_init__(self) -> None:
        if self.seed_scope not in SEED_SCOPES:
            raise UserError(
                f"--seed-scope must be one of {'|'.join(SEED_SCOPES)}, not {self.seed_scope!r}"
            )


Runner = Callable[[RunConfig], RunResult]


def study(config: StudyConfig, runner: Runner = run) -> list[Score]:
    """Screen, confirm the base, combine, confirm (see the module docstring); write the two
    CSVs into work (with ``merge``, beside the lines of earlier studies it did not measure)."""
    base_reading = absolute(Reading(), config.base)
    scores = [_measure(config, r, "screen", config.screen_seeds, runner) for r in screen(config)]
    confirming = bool(config.confirm_seeds) and config.confirm_seeds != config.screen_seeds
    base = (
        _measure(config, base_reading, "confirm", config.confirm_seeds, runner)
        if confirming
        else None
    )
    noise = seed_noise(base)
    for found in [*scores, *([base] if base is not None else [])]:
        found.noise = noise  # every line of the study in the same units, its base included
    if config.combine:
        scores += [
            _measure(config, r, "combination", config.screen_seeds, runner, noise)
            for r in combinations(scores, noise, base_reading)
        ]
    if base is not None:
        scores.append(base)
        confirmed = (
            [absolute(r, config.base) for r in config.confirm]
            if config.confirm is not None
            else _to_confirm(config, scores, base_reading)
        )
        scores += [
            _measure(config, r, "confirm", config.confirm_seeds, runner, noise)
            for r in dict.fromkeys(confirmed)
            if r != base_reading
        ]
    write_csvs(scores, config.work, merge=config.merge)
    return scores


def seed_noise(base: Score | None) -> SeedNoise:
    """The seed-to-seed SD of the base reading's one-seed distances (:class:`SeedNoise`)."""
    if base is None or len(base.seeds) < 2:
        return SeedNoise()
    per_seed = base.seed_distances()
    return SeedNoise(*(float(per_seed[f"{m}_abs"].std(ddof=1)) for m in METRICS))


def _to_confirm(config: StudyConfig, scores: list[Score], base: Reading) -> list[Reading]:
    """The CONFIRMED readings closest to the paper on the combined distance (the base aside),
    and ALWAYS_CONFIRMED."""
    closest = sorted(
        (s for s in scores if s.reading != base and s.stage != "confirm"), key=lambda s: s.distance
    )
    always = [
        absolute(parse_reading(r), config.base) for r in ALWAYS_CONFIRMED if config.readings is None
    ]
    picked = [s.reading for s in closest[:CONFIRMED]]
    return list(dict.fromkeys([*picked, *always]))


def combinations(
    scores: Iterable[Score], noise: SeedNoise | None = None, base_reading: Reading | None = None
) -> list[Reading]:
    """Pairs and the whole set of the best one-factor readings that moved toward the paper
    by more than the measured seed noise allows (:func:`matters_threshold`)."""
    scores = [s for s in scores if s.stage == "screen"]
    noise = noise or SeedNoise()
    base_reading = base_reading or Reading()
    base = next((s for s in scores if s.reading == base_reading), None)
    if base is None:
        return []
    helpful = sorted(
        (
            s
            for s in scores
            if len(s.reading.factors - base_reading.factors) == 1
            and base.distance - s.distance > noise.matters_pp
        ),
        key=lambda s: s.distance,
    )
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
    config: StudyConfig,
    reading: Reading,
    stage: str,
    seeds: list[int],
    runner: Runner,
    noise: SeedNoise | None = None,
) -> Score:
    scope = config.seed_scope if stage == "confirm" else "parasite"
    cells = [
        cell
        for run_config_ in run_configs(config, reading, seeds, scope)
        for cell in runner(run_config_).rows
    ]
    measured = score(reading, stage, seeds, cells, scope)
    measured.noise = noise or SeedNoise()
    return measured


def run_configs(
    config: StudyConfig, reading: Reading, seeds: list[int], scope: str = "parasite"
) -> list[RunConfig]:
    """The grids that measure `reading` on the study's rows: one over all `seeds` on victim 0
    (``parasite`` scope), or one per seed whose victims are trained with that seed
    (``pipeline``; :func:`~paraeval.run.grid.seed_runs`, as `paraeval run --seed-scope`)."""
    return seed_runs(replace(run_config(config, reading, seeds), seed_scope=scope))


def run_config(config: StudyConfig, reading: Reading, seeds: list[int]) -> RunConfig:
    """The grid that measures `reading` (absolute: :func:`absolute` over the study's base) on
    the study's rows."""
    defenses, attacks = reading.selections(config.rows)  # the study's readings are absolute
    victims = sorted({ROWS_BY_NAME[n].victim for n in _row_names(config.rows)})
    return RunConfig(
        victims=victims,
        defenses=defenses,
        attacks=attacks,
        seeds=seeds,
        out=config.work,
        data_dir=config.data_dir,
        n_images=config.n_images,
        jobs=config.jobs,
        executor=config.executor,
        device=config.device,
        attacked=reading.attacked,
        command=config.command or f"paraeval readings ({reading.name})",
    )


def screen_configs(config: StudyConfig) -> list[RunConfig]:
    """The screen's grids (what ``--dry-run`` checks; later stages depend on its results)."""
    return [run_config(config, reading, config.screen_seeds) for reading in screen(config)]


def screen(config: StudyConfig) -> list[Reading]:
    """The readings the screen measures: the given ones, else the base and every one-factor
    departure from it (the base is validated first)."""
    ParasiteReading.parse("--base", config.base)
    if not config.screen_seeds:
        return []
    given = (
        config.readings
        if config.readings is not None
        else [Reading(), *one_factor_readings(config.base)]
    )
    return [absolute(r, config.base) for r in given]


def _row_names(rows: str) -> list[str]:
    from paraeval import registry

    return [e.name for e in registry.defenses().select(rows) if e.name in ROWS_BY_NAME]


def pareto_front(lines: list[dict[str, Any]]) -> list[bool]:
    """Per line: whether no other line of the same stage and seed scope is at least as close to
    the paper on both accuracy and M_adv and strictly closer on one."""
    points = [
        (
            (line["stage"], line["seed_scope"]),
            line["mean_abs_diff_accuracy"],
            line["mean_abs_diff_m_adv"],
        )
        for line in lines
    ]
    return [
        not any(
            s == group and a <= acc and m <= m_adv and (a < acc or m < m_adv) for s, a, m in points
        )
        for group, acc, m_adv in points
    ]


def write_csvs(scores: list[Score], work: Path, merge: bool = False) -> None:
    """readings.csv and readings_rows.csv (temporary name, then rename); with `merge`, the
    lines already there for (reading, stage, seeds, seed scope) this study did not measure
    are kept, so studies from different bases share the files. Pareto flags are recomputed
    over every line of a stage."""
    records = [s.line() for s in scores]
    rows = pd.concat([s.rows for s in scores], ignore_index=True)
    if merge and (work / "readings.csv").exists():
        records, rows = _merged(records, rows, work)
    for record, front in zip(records, pareto_front(records), strict=True):
        record["pareto"] = front
    lines = pd.DataFrame(records, columns=READINGS_COLUMNS)
    for frame, name in ((lines, "readings.csv"), (rows, "readings_rows.csv")):
        tmp = work / f"{name}.tmp"
        frame.to_csv(tmp, index=False)
        tmp.replace(work / name)


def _merged(
    records: list[dict[str, Any]], rows: pd.DataFrame, work: Path
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    columns = ["reading", "stage", "seeds", "seed_scope"]
    keys = {tuple(r[c] for c in columns) for r in records}
    old = pd.read_csv(work / "readings.csv")
    old_rows = pd.read_csv(work / "readings_rows.csv")
    kept = [r for r in old.to_dict("records") if tuple(r[c] for c in columns) not in keys]
    kept_rows = old_rows[~old_rows[columns].apply(tuple, axis=1).isin(keys)]
    return kept + records, pd.concat([kept_rows, rows], ignore_index=True)
