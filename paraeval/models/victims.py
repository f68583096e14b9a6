"""The built-in victims, registered through the same hook as a third-party plugin's: the
paper's LeNets (Sec. 6.1) and the MLP used for functionally-equivalent extraction. Their names
are the CLI's ``--victims`` values; their recipe is
:class:`paraeval.models.victim_base.Recipe`'s default."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from paraeval.hookspecs import hookimpl
from paraeval.models.lenet import LeNet
from paraeval.models.mlp import MLP
from paraeval.models.victim_base import VictimBase

#: Test accuracy (%) the paper reports for each victim (Sec. 6.1); the MLP is not the paper's.
PAPER_VICTIM_ACCURACY = {"vm": 98.78, "vm-batch": 99.11}


class BuiltinVictim(VictimBase):
    """One of paraeval's own victims: an architecture trained on MNIST with the default recipe."""

    def __init__(self, name: str, description: str, build: Callable[[], nn.Module]) -> None:
        self.name, self.description, self._build = name, description, build
        self.paper_accuracy = PAPER_VICTIM_ACCURACY.get(name)

    def build(self) -> nn.Module:
        return self._build()


BUILTIN_VICTIMS = (
    BuiltinVictim("vm", "the paper's LeNet-5 without BatchNorm (V_M, Sec. 6.1)",
                  lambda: LeNet(batch_norm=False)),
    BuiltinVictim("vm-batch", "the paper's LeNet-5 with BatchNorm (V_M-batch, Sec. 6.1)",
                  lambda: LeNet(batch_norm=True)),
    BuiltinVictim("mlp", "784-64-10 ReLU MLP, the victim of functionally-equivalent extraction",
                  MLP),
)  # fmt: skip

#: name -> a fresh model of each built-in architecture (the Knockoff thief picks one).
VICTIM_ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    victim.name: victim.build for victim in BUILTIN_VICTIMS
}


@hookimpl
def register_victims(register: Callable[[VictimBase], None]) -> None:
    for victim in BUILTIN_VICTIMS:
        register(victim)
