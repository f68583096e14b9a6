"""The paper's victims: LeNet (`vm`, Fig. 6) and LeNet with BatchNorm (`vm-batch`, Fig. 7).

LeNet-5 (LeCun et al. 1998) was designed for 32x32 inputs; on 28x28 MNIST the first
convolution therefore uses padding 2, which reproduces the original geometry exactly
(6@28x28 -> pool -> 6@14x14 -> 16@10x10 -> pool -> 16@5x5 -> 120 -> 84 -> 10). The second
convolution has no padding, as in the original. With this choice every channel of the first
layer is a 28x28 square (needed by Table 2) and the second layer has 16x10x10 = 1600
neurons, of which the parasites of Tables 1 and 3 take the first or last 16x16 = 256.

Each stage is a named attribute (conv, bn, act, pool) so that insertion can address
"before BN and activation" and "after BN and activation" precisely; `bn` is an Identity
in `vm`.
"""

from __future__ import annotations

import torch
from torch import nn

LENET_CONV1_PADDING = 2


class LeNet(nn.Module):
    """LeNet-5 for [N, 1, 28, 28] inputs in [0, 1]; returns logits [N, 10]."""

    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.conv1 = nn.Conv2d(1, 6, 5, padding=LENET_CONV1_PADDING)
        self.bn1: nn.Module = nn.BatchNorm2d(6) if batch_norm else nn.Identity()
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.bn2: nn.Module = nn.BatchNorm2d(16) if batch_norm else nn.Identity()
        self.act2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.act3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.act4 = nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def first_layer(self) -> nn.Module:
        """The affine map in front of the first ReLU (conv1, then BN in eval mode)."""
        return nn.Sequential(self.conv1, self.bn1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.bn1(self.conv1(x))))
        x = self.pool2(self.act2(self.bn2(self.conv2(x))))
        x = self.act3(self.fc1(x.flatten(1)))
        x = self.act4(self.fc2(x))
        return self.fc3(x)
