"""A group of cells - one (victim, defense, seed) - computed wherever an executor puts it.

The group is every executor's unit of work: its cells share one protected model, built,
checked and measured once (:func:`protect`). A :class:`GroupTask` is small and picklable: the
run's settings as text (the same selection strings the command line took), the group's
identity and cell keys, and - for workers on other machines - the cache files it needs (the
victim's weights, its parasites), so that no worker ever retrains a shared artifact. A
process keeps what its groups share (the data, the configured plugins, each victim's clean
predictions and adversarial examples) in one :class:`Worker`. Rows go back to the run, the
store's only writer (:mod:`paraeval.run.runner`).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paraeval import registry
from paraeval.api import AdversarialBatch, AttackBase, DefenseBase, Protected, RunContext
from paraeval.core.allocator import keep_freed_memory_once
from paraeval.core.cache import cache_dir, install_entry
from paraeval.core.devices import on_device
from paraeval.core.metrics import accuracy, predict
from paraeval.core.seeding import protection_seeding
from paraeval.datasets import DatasetBase, Splits
from paraeval.errors import UserError
from paraeval.models.victim_base import ModelFile
from paraeval.plugin.checks import check_protected, sanity_warnings, snapshot
from paraeval.registry import AnyAttack, Entry
from paraeval.run.cells import (
    Cell,
    Protection,
    Samples,
    VictimContext,
    adversarial,
    adversarial_key,
    base_row,
    failed_fields,
    group_cells,
    run_cell,
)
from paraeval.run.lookup import load_dataset, victim_config
from paraeval.training.victims import VictimConfig, load_or_train_victim, victim_path

#: Images used to probe a protected model for contract violations and sanity warnings.
PROBE_IMAGES = 16

#: What a group returns per cell: its key, its results row and its per-image rows.
Outcome = tuple[str, dict[str, Any], Samples]


@dataclass(frozen=True)
class WorkerSetup:
    """The run's settings a worker needs, as plain values (the same for every group)."""

    defenses: str
    attacks: str
    n_images: int
    victim_seed: int
    data_dir: str | None
    allow_download: bool
    #: Intra-op threads of a worker process (None: leave the process's setting alone).
    threads: int | None = None
    #: The folder each file-based dataset was read from by the run: (dataset, folder).
    data_dirs: tuple[tuple[str, str], ...] = ()
    #: The run's `--model FILE:Class`, its dataset and weights, if any.
    model_file: ModelFile | None = None
    #: Where the models compute: "cpu" or "cuda" (resolved; paraeval.core.devices).
    device: str = "cpu"
    #: Which split's first `n_images` images are attacked: "test" or "train".
    attacked: str = "test"

    def load(self, dataset: str) -> Splits:
        """The dataset from where the run read it."""
        folder = dict(self.data_dirs).get(dataset, self.data_dir)
        return load_dataset(dataset, folder, allow_download=self.allow_download)


#: Cache files shipped to a worker: (path relative to the cache folder, bytes).
Artifacts = tuple[tuple[str, bytes], ...]

#: Adversarial examples crafted on a victim, by their key (:func:`~paraeval.run.cells.adversarial`).
Examples = tuple[tuple[str, AdversarialBatch | Exception], ...]


@dataclass(frozen=True)
class GroupTask:
    """One (victim, defense, seed) group: which cells to compute, the cache files they use as
    (path relative to the cache folder, bytes) pairs (empty where the cache is shared), and
    the victim's adversarial examples for the seed, crafted once for every group
    (:func:`examples_task`; empty: the worker crafts them)."""

    setup: WorkerSetup
    victim: str
    defense: str
    seed: int
    keys: tuple[str, ...]
    artifacts: Artifacts = ()
    examples: Examples = ()


@dataclass(frozen=True)
class ExamplesTask:
    """One transfer attack's examples on one victim for one seed (with its reference's)."""

    setup: WorkerSetup
    victim: str
    attack: str
    seed: int
    artifacts: Artifacts = ()


