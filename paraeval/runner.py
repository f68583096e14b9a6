"""The evaluation grid: victim x defense x seed x attack, resumable, with shared work done once.

For each victim the clean predictions and, per (attack, seed), the adversarial examples are
computed once on the *unprotected* victim and replayed on every protected model (the paper's
transfer setting, Sec. 6.2). For each (defense, seed) the protected model is built once and
its test accuracy measured once.

Every cell has a content key (victim training config, defense and attack names and options,
seed, number of images, metric and training code versions) and is stored in DIR/results.sqlite
when it finishes. Re-running the same command skips stored cells (failed ones too, unless
`retry_failed`); changing any config changes the key. A cell whose defense or attack raises is
stored as `failed` with its traceback and the grid goes on. Each (defense, seed) is computed
under its own seeding, so results do not depend on the order cells run in.
"""

from __future__ import annotations

import math
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
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

from . import __version__, registry
from .api import AdversarialBatch, describe_options
from .cache import config_key
from .checks import check_protected, sanity_warnings, snapshot
from .data import MNIST, load_mnist, use_data_dir
from .errors import UserError
from .metrics import METRIC_VERSION, TransferOutcome, transfer_outcome, wilson_interval
from .models.victims import VICTIM_ARCHITECTURES
from .paper import PAPER_ATTACK
from .plugins import load_failures
from .report.html import render_report
from .report.tables import write_tables
from .store import Store
from .training import (
    PARASITE_TRAINING_VERSION,
    TRAINING_VERSION,
    ParasiteConfig,
    VictimConfig,
    accuracy,
    derive_seed,
    load_or_train_victim,
    predict,
    pretrain_parasites,
    seeded,
)

RESULT_COLUMNS = [
    "victim", "defense", "attack", "seed", "status", "accuracy", "victim_accuracy", "m_adv",
    "n_attacked", "n_adversarial", "paper_accuracy", "paper_m_adv", "seconds",
    "n_misclassified", "n_recovered", "n_changed_label", "accuracy_wilson_low",
    "accuracy_wilson_high", "m_adv_wilson_low", "m_adv_wilson_high", "robust_accuracy",
    "median_epsilon", "mode", "warnings", "error",
]  # fmt: skip


#: Extra results.csv columns filled by extraction attacks (meanings: README "Outputs").
EXTRACTION_COLUMNS = [
    "cp_points_per_line", "cp_precision", "cp_recall", "cp_parasite_fraction",
    "cp_normals_cos99", "cp_first_layer_normals_cos99", "cp_queries",
    "fee_extracted", "fee_fidelity", "fee_queries", "fee_failure",
]  # fmt: skip

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


@dataclass
class RunResult:
    """The grid's results rows (from the store), notes for the user and what was skipped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reused: int = 0
    #: Content keys of every cell this run lists (earlier parts included).
    keys: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(row["status"] == "failed" for row in self.rows)


@dataclass
class Cell:
    """One planned cell of the grid."""

    victim: str
    defense: registry.Entry[Any]
    attack: registry.Entry[Any]
    seed: int
    key: str


def validate(config: RunConfig) -> tuple[list[registry.Entry[Any]], list[registry.Entry[Any]]]:
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


def versions() -> dict[str, str]:
    """Versions of what produced the numbers (stored with every run)."""
    import art
    import numpy

    found = {
        "paraeval": __version__,
        "torch": torch.__version__,
        "art": art.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        import torchattacks

        found["torchattacks"] = torchattacks.__version__
    except ImportError:
        found["torchattacks"] = "not installed"
    found["device"] = f"cpu ({torch.get_num_threads()} threads, {platform.processor() or '?'})"
    found["git_commit"] = _git_commit()
    return found


def _git_commit() -> str:
    """The commit of the paraeval checkout, when it is one (empty otherwise)."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except OSError:
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


def _victim_config(config: RunConfig, victim: str) -> VictimConfig:
    return VictimConfig(victim, seed=config.victim_seed)


