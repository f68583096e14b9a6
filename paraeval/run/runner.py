"""The evaluation grid: victim x defense x seed x attack, resumable, with shared work done once.

For each victim the clean predictions and, per (attack, seed), the adversarial examples are
computed once on the *unprotected* victim and replayed on every protected model (the paper's
transfer setting, Sec. 6.2). For each (defense, seed) the protected model is built once and
its test accuracy measured once.

Every cell has a content key (victim training config, defense and attack names and options,
seed, number of images, metric and training code versions) and is stored in DIR/results.sqlite
when it finishes (the cell kinds are in `paraeval.run.cells`). Re-running the same command skips
stored cells (failed ones too, unless `retry_failed`); changing any config changes the key. A
cell whose defense or attack raises is stored as `failed` with its traceback and the grid goes
on. Each (defense, seed) is computed under its own seeding, so results do not depend on the
order cells run in.

`run()` returns the rows, the cells' keys and the summary; the caller writes the CSVs and the
report (`paraeval.report.html.write_outputs`), as the CLI and `paraeval reproduce` do.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console

from paraeval import registry
from paraeval.api import DefenseBase
from paraeval.core.devices import resolve_device
from paraeval.core.other_runs import oversubscription_note, registered
from paraeval.datasets import DatasetBase, Splits
from paraeval.errors import UserError
from paraeval.models.victim_base import (
    ModelFile,
    ModelFileVictim,
    ModuleVictim,
    VictimBase,
    check_victim_model,
)
from paraeval.plugin.manager import load_failures
from paraeval.registry import AnyAttack, Entry
from paraeval.run.cells import Cell, group_cells
from paraeval.run.dispatch import Chosen, Destination, Phases, compute
from paraeval.run.executors import RunExecutor, open_executor, parse_executor
from paraeval.run.groups import ATTACKED_SPLITS, WorkerSetup
from paraeval.run.interim import Refresh
from paraeval.run.lookup import (
    check_own_victim,
    dataset_named,
    load_dataset,
    victim_config,
    victims,
)
from paraeval.run.provenance import versions
from paraeval.run.results import results_frame, summarise
from paraeval.run.store import Store
from paraeval.training.victims import VictimConfig


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
    #: Processes that train parasites ahead of the cells (None: one per usable core), where
    #: the executor has no workers of its own.
    jobs: int | None = None
    #: Where the groups of cells run: local, local:N, dask, dask:N, dask:ADDRESS.
    executor: str = "local"
    #: Cells of earlier parts of the same study (`paraeval reproduce`): listed in this run's
    #: record, CSVs and report beside this run's own cells (they are not recomputed).
    earlier_cells: list[str] = field(default_factory=list)
    #: Validate and plan only: nothing is loaded, trained, run or stored (`--dry-run`).
    dry_run: bool = False
    #: One note per skipped (defense, victim) pair instead of one per victim (`--verbose`).
    verbose: bool = False
    #: A user's model as `FILE.py:Class` (`--model`), evaluated as one more victim.
    model: str | None = None
    #: Its pretrained weights (safetensors or a torch state dict); None: trained here.
    weights: Path | None = None
    #: The dataset `model` classifies (a registered dataset's name).
    dataset: str | None = None
    #: Where the models compute: auto (CUDA when present), cpu or cuda (paraeval.core.devices).
    device: str = "auto"
    #: Which split's first `n_images` images the evasion attacks craft on (`--attacked`).
    attacked: str = "test"
    #: What a seed varies (`--seed-scope`): ``parasite`` (seed s draws the defense's
    #: randomness on victim `victim_seed`) or ``pipeline`` (seed s also trains victim s).
    seed_scope: str = "parasite"
    #: Victims the run brings as objects (``paraeval.evaluate``'s module), named in `victims`
    #: beside the registered ones; not part of the run's record.
    own_victims: tuple[VictimBase, ...] = ()


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
    #: Where this run's time went (empty when every cell was stored already).
    phases: Phases = field(default_factory=Phases)

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


@dataclass(frozen=True)
class Resolved:
    """A run's names turned into objects, once, where it starts: the selected defenses and
    attacks, each victim's config (carrying the victim and its dataset) and the device."""

    defenses: Defenses
    attacks: Attacks
    victims: dict[str, VictimConfig]
    device: str


