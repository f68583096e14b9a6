"""The victims by name: the paper's LeNets and the MLP used for functionally-equivalent
extraction. The names are the CLI's ``--victims`` values."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .lenet import LeNet
from .mlp import MLP

VICTIM_ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "vm": lambda: LeNet(batch_norm=False),
    "vm-batch": lambda: LeNet(batch_norm=True),
    "mlp": MLP,
}

#: Test accuracy (%) the paper reports for each victim (Sec. 6.1); the MLP is not the paper's.
PAPER_VICTIM_ACCURACY = {"vm": 98.78, "vm-batch": 99.11}
