"""The run's side of an executor: shared work once, then the groups, each cell stored.

For the pending cells of a run (:mod:`paraeval.run.runner`): the victims are loaded, or trained
(two or more missing ones side by side, in worker processes); every parasite the grid needs
is trained in one pool (the executor's workers, else ``--jobs`` processes); with workers,
each transfer attack's examples are crafted once per victim and seed, by the workers; then
the groups are handed out, each claimed in the store just before, and every returned cell is
stored in its own transaction, here, the store's only writer. A run killed mid-way loses
only the cells in flight; the next run computes them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, as_completed, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from paraeval.api import DefenseBase
from paraeval.core.allocator import process_pool
from paraeval.core.cache import cache_dir, install_entry
from paraeval.core.console import Tracker, progress
from paraeval.core.interrupts import ignore_interrupts_in_worker
from paraeval.datasets import Splits
from paraeval.errors import UserError
from paraeval.registry import AnyAttack, Entry
from paraeval.run.cells import Cell
from paraeval.run.executors import RunExecutor
from paraeval.run.groups import (
    Artifacts,
    Examples,
    ExamplesTask,
    GroupTask,
    Worker,
    WorkerSetup,
    examples_task,
    victim_task,
)
from paraeval.run.interim import InterimOutputs, Refresh
from paraeval.run.store import Store
from paraeval.training.parasite_cache import default_workers, parasite_path, pretrain_parasites
from paraeval.training.parasites import ParasiteConfig
from paraeval.training.victims import VictimConfig, victim_path

#: The pending cells per (victim, defense label, seed): one protected model each.
Groups = dict[tuple[str, str, int], list[Cell]]


@dataclass
class Phases:
    """Where a run's time went: wall seconds of each stage, in order, and the parasites it
    trained (the run's closing line; `paraeval bench`'s cold row)."""

    seconds: dict[str, float] = field(default_factory=dict)
    parasites: int = 0

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - started

    def line(self) -> str:
        """'victims 56 s, 125 parasites 1086 s, examples 0 s, cells 310 s'."""
        return ", ".join(
            f"{f'{self.parasites} ' if name == 'parasites' else ''}{name} {seconds:.0f} s"
            for name, seconds in self.seconds.items()
        )


@dataclass
class Chosen:
    """What the run validated and loaded: the datasets, the configured plugins, --jobs, the
    victims."""

    data: dict[str, Splits]
    defenses: list[Entry[DefenseBase]]
    attacks: list[Entry[AnyAttack]]
    jobs: int | None = None
    #: The run's victims, resolved where it started (each config carries its victim).
    victims: dict[str, VictimConfig] = field(default_factory=dict)


@dataclass
class Dispatch:
    """Hands a run's groups to its executor (see the module docstring)."""

    setup: WorkerSetup
    executor: RunExecutor
    victims: dict[str, nn.Module]
    #: This process's worker: the run's data, each victim's training images for its defenses.
    worker: Worker
    examples: dict[tuple[str, int], Examples] = field(default_factory=dict)

    def pretrain(self, groups: Groups, jobs: int | None, console: Console) -> int:
        """Train every parasite the whole grid will need, in one pool, before any cell runs.

        One pool for every victim keeps all workers busy (per victim, a first small group
        left most of them waiting: measured, 4 then 21 parasites on 16 cores). A defense
        declares its training work with ``parasite_configs(model, *, seed)``
        (:class:`~paraeval.api.DefenseBase`); its `protect` then finds the parasites cached.
        A defense whose declaration raises is skipped here: its cells train inline and fail,
        if they fail, where they are stored.
        """
        configs: list[ParasiteConfig] = []
        for (victim, _, seed), group in groups.items():
            defense = group[0].defense
            bound = defense.obj.bind(self.worker.context(victim))
            try:
                configs.extend(bound.parasite_configs(self.victims[victim], seed=seed))
            except UserError:  # a configuration the victim cannot take: exit 2, before any cell
                raise
            except Exception as exc:  # reported by the cell that needs it
                console.print(f"[yellow]note:[/] {defense.name}: parasite_configs raised {exc!r}")
        trained = pretrain_parasites(configs, jobs, self.executor.pool)
        if trained:
            console.print(f"trained {trained} parasite(s)")
        return trained

    def craft_examples(self, groups: Groups) -> None:
        """With workers, each transfer attack's examples on each victim and seed, crafted once
        by the workers (in this process, cells craft them when the first one needs them)."""
        pool = self.executor.pool
        needed = {
            (cell.victim, cell.attack.label or cell.attack.name, cell.seed): None
            for group in groups.values()
            for cell in group
            if cell.attack.mode == "transfer"
        }
        if pool is None or not needed:
            return
        futures = {
            pool.submit(
                examples_task,
                ExamplesTask(
                    self.setup, victim, attack, seed, self._read([self._victim_path(victim)])
                ),
            ): (victim, seed)
            for victim, attack, seed in needed
        }
        with progress("adversarial examples", len(futures)) as tracker:
            for future in as_completed(futures):
                where = futures[future]
                self.examples[where] = (*self.examples.get(where, ()), *future.result())
                tracker.advance()

    def tasks(self, groups: Groups, store: Store, owner: str) -> Iterator[GroupTask | Skipped]:
        """The groups' tasks, each claimed just before it is handed out; for cells another
        run on the same directory stores or computes, how many and a note."""
        for (victim, label, seed), wanted in groups.items():
            granted = set(store.claim([cell.key for cell in wanted], owner))
            keys = tuple(cell.key for cell in wanted if cell.key in granted)
            if len(keys) < len(wanted):
                yield Skipped(len(wanted) - len(keys), label, seed)
            if keys:
                artifacts = self._artifacts(wanted[0])
                examples = self.examples.get((victim, seed), ())
                yield GroupTask(self.setup, victim, label, seed, keys, artifacts, examples)

    def _artifacts(self, cell: Cell) -> Artifacts:
        """The cache files a worker on another machine needs for the group (the victim's
        weights, its parasites)."""
        paths = [self._victim_path(cell.victim)]
        with suppress(Exception):  # the worker's cell reports the defense's failure
            model = self.victims[cell.victim]
            bound = cell.defense.obj.bind(self.worker.context(cell.victim))
            configs = bound.parasite_configs(model, seed=cell.seed)
            paths += [parasite_path(config) for config in configs]
        return self._read(paths)

    def _victim_path(self, victim: str) -> Path:
        return victim_path(self.worker.victim_config(victim))

    def _read(self, paths: list[Path]) -> Artifacts:
        """The files as (path in the cache, bytes), with the run's model file; none where the
        workers share our cache."""
        if self.executor.shares_cache:
            return ()
        root = cache_dir()
        return (
            tuple(
                (path.relative_to(root).as_posix(), path.read_bytes())
                for path in paths
                if path.exists()
            )
            + self._model_file
        )

    @cached_property
    def _model_file(self) -> Artifacts:
        """The run's model file and weights as artifacts, read once for every task."""
        model_file = self.setup.model_file
        return tuple(model_file.shipped()) if model_file else ()


