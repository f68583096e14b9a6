"""One cell of each kind - transfer, adaptive, extraction - behind one wrapper.

A cell is (victim, defense, seed, attack). What every kind shares is done once, in
:func:`run_cell`: the row's identity and the paper's values, timing, turning an exception into
a `failed` row with its traceback, the protected model's accuracy fields and the warnings.
The kinds differ only in what they measure:

* transfer (the paper's setting, Sec. 6.2): adversarial examples crafted on the unprotected
  victim (once per victim, attack and seed, shared by every defense) are replayed on the
  protected model; M_adv and its counts, per-image rows;
* adaptive: the attack crafts on the protected model itself; robust accuracy, never M_adv;
* extraction: the attack queries the protected model through an :class:`~paraeval.api.Oracle`
  and scores what it recovered of the victim; every metric it reports is kept.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from paraeval.api import (
    AdversarialBatch,
    AttackBase,
    DefenseBase,
    ExtractionAttackBase,
    Monitor,
    Oracle,
    RunContext,
)
from paraeval.core.cache import config_key
from paraeval.core.metrics import METRIC_VERSION, predict, transfer_outcome, wilson_interval
from paraeval.core.seeding import derive_seed, seeded
from paraeval.errors import UserError
from paraeval.plugin.checks import check_metrics, weak_victim_warning
from paraeval.registry import EXTRACTION, AnyAttack, Entry
from paraeval.run.results import PARASITE_FIT, RESULT_COLUMNS, STORED_ONLY
from paraeval.training.parasites import PARASITE_TRAINING_VERSION, ParasiteFit
from paraeval.training.victims import TRAINING_VERSION, VictimConfig

#: The per-image rows of a cell, in the store's SAMPLE_COLUMNS order.
Samples = list[tuple[Any, ...]]


@dataclass
class Cell:
    """One planned cell of the grid."""

    victim: str
    defense: Entry[DefenseBase]
    attack: Entry[AnyAttack]
    seed: int
    key: str


def cell_key(
    victim_config: dict[str, Any],
    defense: Entry[DefenseBase],
    attack: Entry[AnyAttack],
    seed: int,
    n_images: int,
    attacked: str = "test",
) -> str:
    """The content key of a cell: everything its numbers depend on (the attacked split only
    when it is not the test split, so cells stored before the option keep their keys)."""
    return config_key(
        {
            "victim": victim_config,
            "defense": [defense.name, defense.obj.key_options(), repr(defense.obj.paper)],
            "attack": [attack.name, attack.obj.key_options(), attack.mode],
            "seed": seed,
            "n_images": n_images,
            **({"attacked": attacked} if attacked != "test" else {}),
            "metric_version": METRIC_VERSION,
            "training_version": [TRAINING_VERSION, PARASITE_TRAINING_VERSION],
        }
    )


def group_cells(
    victim: VictimConfig,
    defense: Entry[DefenseBase],
    attacks: list[Entry[AnyAttack]],
    seed: int,
    n_images: int,
    attacked: str = "test",
) -> list[Cell]:
    """The cells of one (victim, defense, seed) group, keyed: the run plans them and a worker
    rebuilds them with this one function, so both always agree on the keys."""
    config = victim.key_fields()
    return [
        Cell(
            victim.name,
            defense,
            attack,
            seed,
            cell_key(config, defense, attack, seed, n_images, attacked),
        )
        for attack in attacks
        if attack.obj.applies_to(victim.model_source, victim.dataset_source)
    ]


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
    #: The dataset the victim classifies (a results column).
    dataset: str = "mnist"
    #: The victim on the CPU, which defenses protect, where `model` computes on a GPU
    #: (paraeval.core.devices); None: `model` is on the CPU.
    host: nn.Module | None = None
    #: Where the run's models compute.
    device: str = "cpu"
    #: What the run hands the attacks (AttackBase.bind; None: they run unbound).
    context: RunContext | None = None
    #: The test accuracy recorded when the victim's cached weights were trained (None: not
    #: trained here, e.g. pretrained or a module object).
    recorded_accuracy: float | None = None

    @property
    def host_model(self) -> nn.Module:
        return self.host if self.host is not None else self.model


@dataclass
class Protection:
    """One (defense, seed)'s protected model, built and measured once for all its cells."""

    defense: DefenseBase
    model: nn.Module
    accuracy: float
    warnings: list[str]
    info: dict[str, Any]
    monitors: tuple[Monitor, ...]
    setup_seconds: float
    parasite_fits: tuple[ParasiteFit, ...] = ()


