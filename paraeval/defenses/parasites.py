"""Shared machinery of the parasite defenses: train (or load) parasites and insert them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from ..models.insertion import Placement, insert_parasites
from ..paper import ParasiteSpec
from ..training import ParasiteConfig, TrainedParasite, derive_seed, load_or_train_parasite


def layer_side(victim: nn.Module, layer: int) -> int:
    """Side of the square maps that conv{layer} of `victim` produces on a 28x28 input."""
    shapes: list[torch.Size] = []
    conv = getattr(victim, f"conv{layer}")
    handle = conv.register_forward_hook(lambda _m, _i, out: shapes.append(out.shape))
    try:
        with torch.no_grad():
            victim.eval()(torch.zeros(1, 1, 28, 28))
    finally:
        handle.remove()
    _, _, height, width = shapes[0]
    if height != width:
        raise ValueError(f"conv{layer} maps are {height}x{width}, not square")
    return int(height)


def parasite_config(
    spec: ParasiteSpec, victim: nn.Module, seed: int, stream: str, slot: int
) -> ParasiteConfig:
    """The training config of one parasite of a defense.

    The seed is derived from the cell seed, a `stream` (the table) and the parasite's slot in
    its row, so rows of one table that use the same kind of parasite in the same slot share it
    (a parasite is trained independently of the victim, Sec. 5.3), while another seed changes
    the noise, the initialisation and the training order.
    """
    side = (
        layer_side(victim, spec.placement.layer)
        if spec.placement.neurons == "whole"
        else int(spec.placement.count**0.5)
    )
    return ParasiteConfig(
        batch_norm=spec.batch_norm,
        bias=spec.bias,
        sigma=spec.sigma,
        side=side,
        seed=derive_seed("parasite", seed, stream, slot),
    )


def protect_with(
    victim: nn.Module,
    specs: Sequence[ParasiteSpec],
    seed: int,
    stream: str,
    overrides: dict[str, object] | None = None,
) -> nn.Module:
    """Insert one trained parasite per spec; the result carries the parasites' fit."""
    entries: list[tuple[Placement, nn.Module]] = []
    fits = []
    for slot, spec in enumerate(specs):
        config = parasite_config(spec, victim, seed, stream, slot)
        if overrides:
            config = replace(config, **overrides)  # type: ignore[arg-type]
        trained: TrainedParasite = load_or_train_parasite(config)
        entries.append((spec.placement, trained.model))
        fits.append({"parasite": spec.label, **trained.fit})
    protected = insert_parasites(victim, entries)
    protected.paraeval_info = {"parasite_fit": fits}  # type: ignore[assignment]
    return protected
