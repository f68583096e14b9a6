"""The plugin contract: what a defense and an attack are, with every optional member declared.

A plugin object needs only ``name``, ``description`` and ``protect`` (a defense) or
``generate`` / ``extract`` (an attack); the :class:`Defense` and :class:`Attack` protocols say
so, and a plain object written against them keeps working (the registry wraps it once, with
:func:`as_defense` / :func:`as_attack`, the one place that reads a plain object's optional
members). Subclassing :class:`DefenseBase`, :class:`AttackBase` or
:class:`ExtractionAttackBase` gives every optional member its default, typed options
(:mod:`paraeval.options`) and ``configure``. The core reads plugins only through these classes.

What flows back: a defense's ``protect`` returns a module, or :class:`Protected` (the module
plus information for the results, warnings and query monitors). An evasion attack returns an
:class:`AdversarialBatch`; an extraction attack queries an :class:`Oracle` (never the protected
module) and returns an :class:`ExtractionResult` with any metrics, its ``headline`` naming the
one the summary shows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

import torch
from torch import nn

from paraeval.datasets import DatasetBase as DatasetBase
from paraeval.datasets import Splits as Splits
from paraeval.errors import UserError
from paraeval.models.victim_base import Recipe as Recipe
from paraeval.models.victim_base import VictimBase as VictimBase
from paraeval.plugin.base import Plugin as Plugin
from paraeval.plugin.oracle import GRANULARITIES as GRANULARITIES
from paraeval.plugin.oracle import Granularity as Granularity
from paraeval.plugin.oracle import Monitor as Monitor
from paraeval.plugin.oracle import Oracle as Oracle
from paraeval.plugin.oracle import QueryBudgetExceeded as QueryBudgetExceeded
from paraeval.plugin.oracle import StreamDetector as StreamDetector
from paraeval.plugin.oracle import float64_copy as float64_copy

if TYPE_CHECKING:
    from paraeval.training.parasites import ParasiteConfig, ParasiteFit


@dataclass(frozen=True)
class Protected:
    """What ``protect`` may return instead of a bare module.

    model          the protected model: the victim's inputs [N, C, H, W] -> logits
                   [N, classes]
    info           JSON-serialisable facts stored with every cell (a selection's candidates,
                   ...)
    warnings       sanity problems the defense found in itself (shown in results.csv)
    monitors       called with every batch of queries an extraction attack sends (a stateful
                   defense watching its query stream attaches itself here)
    parasite_fits  each inserted parasite's fit to x + N
                   (:class:`paraeval.training.parasites.ParasiteFit`), stored with every
                   transfer cell: the report's fit table and the readings' fit rule read it
    """

    model: nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    parasite_fits: tuple[ParasiteFit, ...] = ()

    @staticmethod
    def of(returned: nn.Module | Protected) -> Protected:
        """Whatever ``protect`` returned, as a Protected."""
        return returned if isinstance(returned, Protected) else Protected(returned)


@dataclass(frozen=True)
class RunContext:
    """What a run hands its defenses and attacks (:meth:`Bindable.bind`): its training images
    (never its test images) and what it knows of their dataset.

    train_images  float [N, C, H, W] in [0, 1], the victim's dataset's training split
    data_dir      the folder the run read its data from
    device        where the run's models compute ("cpu" or "cuda"; paraeval.core.devices): what a
                  defense trains may use it; its `protect` still returns a CPU module
    pixel_std     the dataset's declared normalisation std (DatasetBase.pixel_std); None: not
                  declared (:attr:`normalization_std` computes it)
    train_labels  int64 [N], the labels of `train_images` (None where a caller has none: a
                  defense that needs them, e.g. to select among candidate parasites on a
                  validation split, says so)
    """

    train_images: torch.Tensor
    data_dir: Path | None = None
    device: str = "cpu"
    pixel_std: float | None = None
    train_labels: torch.Tensor | None = None

    @cached_property
    def normalization_std(self) -> float:
        """The unit of "normalised" input steps: the declared std, else the training pixels'
        (computed once per context)."""
        if self.pixel_std is not None:
            return self.pixel_std
        return float(self.train_images.double().std())

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape [C, H, W]."""
        return tuple(self.train_images.shape[1:])


@dataclass
class AdversarialBatch:
    """What an evasion attack returns for N images.

    adversarial  float [N, C, H, W] in [0, 1]: the examples (the clean image where the attack
                 gave up)
    success      bool [N]: the example is adversarial on the model it was crafted on
    epsilon      float [N]: the perturbation budget at which it became adversarial (NaN if never)
    """

    adversarial: torch.Tensor
    success: torch.Tensor
    epsilon: torch.Tensor