@dataclass(frozen=True)
class Skipped:
    """Cells of a group that another run stores or computes."""

    count: int
    defense: str
    seed: int

    def note(self) -> str:
        return (
            f"{self.count} cell(s) of {self.defense} seed {self.seed} are stored or being "
            "computed by another run: skipped"
        )


@dataclass(frozen=True)
class Destination:
    """Where computed cells go: the run's store and record, and the refresh of its files
    while cells finish (None: none)."""

    store: Store
    run_id: int
    refresh: Refresh | None = None


def compute(
    pending: list[Cell],
    setup: WorkerSetup,
    executor: RunExecutor,
    chosen: Chosen,
    destination: Destination,
    console: Console,
) -> tuple[Phases, list[str]]:
    """Compute and store the pending cells (see the module docstring); how long each stage
    took, and notes for the user (groups another run computes, a failed refresh)."""
    store, run_id = destination.store, destination.run_id
    notes: list[str] = []
    groups: Groups = {}
    for cell in pending:
        label = cell.defense.label or cell.defense.name
        groups.setdefault((cell.victim, label, cell.seed), []).append(cell)
    phases = Phases()
    worker = Worker(setup, chosen.data, chosen.defenses, chosen.attacks, victims=chosen.victims)
    names = list(dict.fromkeys(cell.victim for cell in pending))
    with phases.timing("victims"):
        pretrain_victims(setup, [worker.victim_config(name) for name in names], chosen.jobs)
        victims = {victim: worker.model(victim) for victim in names}
    dispatch = Dispatch(setup, executor, victims, worker)
    with phases.timing("parasites"):
        phases.parasites = dispatch.pretrain(groups, chosen.jobs, console)
    if not executor.inline:  # in this process, cells craft the examples (timed as cells)
        with phases.timing("examples"):
            dispatch.craft_examples(groups)
    owner = f"{socket.gethostname()}:{os.getpid()}:{run_id}"
    interim = InterimOutputs(store.path.parent, store.run_cells(run_id), destination.refresh)
    try:
        with phases.timing("cells"), progress("cells", len(pending), console) as tracker:
            tasks = _skipping(dispatch.tasks(groups, store, owner), tracker, notes)
            for key, row, samples in executor.outcomes(tasks, worker.run):
                store.put_cell(key, run_id, row, samples)
                tracker.advance(status=_where(row))
                interim.cell_stored()
    finally:
        store.release(owner)
    if interim.failure:
        notes.append(f"the interim report could not be written ({interim.failure[:200]})")
    return phases, notes


