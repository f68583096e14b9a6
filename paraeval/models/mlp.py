"""`mlp`: a one-hidden-layer ReLU network, the victim of functionally-equivalent extraction.

Jagielski et al.'s functionally-equivalent extraction (USENIX Security 2020), as implemented
by ART's FunctionallyEquivalentExtraction, handles two-layer networks only (784-h-10), so the
paper's LeNet victims are out of its reach. h = 64 = 8 x 8 is a square, so a parasite can take
the whole hidden layer as one 8x8 map (paper Sec. 4: "only possible if the first hidden layer
has a number of neurons which is a square"), and small enough that extraction finishes in
minutes on 2 cores.
"""

from __future__ import annotations

import torch
from torch import nn

MLP_HIDDEN = 64


class MLP(nn.Module):
    """784 -> hidden (ReLU) -> 10 for [N, 1, 28, 28] inputs in [0, 1]; returns logits."""

    def __init__(self, hidden: int = MLP_HIDDEN) -> None:
        super().__init__()
        self.hidden = hidden
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 10)

    def first_layer(self) -> nn.Module:
        """The affine map in front of the first ReLU."""
        return nn.Sequential(self.flatten, self.fc1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act1(self.fc1(self.flatten(x))))