class Worker:
    """A process's state for computing groups: built once, reused by every group it runs."""

    def __init__(
        self,
        setup: WorkerSetup,
        data: dict[str, Splits] | None = None,
        defenses: list[Entry[DefenseBase]] | None = None,
        attacks: list[Entry[AnyAttack]] | None = None,
        models: dict[str, nn.Module] | None = None,
        victims: dict[str, VictimConfig] | None = None,
    ) -> None:
        self.setup = setup
        #: The victims' configs by name (given: those the run resolved; a worker process
        #: resolves each once, the run's model file among them).
        self._configs: dict[str, VictimConfig] = dict(victims or {})
        self._data = dict(data or {})
        #: The victims' models by name (given: those the run already loaded).
        self._models: dict[str, nn.Module] = dict(models or {})
        self._recorded: dict[str, float | None] = {}
        self._contexts: dict[str, RunContext] = {}
        self.victims: dict[str, VictimContext] = {}
        chosen = defenses if defenses is not None else registry.configured_defenses(setup.defenses)
        self.defenses = {entry.label or entry.name: entry for entry in chosen}
        self.attacks = (
            attacks if attacks is not None else registry.configured_attacks(setup.attacks)
        )

    def victim_config(self, name: str) -> VictimConfig:
        """The victim as this run trains and keys it (the run's plan uses the same seed)."""
        if name not in self._configs:
            setup = self.setup
            own = [setup.model_file.victim(cache_dir())] if setup.model_file else []
            self._configs[name] = victim_config(name, setup.victim_seed, setup.device, own)
        return self._configs[name]

    def data(self, victim: str) -> Splits:
        """The splits of the dataset `victim` classifies (loaded once per process)."""
        dataset = self.victim_config(victim).dataset
        if dataset not in self._data:
            self._data[dataset] = self.setup.load(dataset)
        return self._data[dataset]

    def context(self, victim: str) -> RunContext:
        """What defenses are bound to: the training images of the victim's dataset."""
        dataset = self.victim_config(victim).dataset_source
        if dataset.name not in self._contexts:
            self._contexts[dataset.name] = run_context(
                self.data(victim), dataset, self.setup.device
            )
        return self._contexts[dataset.name]

    def model(self, name: str) -> nn.Module:
        """The victim's model: pretrained, cached or trained (once per process)."""
        if name not in self._models:
            config = self.victim_config(name)
            self._models[name], info = load_or_train_victim(config, self.data(name))
            self._recorded[name] = info.get("test_accuracy")
        return self._models[name]

    def victim(self, name: str) -> VictimContext:
        """The victim's shared work (computed once per process)."""
        if name not in self.victims:
            config = self.victim_config(name)
            self.victims[name] = victim_context(
                name,
                self.model(name),
                self.data(name),
                self.setup.n_images,
                config.dataset,
                self.setup.device,
                self.context(name),
                self.setup.attacked,
            )
            self.victims[name].recorded_accuracy = self._recorded.get(name)
        return self.victims[name]

    def cells(self, task: GroupTask) -> list[Cell]:
        """The task's cells, rebuilt from the run's selections and checked against its keys."""
        defense = self.defenses.get(task.defense)
        victim = self.victim_config(task.victim)
        cells = (
            group_cells(
                victim, defense, self.attacks, task.seed, self.setup.n_images, self.setup.attacked
            )
            if defense is not None
            else []
        )
        wanted = [cell for cell in cells if cell.key in task.keys]
        if len(wanted) != len(task.keys):
            raise UserError(
                f"a worker planned other cells for {task.victim} · {task.defense} · seed "
                f"{task.seed} than the run: are the same paraeval version and plugins installed "
                "where the workers run?"
            )
        return wanted

    def examples(self, task: ExamplesTask) -> Examples:
        """Craft the attack's examples (and its reference's) on the victim, once."""
        ctx = self.victim(task.victim)
        attack = next(a for a in self.attacks if (a.label or a.name) == task.attack).obj
        crafted = []
        for needed in (attack, attack.reference() if isinstance(attack, AttackBase) else None):
            if isinstance(needed, AttackBase):
                with suppress(Exception):  # kept in ctx.adversarial, raised by every cell
                    adversarial(ctx, needed, task.seed)
                key = adversarial_key(needed, task.seed)
                crafted.append((key, _portable(ctx.adversarial[key])))
        return tuple(crafted)

    def run(self, task: GroupTask) -> Iterator[Outcome]:
        """Protect once, then compute each cell; a defense that fails fails all its cells."""
        ctx = self.victim(task.victim)
        for key, batch in task.examples:
            ctx.adversarial.setdefault(key, batch)
        group = self.cells(task)
        try:
            defense = group[0].defense.obj.bind(self.context(task.victim))
            protection = protect(ctx, defense, task.seed)
        except Exception as exc:
            failed = failed_fields(exc)
            for cell in group:
                yield cell.key, base_row(ctx, cell) | failed, []
            return
        for cell in group:
            row, samples = run_cell(ctx, cell, protection)
            yield cell.key, row, samples


#: Which split's first images a run attacks: the test split (default: Sec. 6.2 measures
#: M_adv on "the first 200 images of the MNIST set", read as the test set the accuracy is
#: measured on), or the training split (the same sentence read literally: "the MNIST set"
#: whose first images are the training set's).
ATTACKED_SPLITS = ("test", "train")


def attacked_images(data: Splits, n_images: int, attacked: str) -> tuple[Any, Any]:
    """The first `n_images` images and labels of the `attacked` split."""
    if attacked == "train":
        return data.train_images[:n_images], data.train_labels[:n_images]
    return data.test_images[:n_images], data.test_labels[:n_images]


