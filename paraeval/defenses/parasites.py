"""Shared machinery of the parasite defenses: train (or load) parasites and insert them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from paraeval.api import Protected, RunContext
from paraeval.core.metrics import accuracy
from paraeval.core.seeding import derive_seed
from paraeval.datasets.idx import MNIST, load_mnist
from paraeval.defenses.parasite_reading import ParasiteReading
from paraeval.defenses.parasite_spec import ParasiteSpec
from paraeval.models.insertion import Placement, insert_parasites, submodule
from paraeval.models.layers import layers
from paraeval.models.parasite import BIAS_BOUND, ParasiticCNN
from paraeval.models.wrappers import PerChannel, RangeRecorder, Rescaled
from paraeval.training.parasite_cache import load_or_train_parasite
from paraeval.training.parasites import ParasiteConfig, ParasiteFit, TrainedParasite

DEFAULT_READING = ParasiteReading()
#: The paper's inputs: one grey 28x28 MNIST image.
MNIST_SHAPE = (1, 28, 28)


def layer_side(
    victim: nn.Module, placement: Placement, input_shape: tuple[int, ...] = MNIST_SHAPE
) -> int:
    """Side of the square maps the parasite at `placement` reads on one input: the output of
    the module :meth:`Placement.site` names (for an MLP's fc layer: its F neurons as one
    square map)."""
    site = placement.site(victim)
    submodule(victim, site)  # a ValueError naming the victim's layers when there is none
    layer = next(layer for layer in layers(victim, input_shape) if layer.name == site)
    if len(layer.shape) == 1:
        if not layer.square_count:
            raise ValueError(f"{site} has {layer.neurons} neurons, not a square")
        return math.isqrt(layer.neurons)
    _, height, width = layer.shape
    if not layer.square_maps:
        raise ValueError(f"{site} maps are {height}x{width}, not square")
    return int(height)


def layer_channels(
    victim: nn.Module, placement: Placement, input_shape: tuple[int, ...] = MNIST_SHAPE
) -> int:
    """Channel maps of the layer a whole-layer parasite at `placement` reads (1 for a flat one)."""
    site = placement.site(victim)
    layer = next(layer for layer in layers(victim, input_shape) if layer.name == site)
    return int(layer.shape[0]) if len(layer.shape) == 3 else 1


def read_spec(spec: ParasiteSpec, reading: ParasiteReading) -> ParasiteSpec:
    """`spec` under `reading`: where the placement's max-pool and neuron order fall, and where
    a whole-layer parasite after BN reads (``whole_site``: after the ReLU, or the BN's output)."""
    placement = spec.placement
    named = placement.module is not None  # the layer is named: no pool to place
    after_bn = (
        placement.neurons == "whole"
        and placement.position == "after"
        and not named
        and reading.whole_site == "after-bn"
    )
    placement = dataclasses.replace(
        placement,
        pool=reading.pool
        if placement.position == "after" and not (named or after_bn)
        else "before",
        order=reading.order,
        module=f"bn{placement.layer}" if after_bn else placement.module,
    )
    return dataclasses.replace(spec, placement=placement)


def parasite_config(
    spec: ParasiteSpec,
    victim: nn.Module,
    seed: int,
    stream: str,
    slot: int,
    reading: ParasiteReading = DEFAULT_READING,
    input_shape: tuple[int, ...] = MNIST_SHAPE,
    device: str = "cpu",
    candidate: int = 0,
    channel: int = 0,
) -> ParasiteConfig:
    """The training config of one parasite of a defense (`spec` already read, see read_spec).

    The seed is derived from the cell seed, a `stream` (the table) and the parasite's slot in
    its row, so rows of one table that use the same kind of parasite in the same slot share it
    (a parasite is trained independently of the victim, Sec. 5.3), while another seed changes
    the noise, the initialisation and the training order. The recipe comes from `reading`;
    ``bias_scope`` and ``bn_scale_shift`` only matter with BN, so a no-BN parasite is the same
    under both. Candidate 0 is the parasite of ``select=1``; candidate c > 0 (Sec. 5.3's
    "several CNNs ... trained independently") has its own seed, the same whatever `select` is,
    so the candidates of ``select=3`` are the first three of ``select=10``. Under
    ``whole_parasites=per-channel`` channel c > 0 has its own seed too (channel 0 is the
    shared parasite); under ``whole_side=16`` a whole-layer parasite is trained at 16x16.
    """
    whole = spec.placement.neurons == "whole"
    side = (
        (16 if reading.whole_side == "16" else layer_side(victim, spec.placement, input_shape))
        if whole
        else int(spec.placement.count**0.5)
    )
    return ParasiteConfig(
        batch_norm=spec.batch_norm,
        bias=spec.bias,
        sigma=spec.sigma,
        side=side,
        seed=candidate_seed(seed, stream, slot, candidate, channel),
        bias_scope=reading.bias_scope if spec.batch_norm else "conv",
        init=reading.init,
        epochs=reading.epochs,
        lr=reading.lr,
        optimizer=reading.optimizer,
        schedule=reading.schedule,
        budget=reading.budget,
        until=reading.until,
        batch_size=reading.batch,
        bn_affine=reading.bn_scale_shift == "learned" or not spec.batch_norm,
        device=device,
    )


def candidate_seed(seed: int, stream: str, slot: int, candidate: int, channel: int = 0) -> int:
    """The seed of one candidate parasite (candidate 0, channel 0: the seed parasites always
    had)."""
    extra = (("candidate", candidate) if candidate else ()) + (
        ("channel", channel) if channel else ()
    )
    return derive_seed("parasite", seed, stream, slot, *extra)


def candidate_configs(
    read: ParasiteSpec,
    victim: nn.Module,
    seed: int,
    stream: str,
    slot: int,
    reading: ParasiteReading,
    context: RunContext | None,
) -> list[list[ParasiteConfig]]:
    """Per candidate of one placement (``select`` of them), the configs of its parasites: one,
    or one per channel map under ``whole_parasites=per-channel`` on a whole-layer placement."""
    shape, device = input_shape(context), context.device if context else "cpu"
    per_channel = read.placement.neurons == "whole" and reading.whole_parasites == "per-channel"
    units = layer_channels(victim, read.placement, shape) if per_channel else 1
    return [
        [
            parasite_config(
                read, victim, seed, stream, slot, reading, shape, device, candidate, channel
            )
            for channel in range(units)
        ]
        for candidate in range(reading.select)
    ]


def parasite_configs(
    victim: nn.Module,
    specs: Sequence[ParasiteSpec],
    seed: int,
    stream: str,
    reading: ParasiteReading = DEFAULT_READING,
    context: RunContext | None = None,
) -> list[ParasiteConfig]:
    """The training configs of the parasites `protect_with` inserts for these arguments."""
    return [
        config
        for slot, spec in enumerate(specs)
        for candidate in candidate_configs(
            read_spec(spec, reading), victim, seed, stream, slot, reading, context
        )
        for config in candidate
    ]


def input_shape(context: RunContext | None) -> tuple[int, ...]:
    """One input's shape: the run's dataset's (MNIST's when no run hands one over)."""
    return context.input_shape if context is not None else MNIST_SHAPE


#: MNIST training images (never test images) whose victim activations recalibrate the BNs.
CALIBRATION_IMAGES = 5_000

Bounds = tuple[float, float] | None


def protect_with(
    victim: nn.Module,
    specs: Sequence[ParasiteSpec],
    seed: int,
    stream: str,
    reading: ParasiteReading = DEFAULT_READING,
    context: RunContext | None = None,
) -> Protected:
    """Insert one trained parasite per spec (under `reading`), with their fit as information
    and a warning for every parasite whose bias breaks the paper's bound. BN statistics are
    recalibrated on the run's training images (`context`; the default MNIST folder without).
    With ``select`` > 1 each placement's parasite is the defender's pick among its candidates
    (:func:`select_candidate`), placements in order, each scored with the earlier ones in."""
    entries: list[tuple[Placement, nn.Module]] = []
    fits: list[ParasiteFit] = []
    selections, warnings = [], []
    reference: float | None = None  # the victim's validation accuracy, measured once
    for slot, spec in enumerate(specs):
        read = read_spec(spec, reading)
        candidates = candidate_configs(read, victim, seed, stream, slot, reading, context)
        bounds = neuron_range(victim, entries, read.placement, reading, context)
        if len(candidates) == 1:
            trained = [load_or_train_parasite(config) for config in candidates[0]]
        else:
            trained, selection = select_candidate(
                victim, entries, read.placement, candidates, reading, context, bounds, reference
            )
            reference = selection["victim_validation_accuracy"]
            selections.append({"parasite": read.label, **selection})
        entries.append((read.placement, arranged(trained, bounds)))
        for channel, parasite in enumerate(trained):
            label = read.label + (f", channel {channel}" if len(trained) > 1 else "")
            fits.append(ParasiteFit(**parasite.fit, parasite=label))
            warnings += bias_warnings(spec, parasite.fit)
    protected = build_protected(victim, entries, reading, context)
    info: dict[str, Any] = {"selection": selections} if selections else {}
    return Protected(protected, info, tuple(warnings), parasite_fits=tuple(fits))


def arranged(trained: list[TrainedParasite], bounds: Bounds) -> nn.Module:
    """One placement's module: its parasite, or one per channel map, rescaled when `bounds`."""
    module = trained[0].model if len(trained) == 1 else PerChannel([t.model for t in trained])
    return Rescaled(module, *bounds) if bounds is not None else module


@torch.no_grad()
def neuron_range(
    victim: nn.Module,
    earlier: list[tuple[Placement, nn.Module]],
    placement: Placement,
    reading: ParasiteReading,
    context: RunContext | None,
) -> Bounds:
    """Under ``rescale=unit``: the smallest and largest value of the neurons the parasite at
    `placement` reads (after the `earlier` placements' parasites), over the calibration images;
    None otherwise. A constant range is widened to one unit so that it can be rescaled."""
    if reading.rescale == "none":
        return None
    recorder = RangeRecorder()
    model = build_protected(victim, [*earlier, (placement, recorder)], reading, context)
    recorder.low, recorder.high = float("inf"), float("-inf")  # forget the calibration pass
    images = calibration_images(context)
    for start in range(0, len(images), 1000):
        model(images[start : start + 1000])
    low, high = recorder.low, recorder.high
    return (low, high) if high > low else (low, low + 1.0)


def build_protected(
    victim: nn.Module,
    entries: list[tuple[Placement, nn.Module]],
    reading: ParasiteReading,
    context: RunContext | None,
) -> nn.Module:
    """The victim with `entries` inserted, its parasites' BNs recalibrated under `reading`."""
    protected = insert_parasites(victim, entries)
    if reading.bn_stats == "recalibrated":
        recalibrate_batch_norms(protected, calibration_images(context))
    return protected


#: The defender's validation split: the last VALIDATION_IMAGES training images (disjoint
#: from the first CALIBRATION_IMAGES that recalibrate BNs; never a test image).
VALIDATION_IMAGES = 5_000


def select_candidate(
    victim: nn.Module,
    earlier: list[tuple[Placement, nn.Module]],
    placement: Placement,
    candidates: list[list[ParasiteConfig]],
    reading: ParasiteReading,
    context: RunContext | None,
    bounds: Bounds = None,
    reference: float | None = None,
) -> tuple[list[TrainedParasite], dict[str, Any]]:
    """The defender's selection (paper Sec. 5.3: several parasites "are trained independently
    from the victim network, and the victim can then select one or several CNNs adapted to
    the network at hand", the noise chosen "so as to avoid a significant drop in the original
    model's accuracy").

    Each candidate (its parasite, or one per channel map) is inserted at `placement` (after the
    `earlier` placements' chosen parasites) and scored by its accuracy on the validation split
    of the *training* set; the victim's own accuracy there is the reference, drop = victim -
    protected (pp). Without ``max_drop`` the candidate with the smallest drop is kept (ties:
    the earlier candidate); with it, the first candidate in order whose drop is at most
    ``max_drop`` is kept and no later one is trained, else the smallest drop (rescaled into
    `bounds` when given). Returns the kept parasite(s) and what was
    measured: every candidate's validation accuracy, the victim's (`reference` when the caller
    measured it already), the kept index and drop.
    """
    images, labels = validation_split(context)
    reference = accuracy(victim, images, labels) if reference is None else reference

    def within(score: float) -> bool:
        return reading.max_drop is not None and reference - score <= reading.max_drop

    scored: list[tuple[float, list[TrainedParasite]]] = []
    for configs in candidates:
        trained = [load_or_train_parasite(config) for config in configs]
        inserted = (placement, arranged(trained, bounds))
        model = build_protected(victim, [*earlier, inserted], reading, context)
        scored.append((accuracy(model, images, labels), trained))
        if within(scored[-1][0]):
            break  # the only candidate within the bound is the last one scored
    bounded = within(scored[-1][0])
    kept = len(scored) - 1 if bounded else max(range(len(scored)), key=lambda i: (scored[i][0], -i))
    return scored[kept][1], {
        "candidates": len(candidates),
        "trained": len(scored),
        "kept": kept,
        "validation_images": len(labels),
        "victim_validation_accuracy": reference,
        "candidate_validation_accuracy": [round(acc, 4) for acc, _ in scored],
        "kept_drop_pp": round(reference - scored[kept][0], 4),
        "within_max_drop": bounded if reading.max_drop is not None else None,
    }


def validation_split(context: RunContext | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The last VALIDATION_IMAGES training images of the run (or of the default MNIST folder)
    and their labels: the defender selects on data it owns, never on the test images the
    rows are measured on. The victim was trained on them too (its recipe uses the whole
    training split), so they measure what inserting a parasite costs, not generalisation."""
    if context is not None:
        if context.train_labels is None:
            raise ValueError("select > 1 needs the run's training labels (RunContext.train_labels)")
        return context.train_images[-VALIDATION_IMAGES:], context.train_labels[-VALIDATION_IMAGES:]
    mnist = load_mnist()
    return (
        MNIST.as_float(mnist.train_images[-VALIDATION_IMAGES:]),
        mnist.train_labels[-VALIDATION_IMAGES:],
    )


def bias_warnings(spec: ParasiteSpec, fit: ParasiteFit) -> list[str]:
    """A warning when a ``bias small`` parasite's ||beta||_2 is not below the paper's 0.05
    (Sec. 5.3); the training projects beta inside, so this flags a broken projection."""
    if spec.bias == "small" and fit.get("bias_norm", 0) >= BIAS_BOUND:
        return [f"parasite bias bound violated: ||beta|| = {fit['bias_norm']:.4f}"]
    return []


def calibration_images(context: RunContext | None = None) -> torch.Tensor:
    """The first CALIBRATION_IMAGES training images of the run (or of the default folder)."""
    if context is not None:
        return context.train_images[:CALIBRATION_IMAGES]
    mnist = load_mnist()
    return MNIST.as_float(mnist.train_images[:CALIBRATION_IMAGES])


@torch.no_grad()
def recalibrate_batch_norms(protected: nn.Module, images: torch.Tensor) -> None:
    """Re-estimate the parasites' BN statistics on the activations they receive in the victim.

    Paper Sec. 6.1: the parasite's BN layers "normalize their input, ensuring a mean of 0 and
    a standard deviation of 1"; Sec. 5.3: they keep the new hyperplanes near "the working
    space". Statistics from the parasite's own training inputs (uniform in [0, 1]) do neither
    once the parasite sits on a victim's activations, which have another scale and sign. So
    the running mean and variance of every parasite BN are re-estimated (cumulative average)
    on the victim's activations for MNIST *training* images, and the BNs then run in eval
    mode like any deployed BN; the weights and the learned BN scale/shift are unchanged. The
    victim's own BN layers are not touched. `bn_stats="training"` keeps the statistics of
    the parasite's training inputs instead (measured by the readings study, docs/readings.md).
    """
    norms = [
        bn
        for module in protected.modules()
        if isinstance(module, ParasiticCNN)
        for bn in module.batch_norms()
    ]
    if not norms:
        return
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over all calibration batches
        bn.train()
    for start in range(0, len(images), 1000):
        protected(images[start : start + 1000])
    for bn in norms:
        bn.eval()
