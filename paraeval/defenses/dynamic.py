"""`dynamic-parasite`: a fresh random parasite and location for every query (paper Remark 1).

The paper suggests, without measuring it, that "from a client query to another, different
parasitic CNNs can be added in random places of the server's NN architecture". Here a query is
one input image: for every sample of every forward call, one variant (parasite x location) is
drawn from a seeded generator, so two identical queries may get different answers. The draw
is per sample rather than per batch so that batching by the server (or by paraeval) does not
change what a single client query sees. The generator is seeded by the cell seed, so a run is
reproducible given the same sequence of queries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
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

#: Reading options of paper rows that no variant has (row 12's layout, whole layers).
ROW_ONLY = ("row12", "table3_lines", *WHOLE_LAYER_OPTIONS)
#: Default pool: the four parasite kinds of Table 1 (sigma 0.2) ...
DEFAULT_PARASITES: tuple[tuple[bool, BiasMode], ...] = (
    (False, "none"), (False, "small"), (True, "none"), (True, "small")
)  # fmt: skip
#: ... at the first or last 16x16 neurons of conv2, after BN and activation.
DEFAULT_LOCATIONS = (
    Placement(layer=2, position="after", neurons="first"),
    Placement(layer=2, position="after", neurons="last"),
)


class RandomVariant(nn.Module):
    """Routes each sample to one of several protected variants, drawn at random."""

    def __init__(self, variants: list[nn.Module], seed: int) -> None:
        super().__init__()
        self.variants = nn.ModuleList(variants)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        choice = torch.randint(len(self.variants), (x.shape[0],), generator=self.generator)
        pieces = [
            (choice == index, variant(x[choice == index]))
            for index, variant in enumerate(self.variants)
            if bool((choice == index).any())
        ]
        first = pieces[0][1]
        result = first.new_empty((x.shape[0], first.shape[1]))
        for mask, out in pieces:
            result[mask] = out
        return result


class DynamicParasite(DefenseBase):
    name = "dynamic-parasite"
    description = (
        "Paper Remark 1 (never measured in the paper): for every query image a parasite "
        "(4 kinds, sigma 0.2) and a location (first/last 16x16 neurons of conv2, after BN+act) "
        "are drawn at random."
    )
    tags = ("parasites", "dynamic")
    victims = ("vm", "vm-batch")
    options_class = ParasiteReading
    options: ParasiteReading
    refused_options = ROW_ONLY

    def __init__(
        self,
        parasites: tuple[tuple[bool, BiasMode], ...] = DEFAULT_PARASITES,
        locations: tuple[Placement, ...] = DEFAULT_LOCATIONS,
        sigma: float = 0.2,
        reading: ParasiteReading | None = None,
    ) -> None:
        self.parasites = parasites
        self.locations = locations
        self.sigma = sigma
        self.options = reading or ParasiteReading()

    @property
    def reading(self) -> ParasiteReading:
        return self.options

    def key_options(self) -> dict[str, Any]:
        """The pool of variants and the reading (``row12`` aside), hashed into cell keys."""
        return {
            "parasites": [f"{'bn' if bn else 'nobn'}-{bias}" for bn, bias in self.parasites],
            "locations": [loc.label for loc in self.locations],
            "sigma": self.sigma,
            **{k: v for k, v in self.reading.key_dict().items() if k not in ROW_ONLY},
        }

    def configure(self, **given: str) -> DynamicParasite:
        """The reading options of the paper rows (those of row 12 and of whole-layer rows
        aside: no variant is either) apply to every variant."""
        refused = sorted(set(given) & set(ROW_ONLY))
        if refused:
            raise UserError(
                f"{self.name}: {', '.join(refused)} concern Table 3's "
                "layout or whole-layer rows (Table 2) only; its variants take 16x16 "
                "neurons"
            )
        return super().configure(**given)

    def _variants(self) -> list[tuple[ParasiteSpec, str]]:
        """(spec, stream) of every variant: each parasite kind at each location."""
        return [
            (ParasiteSpec(location, batch_norm, bias, self.sigma), f"dynamic{kind}")
            for kind, (batch_norm, bias) in enumerate(self.parasites)
            for location in self.locations
        ]

    def parasite_configs(self, model: nn.Module, *, seed: int) -> list[ParasiteConfig]:
        """What `protect` will train, so the runner can train it ahead, in parallel."""
        return [
            config
            for spec, stream in self._variants()
            for config in parasite_configs(model, [spec], seed, stream, self.reading, self.context)
        ]

    def protect(self, model: nn.Module, *, seed: int) -> Protected:
        variants = [
            protect_with(model, [spec], seed, stream, self.reading, self.context)
            for spec, stream in self._variants()
        ]
        routed = RandomVariant([v.model for v in variants], seed).eval()
        fits = tuple(fit for v in variants for fit in v.parasite_fits)
        warnings = tuple(w for v in variants for w in v.warnings)
        return Protected(routed, {}, warnings, parasite_fits=fits)


@hookimpl
def register_defenses(register: Callable[[object], None]) -> None:
    register(DynamicParasite())