def victim_context(
    name: str,
    model: nn.Module,
    data: Splits,
    n_images: int,
    dataset: str = "mnist",
    device: str = "cpu",
    context: RunContext | None = None,
    attacked: str = "test",
) -> VictimContext:
    """A victim's shared work: its model (computing on `device`), test accuracy, attacked
    images (the first `n_images` of the `attacked` split), clean predictions, and the run's
    context its attacks are bound to."""
    images, labels = attacked_images(data, n_images, attacked)
    computing = on_device(model, device)
    return VictimContext(
        name=name,
        model=computing,
        accuracy=accuracy(computing, data.test_images, data.test_labels),
        test_images=data.test_images,
        test_labels=data.test_labels,
        images=images,
        labels=labels,
        clean_pred=predict(computing, images),
        dataset=dataset,
        host=None if computing is model else model,
        device=device,
        context=context,
    )


def run_context(splits: Splits, dataset: DatasetBase, device: str = "cpu") -> RunContext:
    """What a run binds its defenses and attacks to: the dataset's training images and labels,
    its folder, its declared pixel std and where the models compute."""
    folder = Path(splits.source) if Path(splits.source).is_dir() else None
    return RunContext(
        splits.train_images,
        folder,
        device,
        pixel_std=dataset.pixel_std,
        train_labels=splits.train_labels,
    )


def protect(ctx: VictimContext, defense: DefenseBase, seed: int) -> Protection:
    """Build and check the protected model; measure its accuracy (seeded per defense x seed)."""
    started = time.perf_counter()
    probe, probe_labels = ctx.test_images[:PROBE_IMAGES], ctx.test_labels[:PROBE_IMAGES]
    victim = ctx.host_model  # defenses protect (and return) CPU modules
    before = snapshot(victim)
    with protection_seeding(defense.name, seed):
        returned = Protected.of(defense.protect(victim, seed=seed))
        check_protected(defense.name, victim, before, returned.model, probe.clone())
        warnings = sanity_warnings(returned.model, defense.tags, probe, probe_labels)
        protected = on_device(returned.model, ctx.device)
        protected_accuracy = accuracy(protected, ctx.test_images, ctx.test_labels)
    return Protection(
        defense=defense,
        model=protected,
        accuracy=protected_accuracy,
        warnings=[*warnings, *returned.warnings],
        info=returned.info,
        monitors=returned.monitors,
        setup_seconds=time.perf_counter() - started,
        parasite_fits=returned.parasite_fits,
    )


def _portable(crafted: AdversarialBatch | Exception) -> AdversarialBatch | Exception:
    """An attack's failure as an exception any process can unpickle (with its traceback)."""
    if isinstance(crafted, Exception):
        text = "".join(traceback.format_exception(crafted, limit=8))
        return RuntimeError(f"crafting the adversarial examples failed:\n{text}")
    return crafted


#: This process's worker (a process serves one run's setup at a time; a new setup replaces it).
_worker: Worker | None = None


def _process_worker(setup: WorkerSetup, artifacts: Artifacts) -> Worker:
    """This process's worker for `setup`, with the local workers' thread and allocator
    settings and the shipped cache files installed."""
    global _worker
    keep_freed_memory_once()
    if setup.threads is not None:
        torch.set_num_threads(setup.threads)
    install_artifacts(artifacts)
    if _worker is None or _worker.setup != setup:
        _worker = Worker(setup)
    return _worker


def run_task(task: GroupTask) -> list[Outcome]:
    """An executor's entry point in a worker process: the group's outcomes, every cell."""
    return list(_process_worker(task.setup, task.artifacts).run(task))


def examples_task(task: ExamplesTask) -> Examples:
    """An executor's entry point: one attack's adversarial examples on one victim."""
    return _process_worker(task.setup, task.artifacts).examples(task)


def victim_task(setup: WorkerSetup, name: str, events: Any = None) -> bytes:
    """An entry point of a local worker process: the victim trained (on one thread, as in the
    run's own process, so the weights are the same) and its cache file's bytes. Quiet: the
    run's own bar shows the victims (two live bars from two processes would garble a
    terminal); each epoch is sent to it as (name, epochs, status) on the `events` queue."""
    from paraeval.core import console as output

    output.status.quiet = True
    if events is not None:
        output.relay = lambda steps, status: events.put((name, steps, status))
    try:
        worker = _process_worker(setup, ())
        worker.model(name)
    finally:
        output.relay = None
    return victim_path(worker.victim_config(name)).read_bytes()


def install_artifacts(artifacts: Artifacts) -> None:
    """Put the shipped cache files into this machine's cache (kept where already present)."""
    root = cache_dir()
    for relative, data in artifacts:
        path = root / Path(relative)
        if root.resolve() not in path.resolve().parents:  # never write outside the cache
            raise UserError(f"refusing to install cache file outside the cache: {relative}")
        install_entry(path, data)
