"""How trained parasites are arranged around the neurons they read, under two readings of the
paper (paraeval.defenses.parasite_reading): one independent parasite per channel map of a
whole-layer
placement (``whole_parasites=per-channel``), and the neurons mapped into the [0, 1] range the
parasite was trained on and back (``rescale=unit``). Both wrap parasites that are trained as
usual; what a wrapper receives and returns is what a bare parasite would."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class PerChannel(nn.Module):
    """One parasite per channel map: [N*C, 1, s, s] (a whole layer's maps, channel-major per
    image, as :func:`paraeval.models.insertion.apply_to_neurons` hands them) -> the same."""

    def __init__(self, parasites: Sequence[nn.Module]) -> None:
        super().__init__()
        self.parasites = nn.ModuleList(parasites)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        channels = len(self.parasites)
        if maps.shape[0] % channels:
            raise ValueError(f"{maps.shape[0]} maps are not whole images of {channels} channels")
        per_image = maps.reshape(-1, channels, *maps.shape[1:])
        out = [parasite(per_image[:, c]) for c, parasite in enumerate(self.parasites)]
        return torch.stack(out, dim=1).reshape(maps.shape)


class Rescaled(nn.Module):
    """x -> low + (high - low) * parasite((x - low) / (high - low)): the parasite sees its
    training range [0, 1] wherever the neurons it reads lie in [low, high]."""

    def __init__(self, parasite: nn.Module, low: float, high: float) -> None:
        super().__init__()
        if not high > low:
            raise ValueError(f"an empty range [{low}, {high}] cannot be rescaled")
        self.parasite = parasite
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        span = self.high - self.low
        return self.low + span * self.parasite((x - self.low) / span)


class RangeRecorder(nn.Module):
    """Stands where a parasite will: passes its input through and records its range."""

    def __init__(self) -> None:
        super().__init__()
        self.low, self.high = float("inf"), float("-inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.low = min(self.low, float(x.min()))
        self.high = max(self.high, float(x.max()))
        return x