@dataclass
class ExtractionResult:
    """What a model-extraction attack returns for one (victim, protected model) pair.

    metrics  flat numbers (or short strings), each declared in the attack's ``metric_docs``;
             every one becomes a results.csv column
    details  rows for DIR/extraction.csv (e.g. one per kind of line searched)
    """

    metrics: dict[str, float | int | str | None]
    details: list[dict[str, Any]]


@runtime_checkable
class Defense(Protocol):
    """The minimal defense (DESIGN "Plugin API"): a plugin written against it works forever."""

    name: str
    description: str

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module: ...


@runtime_checkable
class Attack(Protocol):
    """The minimal evasion attack."""

    name: str
    description: str

    def generate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> AdversarialBatch: ...


class Applicable(Plugin):
    """A defense or an attack: it runs on some victims, and says which and why not."""

    def applies_to(self, victim: VictimBase, dataset: DatasetBase) -> bool:
        """Whether it runs on `victim` (classifying `dataset`): by default, on the victims it
        names (all when it names none)."""
        return not self.victims or victim.name in self.victims

    def skip_reason(self, victim: str) -> str:
        """Why it does not apply to the victim named `victim` (the run's note)."""
        return f"it is defined for {', '.join(self.victims)}"


class Bindable(Applicable):
    """A plugin the runner hands its :class:`RunContext` before using it.

    context  the run's :class:`RunContext` (set by :meth:`bind`; None outside a run)
    """

    context: RunContext | None = None

    def bind(self, context: RunContext) -> Self:
        """A copy that knows the run's data (no module globals: the runner hands it over)."""
        bound = copy.copy(self)
        bound.context = context
        return bound


class Published(Protocol):
    """Published values a defense reproduces (its ``paper`` member), and what measured them:
    the cells of that attack in that mode carry them beside the measured ones (results.csv's
    ``paper_accuracy``, ``paper_m_adv``). The paper's rows (:class:`paraeval.study.paper.PaperRow`)
    are one kind; a plugin may bring its own."""

    @property
    def accuracy(self) -> float: ...
    @property
    def m_adv(self) -> float: ...
    @property
    def attack(self) -> str: ...
    @property
    def mode(self) -> str: ...


class DefenseBase(Bindable):
    """A defense with every optional member declared (subclass it, override ``protect``).

    paper     the published values it reproduces (:class:`Published`), or None
    stateful  True when answers depend on earlier queries: the runner then calls ``reset()``
              before every cell's attack, after the accuracy pass (which never enters the
              stream an attack sees)
    context   the run's :class:`RunContext` (set by :meth:`bind` before ``protect``)
    """

    paper: Published | None = None
    stateful: bool = False

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module | Protected:
        """The protected copy of `model` (never modify `model`), seeded by `seed`."""
        raise NotImplementedError

    def parasite_configs(self, model: nn.Module, *, seed: int) -> list[ParasiteConfig]:
        """The parasites ``protect`` will train, so the runner trains them ahead, in parallel."""
        return []

    def reset(self) -> None:
        """Forget earlier queries (stateful defenses)."""


class AttackBase(Bindable):
    """An evasion attack with every optional member declared.

    kind     "evasion" (crafts examples) or "extraction" (see :class:`ExtractionAttackBase`)
    context  the run's :class:`RunContext` (set by :meth:`bind` before ``generate``; e.g.
             the dataset's normalisation std for steps in normalised units)
    """

    kind: ClassVar[str] = "evasion"

    def generate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> AdversarialBatch:
        """Adversarial examples crafted on `model` (the victim, in the paper's transfer
        setting; the protected model with ``mode=adaptive``)."""
        raise NotImplementedError

    def reference(self) -> AttackBase | None:
        """An attack this one must not be weaker than (an iterative attack names its one-step
        version); the runner warns when it fools fewer images on the same model."""
        return None

    def largest_epsilon(self) -> float | None:
        """The largest L-infinity perturbation it tries, in pixels of a [0, 1] image (None: it
        has no such bound). At 1.0 every image is reachable, so the runner warns when much of
        the protected model's accuracy survives an adaptive attack (gradient masking?)."""
        return None


