"""Grids as files: `paraeval run --config grid.toml` and the project's own reproduce.toml.

A grid file (TOML, read with the standard library's ``tomllib``) holds the keys of
:data:`KEYS` at its top level (defaults) and, optionally, ``[[part]]`` tables with the same
keys: each part is one run into the same directory, later parts reusing earlier cells (as
`paraeval reproduce` does). A file without parts is one run. ``seeds`` is a count (seeds
0..N-1) or a list. Unknown keys, wrong types and empty grids are exit-2 errors naming the key
and the valid ones. On the command line, options given explicitly override the file's values
in every part.
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paraeval.core import console as output
from paraeval.errors import UserError
from paraeval.run.runner import RunConfig, RunResult

#: What a run's seeds may vary (:func:`seed_runs`).
SEED_SCOPES = ("parasite", "pipeline")


def seed_runs(config: RunConfig) -> list[RunConfig]:
    """The runs that measure `config`: itself (``parasite`` scope), or one run per seed whose
    victims are trained with that seed (``pipeline``). Each of the paper's numbers is one draw
    of its whole pipeline - its own victim, its own parasite (Sec. 6) - so only pipeline seeds
    give a prediction interval that a single published number can be compared with."""
    if config.seed_scope not in SEED_SCOPES:
        raise UserError(f"--seed-scope {config.seed_scope!r}: valid: {', '.join(SEED_SCOPES)}")
    if config.seed_scope == "parasite":
        return [config]
    if config.victim_seed and config.seeds != [config.victim_seed]:
        raise UserError(
            "--victim-seed and --seed-scope pipeline exclude each other "
            "(a pipeline seed s trains victim s)"
        )
    return [dataclasses.replace(config, seeds=[seed], victim_seed=seed) for seed in config.seeds]


#: Key -> (the types it takes, what it means).
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "victims": ((list,), 'victim names, e.g. ["vm", "vm-batch"]'),
    "defenses": ((str,), "a selection: names, tags, globs, with options"),
    "attacks": ((str,), "a selection of attacks, with options"),
    "seeds": ((int, list), "a count (seeds 0..N-1) or a list of seeds"),
    "n_images": ((int,), "first N test images attacked"),
    "victim_seed": ((int,), "seed of the victims' training"),
    "seed_scope": ((str,), 'what a seed varies: "parasite" or "pipeline" (victims too)'),
}


def load_grid(path: Path, name: str | None = None) -> tuple[RunConfig, ...]:
    """The parts of the grid file at `path` (`name` labels it in errors)."""
    label = name or str(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"grid file {label} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"grid file {label}: {exc}") from None
    parts = data.pop("part", [{}])
    if not isinstance(parts, list) or not parts:
        raise UserError(f"grid file {label}: [[part]] must be a list of tables")
    defaults = _checked(label, data)
    return tuple(
        _config(label, {**defaults, **_checked(f"{label} part {i}", p)})
        for i, p in enumerate(parts, start=1)
    )


def _checked(label: str, table: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        valid = ", ".join([*KEYS, "part"])
        raise UserError(f"{label}: unknown key(s) {', '.join(unknown)}; valid: {valid}")
    for key, value in table.items():
        types, meaning = KEYS[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise UserError(f"{label}: {key} = {value!r} must be {meaning}")
    return table


def _config(label: str, values: dict[str, Any]) -> RunConfig:
    missing = [key for key in ("victims", "defenses", "attacks") if key not in values]
    if missing:
        raise UserError(f"{label}: {', '.join(missing)} missing")
    seeds = values.get("seeds", 1)
    values["seeds"] = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    return RunConfig(**values)


def override(parts: tuple[RunConfig, ...], **given: Any) -> tuple[RunConfig, ...]:
    """Every part with the options given on the command line replacing the file's."""
    return tuple(dataclasses.replace(part, **given) for part in parts)


def run_parts(
    parts: tuple[RunConfig, ...] | list[RunConfig], runner: Callable[[RunConfig], RunResult]
) -> RunResult:
    """Run `parts` one after the other into their directory (a part of pipeline seeds as one
    run per seed, :func:`~paraeval.run.grid.seed_runs`); each run lists the earlier runs' cells
    too, so the last result (returned) lists every cell. With several parts, each one's wall
    time is a status line (which part of a long study is slow)."""
    keys: list[str] = []
    result = RunResult()
    for number, part in enumerate(parts, start=1):
        started = time.perf_counter()
        planned = reused = 0
        for run in seed_runs(part):
            result = runner(dataclasses.replace(run, earlier_cells=keys))
            keys = result.keys
            planned, reused = planned + result.planned, reused + result.reused
        if len(parts) > 1:
            seconds = time.perf_counter() - started
            output.status.print(part_line(number, len(parts), planned, reused, seconds))
    return result


def part_line(number: int, count: int, planned: int, reused: int, seconds: float) -> str:
    """'part 2 of 8 done in 70 s: 410 cell(s), 190 stored before'."""
    stored = f", {reused} stored before" if reused else ""
    return f"part {number} of {count} done in {seconds:.0f} s: {planned} cell(s){stored}"
