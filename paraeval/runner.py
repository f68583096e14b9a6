"""The evaluation grid: victim x defense x seed x attack, with shared work done once.

For each victim the clean predictions and, per (attack, seed), the adversarial examples are
computed once on the *unprotected* victim and replayed on every protected model (the paper's
transfer setting, Sec. 6.2). For each (defense, seed) the protected model is built once and
its test accuracy measured once. A cell whose defense or attack raises is recorded as
`failed` with its error and the grid goes on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from . import registry
from .api import AdversarialBatch, describe_options
from .data import MNIST, load_mnist
from .errors import UserError
from .metrics import transfer_outcome
from .models.lenet import VICTIM_ARCHITECTURES
from .report.tables import write_tables
from .training import VictimConfig, accuracy, load_or_train_victim, predict, seeded

RESULT_COLUMNS = [
    "victim", "defense", "attack", "seed", "status", "accuracy", "victim_accuracy", "m_adv",
    "n_attacked", "n_adversarial", "paper_accuracy", "paper_m_adv", "seconds",
    "n_misclassified", "n_recovered", "n_changed_label", "mode", "error",
]  # fmt: skip


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


@dataclass
class RunResult:
    """Rows of results.csv and prediction_change.csv, plus notes for the user."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(row["status"] == "failed" for row in self.rows)


def validate(config: RunConfig) -> tuple[list[registry.Entry[Any]], list[registry.Entry[Any]]]:
    """Check every name and value before any work starts (errors exit with code 2)."""
    unknown = [v for v in config.victims if v not in VICTIM_ARCHITECTURES]
    if unknown:
        raise UserError(
            f"unknown victim(s) {', '.join(unknown)}; valid: {', '.join(VICTIM_ARCHITECTURES)}"
        )
    if any(seed < 0 for seed in config.seeds):
        raise UserError("seeds must be >= 0")
    if not 1 <= config.n_images <= 10_000:
        raise UserError("--n-images must be between 1 and 10000")
    return registry.defenses().select(config.defenses), registry.configured_attacks(config.attacks)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )  # fmt: skip


def run(config: RunConfig, console: Console | None = None) -> RunResult:
    """Run the grid, write DIR/results.csv, prediction_change.csv and summary.csv."""
    console = console or Console(stderr=True)
    defenses, attacks = validate(config)
    mnist = load_mnist(config.data_dir, allow_download=config.allow_download)
    result = RunResult()
    with _progress(console) as progress:
        for victim_name in config.victims:
            applicable = [d for d in defenses if _applies(d.obj, victim_name)]
            for skipped in (d for d in defenses if d not in applicable):
                result.notes.append(
                    f"skipped {skipped.name} on {victim_name}: it is defined for "
                    f"{', '.join(skipped.obj.victims)}"
                )
            if not applicable:
                continue
            _run_victim(config, victim_name, applicable, attacks, mnist, result, progress)
    config.out.mkdir(parents=True, exist_ok=True)
    write_tables(result.rows, result.changes, config.out)
    return result


def _applies(defense: object, victim: str) -> bool:
    victims = getattr(defense, "victims", None)
    return not victims or victim in victims


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
    adversarial: dict[tuple[str, int], AdversarialBatch | Exception] = field(default_factory=dict)


def _run_victim(
    config: RunConfig,
    victim_name: str,
    defenses: list[registry.Entry[Any]],
    attacks: list[registry.Entry[Any]],
    mnist: MNIST,
    result: RunResult,
    progress: Progress,
) -> None:
    model, _info = load_or_train_victim(VictimConfig(victim_name, seed=config.victim_seed), mnist)
    test_images = MNIST.as_float(mnist.test_images)
    images, labels = test_images[: config.n_images], mnist.test_labels[: config.n_images]
    ctx = VictimContext(
        name=victim_name,
        model=model,
        accuracy=accuracy(model, test_images, mnist.test_labels),
        test_images=test_images,
        test_labels=mnist.test_labels,
        images=images,
        labels=labels,
        clean_pred=predict(model, images),
    )
    cells = len(defenses) * len(config.seeds)
    task = progress.add_task(f"{victim_name}", total=cells)
    for defense in defenses:
        for seed in config.seeds:
            progress.update(task, description=f"{victim_name} · {defense.name} · seed {seed}")
            for row, changes in _run_defense_seed(ctx, defense, attacks, seed):
                result.rows.append(row)
                result.changes.extend(changes)
            progress.advance(task)
    progress.remove_task(task)


def _adversarial(ctx: VictimContext, attack: registry.Entry[Any], seed: int) -> AdversarialBatch:
    key = (repr(describe_options(attack.obj)) + attack.name, seed)
    if key not in ctx.adversarial:
        try:
            with seeded(seed):
                ctx.adversarial[key] = attack.obj.generate(
                    ctx.model, ctx.images, ctx.labels, seed=seed
                )
        except Exception as exc:  # stored, reported for every cell that needs it
            ctx.adversarial[key] = exc
    cached = ctx.adversarial[key]
    if isinstance(cached, Exception):
        raise cached
    return cached


def _run_defense_seed(
    ctx: VictimContext, defense: registry.Entry[Any], attacks: list[registry.Entry[Any]], seed: int
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    paper = getattr(defense.obj, "paper", None)
    base = {
        "victim": ctx.name,
        "defense": defense.name,
        "seed": seed,
        "victim_accuracy": round(ctx.accuracy, 4),
        "paper_accuracy": paper.accuracy if paper else None,
        "paper_m_adv": paper.m_adv if paper else None,
        "mode": "transfer",
    }
    started = time.perf_counter()
    try:
        with seeded(seed):
            protected = defense.obj.protect(ctx.model, seed=seed)
            protected_accuracy = accuracy(protected, ctx.test_images, ctx.test_labels)
    except Exception:
        error = traceback.format_exc(limit=5)
        for attack in attacks:
            yield {**base, "attack": attack.name, "status": "failed", "error": error}, []
        return
    setup_seconds = time.perf_counter() - started
    for attack in attacks:
        yield _transfer_cell(ctx, protected, protected_accuracy, attack, seed, base, setup_seconds)


def _transfer_cell(
    ctx: VictimContext,
    protected: nn.Module,
    protected_accuracy: float,
    attack: registry.Entry[Any],
    seed: int,
    base: dict[str, Any],
    setup_seconds: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    started = time.perf_counter()
    row = {**base, "attack": attack.name}
    try:
        batch = _adversarial(ctx, attack, seed)
        with seeded(seed):
            outcome = transfer_outcome(
                ctx.labels,
                ctx.clean_pred,
                predict(ctx.model, batch.adversarial),
                predict(protected, batch.adversarial),
                batch.success,
            )
    except Exception:
        return {**row, "status": "failed", "error": traceback.format_exc(limit=5)}, []
    row.update(
        status="ok",
        accuracy=round(protected_accuracy, 4),
        m_adv=round(outcome.m_adv, 4),
        n_attacked=outcome.n_attacked,
        n_adversarial=outcome.n_adversarial,
        n_misclassified=outcome.n_misclassified,
        n_recovered=outcome.n_recovered,
        n_changed_label=outcome.n_changed_label,
        seconds=round(setup_seconds + time.perf_counter() - started, 3),
    )
    changes = [
        {
            "victim": ctx.name, "defense": base["defense"], "attack": attack.name, "seed": seed,
            "original_pred": original, "protected_pred": protected_pred,
            "count": int(outcome.change_matrix[original, protected_pred]),
        }
        for original in range(10)
        for protected_pred in range(10)
    ]  # fmt: skip
    return row, changes
