"""Checks on what a plugin returns, and automatic sanity warnings (AutoAttack `checks.py` idea).

Contract violations (not a module, wrong output shape, non-finite outputs, inputs or the
victim modified in place) fail the cell with a message naming the plugin. Sanity problems
that do not invalidate a number but should make a reader suspicious become warnings in the
`warnings` column.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import nn

from paraeval.errors import UserError


class PluginContractError(UserError):
    """A plugin returned something that breaks the documented contract."""


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def check_protected(
    defense: str,
    victim: nn.Module,
    before: dict[str, torch.Tensor],
    protected: nn.Module,
    probe: torch.Tensor,
) -> None:
    """Raise PluginContractError if `protected` breaks the Defense contract."""
    after = victim.state_dict()
    if any(not torch.equal(before[key], after[key]) for key in before):
        raise PluginContractError(f"defense {defense!r}: protect() modified the victim's weights")
    if not isinstance(protected, nn.Module):
        raise PluginContractError(
            f"defense {defense!r}: protect() returned {type(protected).__name__}, not a Module"
        )
    original = probe.clone()
    with torch.no_grad():
        classes = int(victim(probe[:1]).shape[1])
        output = protected(probe)
    if not torch.equal(probe, original):
        raise PluginContractError(f"defense {defense!r}: the protected model modifies its input")
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (len(probe), classes):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise PluginContractError(
            f"defense {defense!r}: the protected model returned {shape}, "
            f"expected [N, {classes}] logits"
        )
    if not bool(torch.isfinite(output).all()):
        raise PluginContractError(f"defense {defense!r}: the protected model returned NaN or inf")


def sanity_warnings(
    protected: nn.Module, tags: tuple[str, ...], probe: torch.Tensor, labels: torch.Tensor
) -> list[str]:
    """Warnings about a protected model: vanishing gradients, untagged randomness (a defense
    adds its own, e.g. the parasites' bias bound, through ``Protected.warnings``)."""
    warnings: list[str] = []
    x = probe.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(protected(x), labels)
    gradient = torch.autograd.grad(loss, x, allow_unused=True)[0]
    if gradient is None or float(gradient.abs().max()) < 1e-10:
        warnings.append("zero input gradients on the protected model (gradient masking?)")
    with torch.no_grad():
        randomized = not torch.equal(protected(probe), protected(probe))
    if randomized and "randomized" not in tags and "dynamic" not in tags:
        warnings.append("outputs change between identical queries but the defense is not tagged")
    return warnings


def check_metrics(
    attack: str, metrics: Mapping[str, Any], declared: Mapping[str, str], reserved: Collection[str]
) -> None:
    """An extraction attack's metrics become results.csv columns: each must be declared in
    its ``metric_docs`` (so a misspelled key fails the cell instead of adding a column) and
    none may take a `reserved` name (the schema's columns)."""
    undeclared = sorted(set(metrics) - set(declared))
    if undeclared:
        raise UserError(
            f"{attack} returned metrics it does not declare in metric_docs: {', '.join(undeclared)}"
        )
    taken = sorted(set(metrics) & set(reserved))
    if taken:
        raise UserError(f"{attack}'s metrics {', '.join(taken)} are results.csv columns")


#: A victim below this multiple of chance accuracy is flagged in every cell it measures.
NEAR_CHANCE = 2.0
#: A victim this far (pp) below the accuracy recorded when its weights were trained is flagged
#: (the same weights on the same images give the same accuracy; a GPU moves a few images).
BELOW_RECORDED_PP = 1.0


def weak_victim_warning(
    victim_accuracy: float, labels: torch.Tensor, recorded: float | None = None
) -> list[str]:
    """A warning when the victim's test accuracy is within NEAR_CHANCE x chance (100 % / the
    classes its test labels hold): untrained or damaged weights, whose numbers mean little;
    or more than BELOW_RECORDED_PP below the `recorded` accuracy of its cached weights."""
    classes = max(2, int(labels.unique().numel()))
    chance = 100.0 / classes
    warnings = []
    if victim_accuracy < NEAR_CHANCE * chance:
        warnings.append(
            f"victim accuracy {victim_accuracy:.1f} % is near chance ({chance:.1f} % for "
            f"{classes} classes): its weights look untrained or damaged"
        )
    below = None if recorded is None else recorded - victim_accuracy
    if below is not None and below > BELOW_RECORDED_PP:
        warnings.append(
            f"victim accuracy {victim_accuracy:.2f} % is {below:.2f} pp below the "
            f"{recorded:.2f} % recorded when its cached weights were trained: the weights or "
            "the test images differ"
        )
    return warnings