def validate(config: RunConfig) -> Resolved:
    """Check every name and value before any work starts (errors exit with code 2), and
    resolve them: nothing after this looks a name up again."""
    own = [*map(check_own_victim, config.own_victims), *add_model_victim(config)]
    device = resolve_device(config.device)  # cuda without CUDA: exit 2 before any work
    known = victims(own)
    unknown = [v for v in config.victims if v not in known]
    if unknown:
        raise UserError(f"unknown victim(s) {', '.join(unknown)}; valid: {', '.join(known)}")
    if not config.victims:
        raise UserError("no victim: name one with --victims, or give --model FILE.py:Class")
    resolved = {
        name: victim_config(name, config.victim_seed, device, own) for name in config.victims
    }
    _check_dataset_flag(config, known)
    if not config.seeds or any(seed < 0 for seed in config.seeds):
        raise UserError("seeds must be integers >= 0")
    if not 1 <= config.n_images <= 10_000:
        raise UserError("--n-images must be between 1 and 10000")
    if config.attacked not in ATTACKED_SPLITS:
        raise UserError(
            f"--attacked must be one of {'|'.join(ATTACKED_SPLITS)}, not {config.attacked!r}"
        )
    defenses = registry.configured_defenses(config.defenses)
    return Resolved(defenses, registry.configured_attacks(config.attacks), resolved, device)


def _check_dataset_flag(config: RunConfig, known: dict[str, Any]) -> None:
    """``--dataset`` names what ``--model`` classifies (named victims beside it keep their
    own); without ``--model``, given with a victim that classifies another dataset it would
    do nothing: exit 2."""
    if config.dataset is None or config.model is not None:
        return
    dataset_named(config.dataset)  # an unknown name is an error, in --dry-run too
    others = [v for v in config.victims if known[v].dataset != config.dataset]
    if others:
        raise UserError(
            f"--dataset {config.dataset} does not apply to {', '.join(others)} (it classifies "
            f"{known[others[0]].dataset}); --dataset names what --model FILE.py:Class classifies"
        )


def add_model_victim(config: RunConfig) -> list[VictimBase]:
    """`--model FILE:Class [--weights W] --dataset D`: the model becomes this run's victim
    (returned: none without --model)."""
    if config.model is None:
        if config.weights is not None:
            raise UserError("--weights needs --model FILE.py:Class")
        return []
    if config.dataset is None:
        raise UserError("--model needs --dataset (paraeval list datasets)")
    dataset = dataset_named(config.dataset)
    victim = check_own_victim(ModelFileVictim(config.model, config.dataset, config.weights))
    model = victim.load() if config.weights else victim.build()
    check_victim_model(model, dataset, f"--model {config.model}")
    if victim.name not in config.victims:
        config.victims = [*config.victims, victim.name]
    return [victim]


def plan(config: RunConfig, resolved: Resolved) -> tuple[list[Cell], list[str]]:
    """The grid's cells in execution order, and notes about (victim, defense) pairs skipped."""
    cells: list[Cell] = []
    notes: list[str] = []
    defenses, attacks = resolved.defenses, resolved.attacks
    for victim in config.victims:
        victim_config = resolved.victims[victim]
        victim_plugin, dataset = victim_config.model_source, victim_config.dataset_source
        usable, data_note = _supported(attacks, defenses, victim, dataset)
        notes += data_note
        notes += [
            f"skipped {attack.name} on {victim}: {attack.obj.skip_reason(victim)}"
            for attack in attacks
            if not attack.obj.applies_to(victim_plugin, dataset) and attack.name in usable
        ]
        skipped = [
            d for d in defenses if not d.obj.applies_to(victim_plugin, dataset) and d.name in usable
        ]
        notes += _skip_notes(skipped, victim, config.verbose)
        kept = [a for a in attacks if a.name in usable]
        for defense in defenses:
            if defense in skipped or defense.name not in usable:
                continue
            for seed in config.seeds:
                cells += group_cells(
                    victim_config, defense, kept, seed, config.n_images, config.attacked
                )
    return cells, notes


def _supported(
    attacks: Attacks, defenses: Defenses, victim: str, dataset: DatasetBase
) -> tuple[set[str], list[str]]:
    """The names of the plugins that handle `dataset`'s inputs, and one note for all others
    (which say why: the input shapes or class counts they declare)."""
    usable: set[str] = set()
    reasons: dict[str, list[str]] = {}
    entries: list[Entry[Any]] = [*attacks, *defenses]
    for entry in entries:
        reason = entry.obj.unsupported(dataset.input_shape, dataset.classes)
        if reason is None:
            usable.add(entry.name)
        else:
            reasons.setdefault(reason, []).append(entry.name)
    if not reasons:
        return usable, []
    why = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in reasons.items())
    return usable, [f"skipped on {victim} ({dataset.name}, {dataset.summary}): {why}"]