@dataclass
class Measured:
    """What one kind of cell measured: row fields, per-image rows and extra warnings."""

    fields: dict[str, Any]
    samples: Samples = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def run_cell(
    ctx: VictimContext, cell: Cell, protection: Protection
) -> tuple[dict[str, Any], Samples]:
    """The cell's results row and per-image rows; an exception becomes a `failed` row."""
    started = time.perf_counter()
    row = base_row(ctx, cell)
    if protection.defense.stateful:
        protection.defense.reset()  # the accuracy pass is not part of the attack's stream
    try:
        measured = MEASURE[cell.attack.mode](ctx, cell, protection)
    except Exception as exc:
        return row | failed_fields(exc), []
    row.update(accuracy_fields(protection.accuracy, len(ctx.test_labels)))
    row.update(measured.fields)
    weak = weak_victim_warning(ctx.accuracy, ctx.test_labels, ctx.recorded_accuracy)
    row["warnings"] = "; ".join([*weak, *protection.warnings, *measured.warnings]) or None
    if protection.info:  # the parasites' fit has its own field (transfer cells)
        row["info"] = protection.info
    row["seconds"] = round(protection.setup_seconds + time.perf_counter() - started, 3)
    return row, measured.samples


def base_row(ctx: VictimContext, cell: Cell) -> dict[str, Any]:
    """Which cell this is, and the paper's values where they apply (FGSM transfer cells)."""
    paper = cell.defense.obj.paper
    if paper is not None and (cell.attack.name, cell.attack.mode) != (paper.attack, paper.mode):
        paper = None  # the published values were measured with another attack
    return {
        "victim": ctx.name,
        "dataset": ctx.dataset,
        "defense": cell.defense.label or cell.defense.name,
        "attack": cell.attack.label or cell.attack.name,
        "seed": cell.seed,
        "victim_accuracy": round(ctx.accuracy, 4),
        "paper_accuracy": paper.accuracy if paper else None,
        "paper_m_adv": paper.m_adv if paper else None,
        "mode": cell.attack.mode,
    }


def failed_fields(exc: Exception) -> dict[str, Any]:
    """A failed cell: one line for a user error, the traceback for anything else."""
    if isinstance(exc, UserError):
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {"status": "failed", "error": traceback.format_exc(limit=8)}


def accuracy_fields(protected_accuracy: float, n_test: int) -> dict[str, Any]:
    """status ok, the protected model's accuracy and its Wilson interval (every kind)."""
    acc_low, acc_high = wilson_interval(round(protected_accuracy * n_test / 100), n_test)
    return {
        "status": "ok",
        "accuracy": round(protected_accuracy, 4),
        "accuracy_wilson_low": round(acc_low, 4),
        "accuracy_wilson_high": round(acc_high, 4),
    }


def adversarial_key(attack: AttackBase, seed: int) -> str:
    """Which examples these are: the attack, its options and the seed."""
    return config_key({"attack": attack.name, "options": attack.key_options(), "seed": seed})


def adversarial(ctx: VictimContext, attack: AttackBase, seed: int) -> AdversarialBatch:
    """The attack's examples on the unprotected victim, crafted once per (attack, seed)."""
    key = adversarial_key(attack, seed)
    if key not in ctx.adversarial:
        try:
            with seeded(derive_seed("attack", attack.name, seed)):
                crafting = bound(attack, ctx)
                batch = crafting.generate(ctx.model, ctx.images, ctx.labels, seed=seed)
                ctx.adversarial[key] = batch
        except Exception as exc:  # stored, reported for every cell that needs it
            ctx.adversarial[key] = exc
    cached = ctx.adversarial[key]
    if isinstance(cached, Exception):
        raise cached
    return cached


def bound(attack: AttackBase, ctx: VictimContext) -> AttackBase:
    """`attack` bound to the run's context (the dataset's normalisation, ...) where it has one."""
    return attack.bind(ctx.context) if ctx.context is not None else attack


def _evasion(cell: Cell) -> AttackBase:
    attack = cell.attack.obj
    if not isinstance(attack, AttackBase):
        raise UserError(f"{cell.attack.name} is not an evasion attack")
    return attack


def _transfer(ctx: VictimContext, cell: Cell, protection: Protection) -> Measured:
    """Replay the victim's adversarial examples on the protected model (paper Sec. 6.2)."""
    attack = _evasion(cell)
    batch = adversarial(ctx, attack, cell.seed)
    victim_pred = predict(ctx.model, batch.adversarial)
    with seeded(derive_seed("replay", cell.defense.name, cell.attack.name, cell.seed)):
        protected_pred = predict(protection.model, batch.adversarial)
    outcome = transfer_outcome(
        ctx.labels, ctx.clean_pred, victim_pred, protected_pred, batch.success
    )
    m_low, m_high = wilson_interval(outcome.n_recovered, outcome.n_adversarial)
    fields = {
        "m_adv": round(outcome.m_adv, 4),
        "n_attacked": outcome.n_attacked,
        "n_adversarial": outcome.n_adversarial,
        "n_misclassified": outcome.n_misclassified,
        "n_recovered": outcome.n_recovered,
        "n_changed_label": outcome.n_changed_label,
        "m_adv_wilson_low": round(m_low, 4),
        "m_adv_wilson_high": round(m_high, 4),
        PARASITE_FIT: list(protection.parasite_fits) or None,
    }
    counted = (ctx.clean_pred == ctx.labels) & batch.success & (victim_pred != ctx.labels)
    samples = samples_of(ctx.labels, ctx.clean_pred, victim_pred, protected_pred, batch, counted)
    return Measured(fields, samples, weaker_than_reference(ctx, attack, batch, cell.seed))