class ExtractionAttackBase(Applicable):
    """A model-extraction attack: queries an :class:`Oracle`, scores against the victim.

    granularity  what the oracle answers: logits, probabilities or the label
    headline     the metric the summary shows for this attack (a key of its metrics)
    needs_labels ``extract`` also gets ``labels=`` (true test labels, for scoring only)
    metric_docs  metric name -> meaning, for docs/outputs.md; every metric ``extract``
                 returns must be declared here (an undeclared one fails its cell)
    """

    kind: ClassVar[str] = "extraction"
    granularity: Granularity = "logits"
    headline: str | None = None
    #: True: ``extract`` also receives ``labels=`` (the test images' true labels, for scoring
    #: only, e.g. a stolen model's test accuracy).
    needs_labels: ClassVar[bool] = False
    metric_docs: ClassVar[dict[str, str]] = {}

    def extract(
        self, victim: nn.Module, oracle: Oracle, images: torch.Tensor, *, seed: int
    ) -> ExtractionResult:
        """Query `oracle` (the protected model as a black box); `victim` is white-box ground
        truth for scoring only; `images` are test images for in-domain queries."""
        raise NotImplementedError


class PluginDefense(DefenseBase):
    """A plain defense object (name, description, protect) seen through :class:`DefenseBase`."""

    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin
        self.name = plugin.name
        self.description = plugin.description
        members = _declared(plugin, tags=(), victims=(), paper=None, stateful=False)
        self.tags, self.victims = tuple(members["tags"]), tuple(members["victims"])
        self.input_shapes, self.class_counts = _data_declarations(plugin)
        self.paper, self.stateful = members["paper"], bool(members["stateful"])

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module | Protected:
        returned: nn.Module | Protected = self.plugin.protect(model, seed=seed)
        return returned

    def configure(self, **given: str) -> Self:
        return type(self)(_configured(self.plugin, "defense", given))

    def key_options(self) -> dict[str, Any]:
        return _plain_options(self.plugin)

    def parasite_configs(self, model: nn.Module, *, seed: int) -> list[ParasiteConfig]:
        declared = _declared(self.plugin, parasite_configs=None)["parasite_configs"]
        return list(declared(model, seed=seed)) if declared else []

    def reset(self) -> None:
        reset = _declared(self.plugin, reset=None)["reset"]
        if reset is not None:
            reset()


class PluginAttack(AttackBase):
    """A plain evasion attack object (name, description, generate) seen through AttackBase."""

    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin
        self.name = plugin.name
        self.description = plugin.description
        members = _declared(plugin, tags=(), victims=())
        self.tags, self.victims = tuple(members["tags"]), tuple(members["victims"])
        self.input_shapes, self.class_counts = _data_declarations(plugin)

    def generate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> AdversarialBatch:
        batch: AdversarialBatch = self.plugin.generate(model, images, labels, seed=seed)
        return batch

    def configure(self, **given: str) -> Self:
        return type(self)(_configured(self.plugin, "attack", given))

    def key_options(self) -> dict[str, Any]:
        return _plain_options(self.plugin)


def as_defense(plugin: Any) -> DefenseBase:
    """`plugin` as a :class:`DefenseBase` (itself when it already is one)."""
    return plugin if isinstance(plugin, DefenseBase) else PluginDefense(plugin)


def as_attack(plugin: Any) -> AttackBase | ExtractionAttackBase:
    """`plugin` as an attack base class (itself when it already is one)."""
    if isinstance(plugin, AttackBase | ExtractionAttackBase):
        return plugin
    return PluginAttack(plugin)


def _declared(plugin: Any, **defaults: Any) -> dict[str, Any]:
    """The optional members of a plain plugin object, with the contract's defaults (the one
    place where a plain object's optional members are looked up)."""
    return {name: getattr(plugin, name, default) for name, default in defaults.items()}


def _data_declarations(plugin: Any) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """A plain plugin's declared input shapes and class counts (() = any)."""
    members = _declared(plugin, input_shapes=(), class_counts=())
    shapes = tuple(tuple(shape) for shape in members["input_shapes"])
    return shapes, tuple(members["class_counts"])


def _configured(plugin: Any, kind: str, given: dict[str, str]) -> Any:
    configure = _declared(plugin, configure=None)["configure"]
    if configure is None:
        raise UserError(f"{kind} {plugin.name!r} takes no options")
    return configure(**given)


def _plain_options(plugin: Any) -> dict[str, Any]:
    options = _declared(plugin, options=None)["options"]
    return dict(options) if isinstance(options, dict) else {}