def plan(
    config: RunConfig, defenses: list[registry.Entry[Any]], attacks: list[registry.Entry[Any]]
) -> tuple[list[Cell], list[str]]:
    """The grid's cells in execution order, and notes about (victim, defense) pairs skipped."""
    cells: list[Cell] = []
    notes: list[str] = []
    for victim in config.victims:
        victim_config = asdict(_victim_config(config, victim))
        applicable = [attack for attack in attacks if _applies(attack, victim)]
        notes += [
            f"skipped {attack.name} on {victim}: it is defined for {', '.join(attack.obj.victims)}"
            for attack in attacks
            if not _applies(attack, victim)
        ]
        for defense in defenses:
            if not _applies(defense, victim):
                notes.append(
                    f"skipped {defense.name} on {victim}: "
                    f"it is defined for {', '.join(defense.obj.victims)}"
                )
                continue
            for seed in config.seeds:
                for attack in applicable:
                    key = cell_key(victim_config, defense, attack, seed, config.n_images)
                    cells.append(Cell(victim, defense, attack, seed, key))
    return cells, notes


def _applies(entry: registry.Entry[Any], victim: str) -> bool:
    """Whether a defense or attack applies to `victim` (optional ``victims`` attribute)."""
    victims = getattr(entry.obj, "victims", None)
    return not victims or victim in victims