def weaker_than_reference(
    ctx: VictimContext, attack: AttackBase, batch: AdversarialBatch, seed: int
) -> list[str]:
    """An attack that fools fewer images than the reference it declares (PGD: FGSM on the
    same ε range) on the same model is almost certainly misconfigured: say so."""
    reference = attack.reference()
    if reference is None:
        return []
    weaker = int(batch.success.sum())
    stronger = int(adversarial(ctx, reference, seed).success.sum())
    if weaker >= stronger:
        return []
    return [f"{attack.name} fooled the victim on {weaker} images, {reference.name} on {stronger}"]


def _adaptive(ctx: VictimContext, cell: Cell, protection: Protection) -> Measured:
    """Attack the protected model itself; robust accuracy, never M_adv (a different question)."""
    attack = _evasion(cell)
    with seeded(derive_seed("adaptive", cell.defense.name, cell.attack.name, cell.seed)):
        attacking = bound(attack, ctx)
        batch = attacking.generate(protection.model, ctx.images, ctx.labels, seed=cell.seed)
        clean = predict(protection.model, ctx.images)
        attacked = predict(protection.model, batch.adversarial)
    victim_pred = predict(ctx.model, batch.adversarial)
    correct = clean == ctx.labels
    robust = correct & (attacked == ctx.labels)
    robust_accuracy = 100.0 * float(robust.double().mean())
    epsilons = batch.epsilon[batch.success & correct]
    warnings = []
    if attack.largest_epsilon() == 1.0 and robust_accuracy > 10.0:
        warnings.append(
            f"robust accuracy {robust_accuracy:.1f} % at eps = 1.0: "
            "the adaptive attack is not working (gradient masking?)"
        )
    fields = {
        "n_attacked": int(correct.sum()),
        "n_adversarial": int((correct & ~robust).sum()),
        "n_misclassified": int((~correct).sum()),
        "robust_accuracy": round(robust_accuracy, 4),
        "median_epsilon": round(float(epsilons.median()), 4) if len(epsilons) else None,
    }
    not_counted = torch.zeros(len(ctx.labels), dtype=torch.bool)  # adaptive: no M_adv
    samples = samples_of(ctx.labels, clean, victim_pred, attacked, batch, not_counted)
    return Measured(fields, samples, warnings)


def _extraction(ctx: VictimContext, cell: Cell, protection: Protection) -> Measured:
    """Query the protected model through an oracle; score what was recovered of the victim."""
    attack = cell.attack.obj
    if not isinstance(attack, ExtractionAttackBase):
        raise UserError(f"{cell.attack.name} is not an extraction attack")
    oracle = Oracle(
        protection.model,
        granularity=attack.granularity,
        monitors=protection.monitors,
        image_shape=tuple(ctx.images.shape[1:]),
    )
    with seeded(derive_seed("extraction", cell.defense.name, cell.attack.name, cell.seed)):
        scoring = {"labels": ctx.test_labels} if attack.needs_labels else {}
        result = attack.extract(ctx.model, oracle, ctx.test_images, seed=cell.seed, **scoring)
    reserved = {*RESULT_COLUMNS, *STORED_ONLY}
    check_metrics(cell.attack.name, result.metrics, attack.metric_docs, reserved)
    fields = {**result.metrics, "headline": attack.headline, "extraction": result.details}
    return Measured(fields)


MEASURE: dict[str, Callable[[VictimContext, Cell, Protection], Measured]] = {
    "transfer": _transfer,
    "adaptive": _adaptive,
    EXTRACTION: _extraction,
}


def samples_of(
    labels: torch.Tensor,
    clean: torch.Tensor,
    victim_pred: torch.Tensor,
    protected_pred: torch.Tensor,
    batch: AdversarialBatch,
    counted: torch.Tensor,
) -> Samples:
    """The per-image rows of a cell, in the store's SAMPLE_COLUMNS order."""
    return [
        (
            i,
            int(labels[i]),
            int(clean[i]),
            int(victim_pred[i]),
            int(protected_pred[i]),
            None if math.isnan(float(batch.epsilon[i])) else float(batch.epsilon[i]),
            int(batch.success[i]),
            int(counted[i]),
        )
        for i in range(len(labels))
    ]
