"""Parasite defenses for the `mlp` victim (not in the paper; for functionally-equivalent
extraction, which handles two-layer networks only).

The parasite takes the whole hidden layer (64 neurons as one 8x8 map) after its ReLU and
writes its output back, as Table 2 does for a LeNet layer: the paper's architecture and
training (Sec. 6.1) on an 8x8 input, without or with BatchNorm, bias `none` or `small`,
sigma 0.1, 0.2, 0.3. Names: ``mlp-{nobn|bn}-{none|small}-s{sigma}``. The reading options
of the paper rows that concern a parasite's training and selection apply (``pool``,
``order``, ``row12`` and the whole-layer options concern LeNet placements only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from paraeval.api import DefenseBase, Protected
from paraeval.defenses.parasite_reading import WHOLE_LAYER_OPTIONS, ParasiteReading
from paraeval.defenses.parasite_spec import ParasiteSpec
from paraeval.defenses.parasites import parasite_configs, protect_with
from paraeval.errors import UserError
from paraeval.hookspecs import hookimpl
from paraeval.models.insertion import Placement
from paraeval.models.parasite import BiasMode
from paraeval.training.parasites import ParasiteConfig

#: Reading options that place a parasite in a LeNet: meaningless on the MLP's hidden layer.
PLACEMENT_ONLY = ("pool", "order", "row12", "table3_lines", *WHOLE_LAYER_OPTIONS)

HIDDEN_LAYER = Placement(layer=1, position="after", neurons="whole")
SIGMAS = (0.1, 0.2, 0.3)
BIAS_MODES: tuple[BiasMode, ...] = ("none", "small")


class MLPParasite(DefenseBase):
    """One parasite on the MLP's whole hidden layer."""

    victims = ("mlp",)
    options_class = ParasiteReading
    refused_options = PLACEMENT_ONLY
    options: ParasiteReading

    def __init__(self, batch_norm: bool, bias: BiasMode, sigma: float) -> None:
        self.options = ParasiteReading()
        self.spec = ParasiteSpec(HIDDEN_LAYER, batch_norm, bias, sigma)
        self.name = f"mlp-{'bn' if batch_norm else 'nobn'}-{bias}-s{sigma}"
        self.description = (
            f"The whole hidden layer of `mlp` (64 neurons as 8x8), after ReLU: "
            f"{'BN' if batch_norm else 'no BN'}, bias {bias}, sigma {sigma}"
        )
        self.tags = ("mlp", "parasites")

    def key_options(self) -> dict[str, Any]:
        """The reading's training and selection options (not the LeNet placement ones)."""
        return {k: v for k, v in self.options.key_dict().items() if k not in PLACEMENT_ONLY}

    def configure(self, **given: str) -> MLPParasite:
        placing = sorted(set(given) & set(PLACEMENT_ONLY))
        if placing:
            raise UserError(
                f"{self.name}: {', '.join(placing)} place parasites in a LeNet "
                "layer; the MLP's parasite takes its whole hidden layer"
            )
        return super().configure(**given)

    def parasite_configs(self, model: nn.Module, *, seed: int) -> list[ParasiteConfig]:
        return parasite_configs(model, [self.spec], seed, "mlp", self.options, self.context)

    def protect(self, model: nn.Module, *, seed: int) -> Protected:
        return protect_with(model, [self.spec], seed, "mlp", self.options, self.context)


@hookimpl
def register_defenses(register: Callable[[object], None]) -> None:
    for batch_norm in (False, True):
        for bias in BIAS_MODES:
            for sigma in SIGMAS:
                register(MLPParasite(batch_norm, bias, sigma))
