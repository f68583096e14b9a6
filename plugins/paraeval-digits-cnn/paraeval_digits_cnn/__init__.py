"""An example victim plugin: a small CNN on scikit-learn's 8x8 digits (see README.md)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from paraeval import hookimpl
from paraeval.api import Recipe, VictimBase


class DigitsCNN(nn.Module):
    """[N, 1, 8, 8] in [0, 1] -> logits [N, 10]: conv(8) - ReLU - conv(16) - ReLU - linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.act2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.act2(self.conv2(self.act1(self.conv1(x))))))


class DigitsCNNVictim(VictimBase):
    name = "digits-cnn"
    description = "example plugin: a 2-conv CNN on scikit-learn's 8x8 digits"
    dataset = "digits"
    #: 1,297 training images: more epochs and smaller batches than the MNIST victims.
    recipe = Recipe(epochs=40, batch_size=64, lr=3e-3)
    tags = ("example",)

    def build(self) -> nn.Module:
        return DigitsCNN()


@hookimpl
def register_victims(register: Callable[[VictimBase], None]) -> None:
    register(DigitsCNNVictim())
