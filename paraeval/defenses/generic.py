"""`parasite`: the paper's parasitic CNN inserted into a victim at any layer, by name.

The paper places its parasites at two fixed points of LeNet (Sec. 6.3); a user who wants to
know what a parasite does to *their* network names the layer instead:

    paraeval inspect vm                      # every layer, its output shape, what fits
    paraeval run --defenses 'parasite:layer=conv2,neurons=first:256' --attacks fgsm

The parasite rewrites the named module's output: name the convolution itself for "before BN
and activation" (`conv2`), the activation for "after" (`act2`), the pooling for after the
max-pool (`pool2`). `neurons` selects what it reads: the first or last n neurons in flattened
order (n a square: the parasite's input is one n-side map, Sec. 6.1), or the `whole` layer with
one map per channel (the maps must be square - the text's "only possible if the first hidden
layer has a number of neurons which is a square"). Every reading option of the paper rows
applies (init, epochs, lr, bias_scope, bn_stats, order, ...); `pool`, `row12` and
`whole_site` concern only the paper rows' fixed placements and are refused here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from torch import nn

from paraeval.api import DatasetBase, DefenseBase, Protected, VictimBase
from paraeval.defenses.parasite_reading import ParasiteReading
from paraeval.defenses.parasite_spec import ParasiteSpec
from paraeval.defenses.parasites import input_shape, parasite_configs, protect_with
from paraeval.errors import UserError
from paraeval.hookspecs import hookimpl
from paraeval.models.insertion import Placement
from paraeval.models.layers import layers
from paraeval.models.parasite import BiasMode
from paraeval.models.victim_base import architecture
from paraeval.options import at_least, option
from paraeval.training.parasites import ParasiteConfig

#: Reading options that only the paper rows' fixed placements use.
PAPER_ONLY = ("pool", "row12", "table3_lines", "whole_site")


def _neurons(text: str) -> str:
    kind, _, count = text.partition(":")
    if kind == "whole" and not count:
        return text
    if kind in ("first", "last") and count.isdigit() and math.isqrt(int(count)) ** 2 == int(count):
        return text
    raise ValueError(text)


@dataclass(frozen=True)
class ParasiteOptions(ParasiteReading):
    layer: str = option("conv2", "the module whose output the parasite rewrites "
                        "(`paraeval inspect VICTIM` lists them)")  # fmt: skip
    neurons: str = option(
        "first:256", "first:N or last:N (N a square, the parasite reads one N-side map) or "
        "whole (every channel's map, which must be square)", parse=_neurons,
        requirement="first:N, last:N with N a square (256 = 16x16), or whole",
    )  # fmt: skip
    sigma: float = at_least(
        0.2, "standard deviation of the noise N the parasite learns to add", 0, float
    )
    bn: str = option("no", "BatchNorm in the parasite (paper Fig. 5)", values=("no", "yes"))
    bias: BiasMode = option(  # noqa: RUF009 (a Literal-typed option, like the readings')
        "none",
        "the parasite's bias: none (beta = 0) or small (||beta||_2 < 0.05, Sec. 5.3)",
        values=("none", "small"),
    )
    position: str = option(
        "output", "output: rewrite the named layer's output (name a convolution for 'before "
        "BN and activation'); after-activation: rewrite the output of the first activation "
        "that runs after it, past any normalisation (the paper's 'after')",
        values=("output", "after-activation"),
    )  # fmt: skip


#: What counts as the activation that follows a layer (`position=after-activation`).
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
               nn.Hardtanh)  # fmt: skip


class GenericParasite(DefenseBase):
    name = "parasite"
    description = "The paper's parasitic CNN at any layer of any CNN, by name (paraeval inspect)."
    tags: tuple[str, ...] = ("parasites",)
    options_class = ParasiteOptions
    options: ParasiteOptions
    #: Options this defense refuses: they would do nothing here (a paper row takes them).
    refused_options: tuple[str, ...] = PAPER_ONLY

    def configure(self, **given: str) -> Self:
        refused = sorted(set(given) & set(self.refused_options))
        if refused:
            raise UserError(
                f"{self.name}: {', '.join(refused)} concern the paper rows' fixed "
                "placements; name the layer with layer=... instead"
            )
        return super().configure(**given)

    def key_options(self) -> dict[str, Any]:
        """The options; `position` only when not the default (it came later: the keys of
        cells computed before it stay the same)."""
        options = self.options.key_dict()
        for name in PAPER_ONLY:
            options.pop(name, None)
        if options["position"] == "output":
            del options["position"]
        return options

    @property
    def spec(self) -> ParasiteSpec:
        """The parasite at the named layer's output (see :meth:`placed` for `position`)."""
        kind, _, count = self.options.neurons.partition(":")
        placement = Placement(
            layer=0,
            position="after",
            neurons=kind,  # type: ignore[arg-type]
            count=int(count) if count else 256,
            module=self.options.layer,
        )
        return ParasiteSpec(
            placement, self.options.bn == "yes", self.options.bias, self.options.sigma
        )

    def site(self, model: nn.Module) -> str:
        """The module whose output the parasite rewrites: the named layer, or with
        ``position=after-activation`` the first activation module that runs after it."""
        if self.options.position == "output":
            return self.options.layer
        order = [layer.name for layer in layers(model, input_shape(self.context))]
        after = order[order.index(self.options.layer) + 1 :]
        found = next(
            (name for name in after if isinstance(model.get_submodule(name), ACTIVATIONS)), None
        )
        if found is None:
            raise UserError(
                f"parasite: no activation module runs after "
                f"{self.options.layer!r} (position=after-activation)"
            )
        return found

    def placed(self, model: nn.Module) -> tuple[ParasiteSpec, ...]:
        """The parasites it inserts into `model` (a paper row's preset: its row's)."""
        spec = self.spec
        placement = dataclasses.replace(spec.placement, module=self.site(model))
        return (dataclasses.replace(spec, placement=placement),)

    def applies_to(self, victim: VictimBase, dataset: DatasetBase) -> bool:
        """Only to victims that have the named layer."""
        model = architecture(victim)
        return any(layer.name == self.options.layer for layer in layers(model, dataset.input_shape))

    def skip_reason(self, victim: str) -> str:
        return f"{victim} has no layer {self.options.layer!r} (paraeval inspect {victim})"

    def check(self, model: nn.Module) -> None:
        """A UserError (exit 2) when the named layer is missing or cannot hold the parasite."""
        found = {layer.name: layer for layer in layers(model, input_shape(self.context))}
        if self.options.layer not in found:
            raise UserError(
                f"parasite: {type(model).__name__} has no layer "
                f"{self.options.layer!r}; layers: {', '.join(found)}"
            )
        layer = found[self.site(model)]
        kind, _, count = self.options.neurons.partition(":")
        if kind == "whole" and not (layer.square_maps or layer.square_count):
            raise UserError(
                f"parasite: neurons=whole needs square maps (or a square neuron "
                f"count); {layer.name} outputs {layer.shape_text}"
            )
        if count and int(count) > layer.neurons:
            raise UserError(
                f"parasite: {layer.name} has {layer.neurons} neurons ({layer.shape_text}), "
                f"fewer than neurons={self.options.neurons}"
            )

    @property
    def stream(self) -> str:
        """Names the parasites' seed stream (a paper row's preset: its table's)."""
        return self.name

    @property
    def reading(self) -> ParasiteReading:
        return self.options

    def parasite_configs(self, model: nn.Module, *, seed: int) -> list[ParasiteConfig]:
        self.check(model)
        specs = self.placed(model)
        return parasite_configs(model, specs, seed, self.stream, self.reading, self.context)

    def protect(self, model: nn.Module, *, seed: int) -> Protected:
        self.check(model)
        return protect_with(
            model, self.placed(model), seed, self.stream, self.reading, self.context
        )


@hookimpl
def register_defenses(register: Callable[[object], None]) -> None:
    register(GenericParasite())
