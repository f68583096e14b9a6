"""The evaluation grid: victim x defense x seed x attack, resumable, with shared work done once.

For each victim the clean predictions and, per (attack, seed), the adversarial examples are
computed once on the *unprotected* victim and replayed on every protected model (the paper's
transfer setting, Sec. 6.2). For each (defense, seed) the protected model is built once and
its test accuracy measured once.

Every cell has a content key (victim training config, defense and attack names and options,
seed, number of images, metric and training code versions) and is stored in DIR/results.sqlite
when it finishes (the cell kinds are in `paraeval.cells`). Re-running the same command skips
stored cells (failed ones too, unless `retry_failed`); changing any config changes the key. A
cell whose defense or attack raises is stored as `failed` with its traceback and the grid goes
on. Each (defense, seed) is computed under its own seeding, so results do not depend on the
order cells run in.

`run()` returns the rows, the cells' keys and the summary; the caller writes the CSVs and the
report (`paraeval.report.html.write_outputs`), as the CLI and `paraeval reproduce` do.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from torch import nn

from . import registry
from .api import DefenseBase, Protected, RunContext
from .cache import config_key
from .cells import Cell, Protection, VictimContext, base_row, failed_fields, run_cell
from .checks import check_protected, sanity_warnings, snapshot
from .data import MNIST, load_mnist
from .errors import UserError
from .metrics import METRIC_VERSION, accuracy, predict
from .models.victims import VICTIM_ARCHITECTURES
from .plugins import load_failures
from .provenance import versions
from .registry import AnyAttack, Entry
from .results import results_frame, summarise
from .seeding import derive_seed, seeded
from .store import Store
from .training import (
    PARASITE_TRAINING_VERSION,
    TRAINING_VERSION,
    ParasiteConfig,
    VictimConfig,
    load_or_train_victim,
    pretrain_parasites,
)

#: Images used to probe a protected model for contract violations and sanity warnings.
PROBE_IMAGES = 16


@dataclass
class RunConfig:
    """Everything `paraeval run` needs; the CLI builds one from its options."""

    victims: list[str]
    defenses: str = "none"
    attacks: str = "fgsm"
    seeds: list[int] = field(default_factory=lambda: [0])
    out: Path = Path("runs/latest")
    data_dir: Path | None = None
    n_images: int = 200
    victim_seed: int = 0
    allow_download: bool = True
    retry_failed: bool = False
    command: str = ""
    #: Processes that train parasites ahead of the cells (None: one per usable core).
    jobs: int | None = None
    #: Cells of earlier parts of the same study (`paraeval reproduce`): listed in this run's
    #: record, CSVs and report beside this run's own cells (they are not recomputed).
    earlier_cells: list[str] = field(default_factory=list)
    #: Validate and plan only: nothing is loaded, trained, run or stored (`--dry-run`).
    dry_run: bool = False
    #: One note per skipped (defense, victim) pair instead of one per victim (`--verbose`).
    verbose: bool = False


@dataclass
class RunResult:
    """The grid's results rows (from the store), notes for the user and what was skipped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reused: int = 0
    #: Cells the grid holds (this run's own, earlier parts aside).
    planned: int = 0
    #: Content keys of every cell this run lists (earlier parts included).
    keys: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(row["status"] == "failed" for row in self.rows)

    @property
    def ok(self) -> int:
        return sum(row["status"] == "ok" for row in self.rows)

    @property
    def summary(self) -> pd.DataFrame:
        """summary.csv's rows: per (victim, defense, attack, mode) over the seeds."""
        return summarise(results_frame(self.rows))


Defenses = list[Entry[DefenseBase]]
Attacks = list[Entry[AnyAttack]]


def validate(config: RunConfig) -> tuple[Defenses, Attacks]:
    """Check every name and value before any work starts (errors exit with code 2)."""
    unknown = [v for v in config.victims if v not in VICTIM_ARCHITECTURES]
    if unknown:
        valid = ", ".join(VICTIM_ARCHITECTURES)
        raise UserError(f"unknown victim(s) {', '.join(unknown)}; valid: {valid}")
    if not config.seeds or any(seed < 0 for seed in config.seeds):
        raise UserError("seeds must be integers >= 0")
    if not 1 <= config.n_images <= 10_000:
        raise UserError("--n-images must be between 1 and 10000")
    return registry.configured_defenses(config.defenses), registry.configured_attacks(
        config.attacks
    )


def _victim_config(config: RunConfig, victim: str) -> VictimConfig:
    return VictimConfig(victim, seed=config.victim_seed)