def pretrain_victims(
    setup: WorkerSetup, victims: list[VictimConfig], jobs: int | None = None
) -> int:
    """Train the run's missing CPU victims side by side, one worker process each; returns how
    many. Each victim trains on one thread (paraeval.training.victims), so one after the other
    they left the other cores idle: a cold run on 16 cores spent 90 of its 163 s training
    the two victims in turn (reports/gpu-h200/). One missing victim, a GPU run (the victims
    share the GPU) and a module object given in-process (a worker cannot import it) train in
    this process as before, when the run first needs them."""
    missing = {victim.name: victim for victim in victims if _trains_in_a_worker(setup, victim)}
    workers = min(jobs or default_workers(), len(missing))
    if workers < 2:
        return 0
    epochs = sum(victim.epochs for victim in missing.values())
    with (
        progress_relay() as events,
        process_pool(workers) as pool,
        progress(f"training victims ({len(missing)}, epochs)", epochs) as bar,
    ):
        futures = {pool.submit(victim_task, setup, name, events): name for name in missing}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=RELAY_POLL_SECONDS, return_when=FIRST_COMPLETED)
            while not events.empty():
                name, steps, status = events.get()
                bar.advance(steps, status=f"{name} {status}")
            for future in done:
                install_entry(victim_path(missing[futures[future]]), future.result())
    return len(missing)


#: How often the run shows the epochs its victim workers reported (seconds).
RELAY_POLL_SECONDS = 0.5


@contextmanager
def progress_relay() -> Iterator[Any]:
    """A queue worker processes can put progress on (a manager's: it pickles into a pool's
    tasks), served by a process that ignores Ctrl-C like the workers (the run stops them)."""
    from multiprocessing import get_context
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=get_context("spawn"))
    manager.start(ignore_interrupts_in_worker)
    try:
        yield manager.Queue()
    finally:
        manager.shutdown()


def _trains_in_a_worker(setup: WorkerSetup, victim: VictimConfig) -> bool:
    if setup.device != "cpu" or victim.model_source.recipe is None:  # a module object: none
        return False
    return not victim_path(victim).exists()


def _skipping(
    tasks: Iterator[GroupTask | Skipped], tracker: Tracker, notes: list[str]
) -> Iterator[GroupTask]:
    """The tasks; skipped cells advance the progress and leave a note."""
    for item in tasks:
        if isinstance(item, Skipped):
            notes.append(item.note())
            tracker.advance(item.count)
        else:
            yield item


def _where(row: dict[str, Any]) -> str:
    return f"{row['victim']} · {row['defense']} · seed {row['seed']}"