def cell_key(
    victim_config: dict[str, Any],
    defense: registry.Entry[Any],
    attack: registry.Entry[Any],
    seed: int,
    n_images: int,
) -> str:
    """The content key of a cell: everything its numbers depend on."""
    paper = repr(getattr(defense.obj, "paper", None))
    return config_key(
        {
            "victim": victim_config,
            "defense": [defense.name, describe_options(defense.obj), paper],
            "attack": [attack.name, describe_options(attack.obj), attack.mode],
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
    """Run (or resume) the grid; write DIR/results.sqlite and the CSVs derived from it."""
    console = console or Console(stderr=True)
    defenses, attacks = validate(config)
    mnist = load_mnist(config.data_dir, allow_download=config.allow_download)
    cells, notes = plan(config, defenses, attacks)
    result = RunResult(notes=notes)
    result.notes += [f"plugin {f.name} failed to import and was skipped" for f in load_failures]
    with Store(config.out) as store, use_data_dir(mnist.source):
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
        with _progress(console) as progress:
            task = progress.add_task("cells", total=len(pending))
            for victim in config.victims:
                todo = [cell for cell in pending if cell.victim == victim]
                if todo:
                    ctx = _victim_context(config, victim, mnist)
                    groups = _by_defense_and_seed(todo)
                    _pretrain(ctx.model, groups, config.jobs, console)
                    _run_cells(ctx, groups, store, run_id, progress, task)
        result.rows = [stored.row for key in keys if (stored := store.cell(key))]
        result.keys = keys
        store.finish_run(run_id, time.perf_counter() - started)
        write_tables(store, keys, config.out)
        render_report(store, config.out)
    return result


#: Cells grouped by (defense label, seed): each group shares one protected model.
CellGroups = dict[tuple[str, int], list[Cell]]


def _by_defense_and_seed(cells: list[Cell]) -> CellGroups:
    groups: CellGroups = {}
    for cell in cells:
        groups.setdefault((cell.defense.label or cell.defense.name, cell.seed), []).append(cell)
    return groups


def _pretrain(victim: nn.Module, groups: CellGroups, jobs: int | None, console: Console) -> None:
    """Train every parasite the cells' defenses will need, in parallel, before the cells run.

    A defense may declare its training work with an optional
    ``parasite_configs(model, *, seed) -> list[ParasiteConfig]`` method (the built-in parasite
    defenses do); its `protect` then finds the parasites cached. A defense whose declaration
    raises is skipped here: its cells train inline and fail, if they fail, where they are stored.
    """
    configs: list[ParasiteConfig] = []
    for (_, seed), group in groups.items():
        defense = group[0].defense
        declare = getattr(defense.obj, "parasite_configs", None)
        if declare is None:
            continue
        try:
            configs.extend(declare(victim, seed=seed))
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


@dataclass
class VictimContext:
    """What every cell of one victim shares."""

    name: str
    model: nn.Module
    accuracy: float
    test_images: torch.Tensor
    test_labels: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    clean_pred: torch.Tensor
    adversarial: dict[str, AdversarialBatch | Exception] = field(default_factory=dict)


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


def _run_cells(
    ctx: VictimContext,
    groups: CellGroups,
    store: Store,
    run_id: int,
    progress: Progress,
    task: TaskID,
) -> None:
    for (defense_name, seed), group in groups.items():
        description = f"{ctx.name} · {defense_name} · seed {seed}"
        progress.update(task, description=description)
        if not progress.console.is_terminal:  # CI logs: the bar is invisible, say where we are
            state = next(t for t in progress.tasks if t.id == task)
            progress.console.print(f"{description} ({int(state.completed)}/{state.total} done)")
        started = time.perf_counter()
        try:
            protected, protected_accuracy, warnings = _protect(ctx, group[0].defense, seed)
        except Exception as exc:
            failed = {"status": "failed", "error": _error_text(exc)}
            for cell in group:
                store.put_cell(cell.key, run_id, _base_row(ctx, cell) | failed)
                progress.advance(task)
            continue
        setup = time.perf_counter() - started
        for cell in group:
            run_cell = CELL_RUNNERS[cell.attack.mode]
            row, samples = run_cell(ctx, cell, protected, protected_accuracy, warnings, setup)
            store.put_cell(cell.key, run_id, row, samples)
            progress.advance(task)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, UserError):
        return f"{type(exc).__name__}: {exc}"
    return traceback.format_exc(limit=8)


def _protect(
    ctx: VictimContext, defense: registry.Entry[Any], seed: int
) -> tuple[nn.Module, float, list[str]]:
    """Build and check the protected model; measure its accuracy (seeded per defense x seed)."""
    probe, probe_labels = ctx.test_images[:PROBE_IMAGES], ctx.test_labels[:PROBE_IMAGES]
    before = snapshot(ctx.model)
    with seeded(derive_seed("cell", defense.name, seed)):
        protected = defense.obj.protect(ctx.model, seed=seed)
        check_protected(defense.name, ctx.model, before, protected, probe.clone())
        warnings = sanity_warnings(protected, defense.tags, probe, probe_labels)
        protected_accuracy = accuracy(protected, ctx.test_images, ctx.test_labels)
    return protected, protected_accuracy, warnings


def _base_row(ctx: VictimContext, cell: Cell) -> dict[str, Any]:
    paper = getattr(cell.defense.obj, "paper", None)
    if cell.attack.name != PAPER_ATTACK or cell.attack.mode != "transfer":
        paper = None  # the published values are FGSM-transfer values
    return {
        "victim": ctx.name,
        "defense": cell.defense.label or cell.defense.name,
        "attack": cell.attack.label or cell.attack.name,
        "seed": cell.seed,
        "victim_accuracy": round(ctx.accuracy, 4),
        "paper_accuracy": paper.accuracy if paper else None,
        "paper_m_adv": paper.m_adv if paper else None,
        "mode": cell.attack.mode,
    }


def _adversarial(ctx: VictimContext, attack: registry.Entry[Any], seed: int) -> AdversarialBatch:
    key = config_key({"attack": attack.name, "options": describe_options(attack.obj), "seed": seed})
    if key not in ctx.adversarial:
        try:
            with seeded(derive_seed("attack", attack.name, seed)):
                ctx.adversarial[key] = attack.obj.generate(
                    ctx.model, ctx.images, ctx.labels, seed=seed
                )
        except Exception as exc:  # stored, reported for every cell that needs it
            ctx.adversarial[key] = exc
    cached = ctx.adversarial[key]
    if isinstance(cached, Exception):
        raise cached
    return cached


def _transfer_cell(
    ctx: VictimContext,
    cell: Cell,
    protected: nn.Module,
    protected_accuracy: float,
    warnings: list[str],
    setup_seconds: float,
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    started = time.perf_counter()
    row = _base_row(ctx, cell)
    try:
        batch = _adversarial(ctx, cell.attack, cell.seed)
        victim_pred = predict(ctx.model, batch.adversarial)
        with seeded(derive_seed("replay", cell.defense.name, cell.attack.name, cell.seed)):
            protected_pred = predict(protected, batch.adversarial)
        outcome = transfer_outcome(
            ctx.labels, ctx.clean_pred, victim_pred, protected_pred, batch.success
        )
    except Exception as exc:
        return row | {"status": "failed", "error": _error_text(exc)}, []
    row.update(_metrics(outcome, protected_accuracy, len(ctx.test_labels)))
    warnings = [*warnings, *_weaker_than_fgsm(ctx, cell, batch)]
    row["warnings"] = "; ".join(warnings) or None
    row["parasite_fit"] = (getattr(protected, "paraeval_info", None) or {}).get("parasite_fit")
    row["seconds"] = round(setup_seconds + time.perf_counter() - started, 3)
    counted = (ctx.clean_pred == ctx.labels) & batch.success & (victim_pred != ctx.labels)
    return row, _samples(ctx.labels, ctx.clean_pred, victim_pred, protected_pred, batch, counted)


def _weaker_than_fgsm(ctx: VictimContext, cell: Cell, batch: AdversarialBatch) -> list[str]:
    """An iterative attack that fools fewer images than the FGSM sweep on the same model is
    almost certainly misconfigured (too few steps, too small a step): say so."""
    if "iterative" not in tuple(getattr(cell.attack.obj, "tags", ())):
        return []
    from .attacks.fgsm import FGSMSweep

    max_eps = describe_options(cell.attack.obj).get("max_eps", 1.0)
    reference = registry.Entry(FGSMSweep(max_eps=max_eps), plugin=None)
    fgsm = _adversarial(ctx, reference, cell.seed)
    weaker, stronger = int(batch.success.sum()), int(fgsm.success.sum())
    if weaker >= stronger:
        return []
    return [f"{cell.attack.name} fooled the victim on {weaker} images, FGSM on {stronger}"]


def _adaptive_cell(
    ctx: VictimContext,
    cell: Cell,
    protected: nn.Module,
    protected_accuracy: float,
    warnings: list[str],
    setup_seconds: float,
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """Attack the protected model itself; robust accuracy, never M_adv (a different question)."""
    started = time.perf_counter()
    row = _base_row(ctx, cell)
    names = ("adaptive", cell.defense.name, cell.attack.name, cell.seed)
    try:
        with seeded(derive_seed(*names)):
            batch = cell.attack.obj.generate(protected, ctx.images, ctx.labels, seed=cell.seed)
            clean = predict(protected, ctx.images)
            attacked = predict(protected, batch.adversarial)
        victim_pred = predict(ctx.model, batch.adversarial)
    except Exception as exc:
        return row | {"status": "failed", "error": _error_text(exc)}, []
    correct = clean == ctx.labels
    robust = correct & (attacked == ctx.labels)
    robust_accuracy = 100.0 * float(robust.double().mean())
    epsilons = batch.epsilon[batch.success & correct]
    max_eps = describe_options(cell.attack.obj).get("max_eps")
    if max_eps == 1.0 and robust_accuracy > 10.0:
        warnings = [*warnings, f"robust accuracy {robust_accuracy:.1f} % at eps = 1.0: "
                    "the adaptive attack is not working (gradient masking?)"]  # fmt: skip
    row.update(_accuracy_fields(protected_accuracy, len(ctx.test_labels)))
    row.update(
        n_attacked=int(correct.sum()),
        n_adversarial=int((correct & ~robust).sum()),
        n_misclassified=int((~correct).sum()),
        robust_accuracy=round(robust_accuracy, 4),
        median_epsilon=round(float(epsilons.median()), 4) if len(epsilons) else None,
        warnings="; ".join(warnings) or None,
        seconds=round(setup_seconds + time.perf_counter() - started, 3),
    )
    not_counted = torch.zeros(len(ctx.labels), dtype=torch.bool)  # adaptive: no M_adv
    return row, _samples(ctx.labels, clean, victim_pred, attacked, batch, not_counted)


def _extraction_cell(
    ctx: VictimContext,
    cell: Cell,
    protected: nn.Module,
    protected_accuracy: float,
    warnings: list[str],
    setup_seconds: float,
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """Query the protected model as a black box; score what was recovered of the victim."""
    started = time.perf_counter()
    row = _base_row(ctx, cell)
    names = ("extraction", cell.defense.name, cell.attack.name, cell.seed)
    try:
        with seeded(derive_seed(*names)):
            result = cell.attack.obj.extract(ctx.model, protected, ctx.test_images, seed=cell.seed)
    except Exception as exc:
        return row | {"status": "failed", "error": _error_text(exc)}, []
    row.update(_accuracy_fields(protected_accuracy, len(ctx.test_labels)))
    row.update(
        warnings="; ".join(warnings) or None,
        seconds=round(setup_seconds + time.perf_counter() - started, 3),
    )
    row.update({k: v for k, v in result.metrics.items() if k in EXTRACTION_COLUMNS})
    row["extraction"] = result.details
    return row, []


CELL_RUNNERS = {
    "transfer": _transfer_cell,
    "adaptive": _adaptive_cell,
    registry.EXTRACTION: _extraction_cell,
}


def _samples(
    labels: torch.Tensor,
    clean: torch.Tensor,
    victim_pred: torch.Tensor,
    protected_pred: torch.Tensor,
    batch: AdversarialBatch,
    counted: torch.Tensor,
) -> list[tuple[Any, ...]]:
    """The per-image rows of a cell, in the store's SAMPLE_COLUMNS order."""
    return [
        (i, int(labels[i]), int(clean[i]), int(victim_pred[i]), int(protected_pred[i]),
         None if math.isnan(float(batch.epsilon[i])) else float(batch.epsilon[i]),
         int(batch.success[i]), int(counted[i]))
        for i in range(len(labels))
    ]  # fmt: skip


def _accuracy_interval(accuracy_percent: float, n_test: int) -> tuple[float, float]:
    """Wilson interval of an accuracy measured on `n_test` images."""
    return wilson_interval(round(accuracy_percent * n_test / 100), n_test)


def _accuracy_fields(protected_accuracy: float, n_test: int) -> dict[str, Any]:
    """status ok, the protected model's accuracy and its Wilson interval (every mode)."""
    acc_low, acc_high = _accuracy_interval(protected_accuracy, n_test)
    return {
        "status": "ok",
        "accuracy": round(protected_accuracy, 4),
        "accuracy_wilson_low": round(acc_low, 4),
        "accuracy_wilson_high": round(acc_high, 4),
    }


def _metrics(outcome: TransferOutcome, protected_accuracy: float, n_test: int) -> dict[str, Any]:
    m_low, m_high = wilson_interval(outcome.n_recovered, outcome.n_adversarial)
    return {
        **_accuracy_fields(protected_accuracy, n_test),
        "m_adv": round(outcome.m_adv, 4),
        "n_attacked": outcome.n_attacked,
        "n_adversarial": outcome.n_adversarial,
        "n_misclassified": outcome.n_misclassified,
        "n_recovered": outcome.n_recovered,
        "n_changed_label": outcome.n_changed_label,
        "m_adv_wilson_low": round(m_low, 4),
        "m_adv_wilson_high": round(m_high, 4),
    }