def plan(config: RunConfig, defenses: Defenses, attacks: Attacks) -> tuple[list[Cell], list[str]]:
    """The grid's cells in execution order, and notes about (victim, defense) pairs skipped."""
    cells: list[Cell] = []
    notes: list[str] = []
    for victim in config.victims:
        victim_config = asdict(_victim_config(config, victim))
        applicable = [attack for attack in attacks if attack.obj.applies_to(victim)]
        notes += [
            f"skipped {attack.name} on {victim}: it is defined for {', '.join(attack.obj.victims)}"
            for attack in attacks
            if not attack.obj.applies_to(victim)
        ]
        skipped = [d for d in defenses if not d.obj.applies_to(victim)]
        notes += _skip_notes(skipped, victim, config.verbose)
        for defense in defenses:
            if defense in skipped:
                continue
            for seed in config.seeds:
                for attack in applicable:
                    key = cell_key(victim_config, defense, attack, seed, config.n_images)
                    cells.append(Cell(victim, defense, attack, seed, key))
    return cells, notes


def _skip_notes(skipped: Defenses, victim: str, verbose: bool = False) -> list[str]:
    """One note per skipped defense, or one for all of them when there are many."""
    if len(skipped) <= 3 or verbose:
        return [
            f"skipped {d.name} on {victim}: it is defined for {', '.join(d.obj.victims)}"
            for d in skipped
        ]
    names = ", ".join(d.name for d in skipped[:3])
    more = len(skipped) - 3
    return [f"skipped {names} and {more} more on {victim}: defined for other victims (--verbose)"]


def cell_key(
    victim_config: dict[str, Any],
    defense: Entry[DefenseBase],
    attack: Entry[AnyAttack],
    seed: int,
    n_images: int,
) -> str:
    """The content key of a cell: everything its numbers depend on."""
    return config_key(
        {
            "victim": victim_config,
            "defense": [defense.name, defense.obj.key_options(), repr(defense.obj.paper)],
            "attack": [attack.name, attack.obj.key_options(), attack.mode],
            "seed": seed,
            "n_images": n_images,
            "metric_version": METRIC_VERSION,
            "training_version": [TRAINING_VERSION, PARASITE_TRAINING_VERSION],
        }
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )  # fmt: skip


def run(config: RunConfig, console: Console | None = None) -> RunResult:
    """Run (or resume) the grid into DIR/results.sqlite; return its rows, keys and summary."""
    console = console or Console(stderr=True)
    defenses, attacks = validate(config)
    cells, notes = plan(config, defenses, attacks)
    result = RunResult(notes=notes, planned=len(cells), keys=[cell.key for cell in cells])
    result.notes += [f"plugin {f.name} failed to import and was skipped" for f in load_failures]
    if config.dry_run:
        return result
    mnist = load_mnist(config.data_dir, allow_download=config.allow_download)
    context = RunContext(MNIST.as_float(mnist.train_images), mnist.source)
    with Store(config.out) as store:
        started = time.perf_counter()
        keys = list(dict.fromkeys([*config.earlier_cells, *(cell.key for cell in cells)]))
        run_id = store.start_run(config.command, versions(), _config_record(config), keys)
        pending = [cell for cell in cells if _needs_work(store, cell, config.retry_failed)]
        result.reused = len(cells) - len(pending)
        if result.reused:
            console.print(
                f"{result.reused} of {len(cells)} cell(s) already stored in {store.path}; "
                "skipping them"
            )
        work = {
            victim: (_victim_context(config, victim, mnist), _by_defense_and_seed(todo))
            for victim in config.victims
            if (todo := [cell for cell in pending if cell.victim == victim])
        }
        _pretrain([(ctx.model, groups) for ctx, groups in work.values()], config.jobs, console)
        with _progress(console) as progress:
            bar = (progress, progress.add_task("cells", total=len(pending)))
            for ctx, groups in work.values():
                result.notes += _run_groups(ctx, groups, context, store, run_id, bar)
        result.rows = [stored.row for key in keys if (stored := store.cell(key))]
        result.keys = keys
        store.finish_run(run_id, time.perf_counter() - started)
    return result


#: Cells grouped by (defense label, seed): each group shares one protected model.
CellGroups = dict[tuple[str, int], list[Cell]]


def _by_defense_and_seed(cells: list[Cell]) -> CellGroups:
    groups: CellGroups = {}
    for cell in cells:
        groups.setdefault((cell.defense.label or cell.defense.name, cell.seed), []).append(cell)
    return groups


