"""A model's layers by name with their output shapes: what `paraeval inspect` shows and what
the generic `parasite` defense checks a layer name against."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from paraeval.plugin.base import shape_text


@dataclass(frozen=True)
class Layer:
    """One named module and the shape of its output for one input (batch dimension dropped)."""

    name: str
    kind: str
    shape: tuple[int, ...]

    @property
    def neurons(self) -> int:
        return math.prod(self.shape)

    @property
    def shape_text(self) -> str:
        return shape_text(self.shape)

    @property
    def square_maps(self) -> bool:
        """Square channel maps ([C, H, H]): `neurons=whole` gives each map to the parasite."""
        return len(self.shape) == 3 and self.shape[1] == self.shape[2]

    @property
    def square_count(self) -> bool:
        """A flat layer whose neuron count is a square: `neurons=whole` reads it as one map."""
        return len(self.shape) == 1 and math.isqrt(self.neurons) ** 2 == self.neurons

    @property
    def parasite_fits(self) -> str:
        """Which `neurons=` selections a parasite can take at this layer."""
        fits = []
        if self.square_maps:
            fits.append(f"whole ({self.shape[0]} maps of {self.shape[1]}x{self.shape[2]})")
        elif self.square_count:
            fits.append(f"whole ({math.isqrt(self.neurons)}x{math.isqrt(self.neurons)})")
        largest = math.isqrt(self.neurons) ** 2
        if largest >= 4:
            fits.append(f"first/last N, N a square <= {largest}")
        return "; ".join(fits) or "-"


@torch.no_grad()
def layers(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> list[Layer]:
    """Every named module that returns a tensor, in the order it runs, with its output shape."""
    found: dict[str, Layer] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def record(module: nn.Module, _inputs: object, output: object, name: str = name) -> None:
            if isinstance(output, torch.Tensor) and name not in found:
                found[name] = Layer(name, type(module).__name__, tuple(output.shape[1:]))

        handles.append(module.register_forward_hook(record))
    training = model.training
    try:
        model.eval()(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return list(found.values())