def _skip_notes(skipped: Defenses, victim: str, verbose: bool = False) -> list[str]:
    """One note per skipped defense, or one for all of those defined for other victims when
    there are many (a defense skipped for another reason always gets its own note)."""
    declared = [d for d in skipped if d.obj.victims]
    own = [_skip_note(d, victim) for d in skipped if not d.obj.victims]
    if len(declared) <= 3 or verbose:
        return [_skip_note(d, victim) for d in declared] + own
    names = ", ".join(d.name for d in declared[:3])
    more = len(declared) - 3
    return [
        f"skipped {names} and {more} more on {victim}: defined for other victims (--verbose)",
        *own,
    ]


def _skip_note(defense: Entry[DefenseBase], victim: str) -> str:
    return f"skipped {defense.name} on {victim}: {defense.obj.skip_reason(victim)}"


def run(
    config: RunConfig, console: Console | None = None, refresh: Refresh | None = None
) -> RunResult:
    """Run (or resume) the grid into DIR/results.sqlite; return its rows, keys and summary.
    `refresh` rewrites the run's files every few minutes while cells finish (the CLI passes
    :func:`paraeval.report.outputs.write_interim`); the caller writes the final ones."""
    console = console or Console(stderr=True)
    resolved = validate(config)
    spec = parse_executor(config.executor)
    cells, notes = plan(config, resolved)
    if not cells:
        raise UserError("nothing to run: " + ("; ".join(notes) or "no cell planned"))
    result = RunResult(notes=notes, planned=len(cells), keys=[cell.key for cell in cells])
    result.notes += [f"plugin {f.name} failed to import and was skipped" for f in load_failures]
    if config.dry_run:
        return result
    data = _load_data(config, resolved)
    result.notes += image_count_notes(config.n_images, data)
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
        if pending:
            with registered() as others, open_executor(spec) as executor:
                threads = torch.get_num_threads() if executor.inline else 1
                if note := oversubscription_note(others, threads):
                    console.print(f"[yellow]note:[/] {note}")
                setup = _setup(config, data, executor, resolved)
                chosen = Chosen(
                    data, resolved.defenses, resolved.attacks, config.jobs, resolved.victims
                )
                destination = Destination(store, run_id, refresh)
                result.phases, notes = compute(
                    pending, setup, executor, chosen, destination, console
                )
                result.notes += notes
            console.print(f"time: {result.phases.line()}")
        result.rows = [stored.row for key in keys if (stored := store.cell(key))]
        result.keys = keys
        store.finish_run(run_id, time.perf_counter() - started)
    return result


def image_count_notes(n_images: int, data: dict[str, Splits]) -> list[str]:
    """A note for each dataset with fewer test images than ``--n-images`` asks for: its cells
    attack every test image it has, and the note says how many."""
    return [
        f"--n-images {n_images}: {name} has {len(splits.test_labels)} test images; its cells "
        f"attack all {len(splits.test_labels)}"
        for name, splits in data.items()
        if len(splits.test_labels) < n_images
    ]


def _load_data(config: RunConfig, resolved: Resolved) -> dict[str, Splits]:
    """Each dataset the run's victims classify, loaded and checked once (``--data-dir`` is
    the folder of the run's file-based dataset; a bundled one ignores it)."""
    names = dict.fromkeys(victim.dataset for victim in resolved.victims.values())
    return {
        name: load_dataset(name, config.data_dir, allow_download=config.allow_download)
        for name in names
    }


def _setup(
    config: RunConfig, data: dict[str, Splits], executor: RunExecutor, resolved: Resolved
) -> WorkerSetup:
    """What every worker needs to rebuild the run's cells (the data from where we read it)."""
    own = [victim.model_source for victim in resolved.victims.values()]
    if executor.pool is not None and any(isinstance(v, ModuleVictim) for v in own):
        raise UserError(
            "a module object victim runs in this process only (--executor "
            "local); for workers: --model FILE.py:Class --weights W"
        )
    return WorkerSetup(
        defenses=config.defenses,
        attacks=config.attacks,
        n_images=config.n_images,
        victim_seed=config.victim_seed,
        data_dir=str(config.data_dir) if config.data_dir else None,
        allow_download=config.allow_download,
        threads=executor.threads,
        data_dirs=tuple(
            (name, splits.source) for name, splits in data.items() if Path(splits.source).is_dir()
        ),
        model_file=ModelFile.of(config.model, config.dataset or "", config.weights)
        if config.model
        else None,
        device=resolved.device,
        attacked=config.attacked,
    )


def _config_record(config: RunConfig) -> dict[str, Any]:
    record = asdict(replace(config, own_victims=()))
    del record["own_victims"]
    record["out"] = str(config.out)
    record["data_dir"] = str(config.data_dir) if config.data_dir else None
    record["weights"] = str(config.weights) if config.weights else None
    return record


def _needs_work(store: Store, cell: Cell, retry_failed: bool) -> bool:
    stored = store.cell(cell.key)
    return stored is None or (retry_failed and stored.status == "failed")