def _pretrain(work: list[tuple[nn.Module, CellGroups]], jobs: int | None, console: Console) -> None:
    """Train every parasite the whole grid will need, in one pool, before any cell runs.

    One pool for every victim keeps all workers busy (per victim, a first small group left
    most of them waiting: [G] measured 4 then 21 parasites on 16 cores). A defense declares
    its training work with ``parasite_configs(model, *, seed)``
    (:class:`~paraeval.api.DefenseBase`); its `protect` then finds the parasites cached. A
    defense whose declaration raises is skipped here: its cells train inline and fail, if
    they fail, where they are stored.
    """
    configs: list[ParasiteConfig] = []
    for victim, groups in work:
        for (_, seed), group in groups.items():
            defense = group[0].defense
            try:
                configs.extend(defense.obj.parasite_configs(victim, seed=seed))
            except Exception as exc:  # reported by the cell that needs it
                console.print(f"[yellow]note:[/] {defense.name}: parasite_configs raised {exc!r}")
    trained = pretrain_parasites(configs, jobs)
    if trained:
        console.print(f"trained {trained} parasite(s)")


def _config_record(config: RunConfig) -> dict[str, Any]:
    record = asdict(config)
    record["out"] = str(config.out)
    record["data_dir"] = str(config.data_dir) if config.data_dir else None
    return record


def _needs_work(store: Store, cell: Cell, retry_failed: bool) -> bool:
    stored = store.cell(cell.key)
    return stored is None or (retry_failed and stored.status == "failed")


def _victim_context(config: RunConfig, victim: str, mnist: MNIST) -> VictimContext:
    model, _info = load_or_train_victim(_victim_config(config, victim), mnist)
    test_images = MNIST.as_float(mnist.test_images)
    images, labels = test_images[: config.n_images], mnist.test_labels[: config.n_images]
    return VictimContext(
        name=victim,
        model=model,
        accuracy=accuracy(model, test_images, mnist.test_labels),
        test_images=test_images,
        test_labels=mnist.test_labels,
        images=images,
        labels=labels,
        clean_pred=predict(model, images),
    )


def _run_groups(
    ctx: VictimContext,
    groups: CellGroups,
    context: RunContext,
    store: Store,
    run_id: int,
    bar: tuple[Progress, TaskID],
) -> list[str]:
    """Protect once per (defense, seed), then run and store each of its cells; returns the
    notes about cells another run on the same directory is computing (they are skipped)."""
    progress, task = bar
    owner = f"{socket.gethostname()}:{os.getpid()}:{run_id}"
    notes: list[str] = []
    try:
        for (defense_name, seed), wanted in groups.items():
            granted = set(store.claim([cell.key for cell in wanted], owner))
            group = [cell for cell in wanted if cell.key in granted]
            progress.advance(task, len(wanted) - len(group))
            if len(group) < len(wanted):
                notes.append(f"{len(wanted) - len(group)} cell(s) of {defense_name} seed {seed} "
                             "are stored or being computed by another run: skipped")  # fmt: skip
            if group:
                _announce(progress, task, f"{ctx.name} · {defense_name} · seed {seed}")
                _run_group(ctx, group, context, store, run_id, bar)
    finally:
        store.release(owner)
    return notes


def _run_group(
    ctx: VictimContext,
    group: list[Cell],
    context: RunContext,
    store: Store,
    run_id: int,
    bar: tuple[Progress, TaskID],
) -> None:
    progress, task = bar
    try:
        protection = protect(ctx, group[0].defense.obj.bind(context), group[0].seed)
    except Exception as exc:
        for cell in group:
            store.put_cell(cell.key, run_id, base_row(ctx, cell) | failed_fields(exc))
            progress.advance(task)
        return
    for cell in group:
        row, samples = run_cell(ctx, cell, protection)
        store.put_cell(cell.key, run_id, row, samples)
        progress.advance(task)


def _announce(progress: Progress, task: TaskID, description: str) -> None:
    progress.update(task, description=description)
    if not progress.console.is_terminal:  # CI logs: the bar is invisible, say where we are
        state = next(t for t in progress.tasks if t.id == task)
        progress.console.print(f"{description} ({int(state.completed)}/{state.total} done)")


def protect(ctx: VictimContext, defense: DefenseBase, seed: int) -> Protection:
    """Build and check the protected model; measure its accuracy (seeded per defense x seed)."""
    started = time.perf_counter()
    probe, probe_labels = ctx.test_images[:PROBE_IMAGES], ctx.test_labels[:PROBE_IMAGES]
    before = snapshot(ctx.model)
    with seeded(derive_seed("cell", defense.name, seed)):
        returned = Protected.of(defense.protect(ctx.model, seed=seed))
        check_protected(defense.name, ctx.model, before, returned.model, probe.clone())
        warnings = sanity_warnings(returned.model, defense.tags, probe, probe_labels)
        protected_accuracy = accuracy(returned.model, ctx.test_images, ctx.test_labels)
    return Protection(
        defense=defense,
        model=returned.model,
        accuracy=protected_accuracy,
        warnings=[*warnings, *returned.warnings],
        info=returned.info,
        monitors=returned.monitors,
        setup_seconds=time.perf_counter() - started,
    )
