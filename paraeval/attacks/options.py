"""The built-in evasion attacks' shared options and their one backend dispatch.

FGSM and PGD are ε sweeps (paper Sec. 6.2): :class:`SweepOptions` carries ``backend``,
``eps_step`` and ``max_eps`` once, with the check between them. Every built-in evasion attack
is a :class:`BackendAttack` (the sweeps a :class:`SweepAttack`): ``options.backend`` picks
``_art`` or ``_torchattacks`` in :meth:`BackendAttack.implementation`, the one dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paraeval.api import AdversarialBatch, AttackBase
from paraeval.attacks.backends import epsilon_grid, minimal_epsilon_sweep
from paraeval.options import Options, option

BACKENDS = ("art", "torchattacks")


def backend_option() -> Any:
    return option("art", "attack library", values=BACKENDS)


def fraction_option(default: float, help: str) -> Any:
    """A float in (0, 1]: an ε, a step, a ratio."""
    return option(default, help, parse=float, check=lambda v: 0 < v <= 1, requirement="in (0, 1]")


def count_option(default: int, help: str) -> Any:
    return option(
        default, help, parse=int, check=lambda v: 1 <= v <= 1000, requirement="in [1, 1000]"
    )


@dataclass(frozen=True)
class BackendOptions(Options):
    backend: str = backend_option()


@dataclass(frozen=True)
class SweepOptions(BackendOptions):
    """The paper's ε sweep: eps_step, 2 eps_step, ... up to max_eps (Sec. 6.2)."""

    eps_step: float = fraction_option(0.05, "sweep step")
    max_eps: float = fraction_option(1.0, "largest eps tried (pixel scale)")

    def check(self, owner: str) -> None:
        self.require(owner, self.max_eps >= self.eps_step, "max_eps must be >= eps_step")


class BackendAttack(AttackBase):
    """A built-in evasion attack implemented by ART and by torchattacks."""

    options: BackendOptions

    def implementation(self, model: nn.Module) -> Callable[..., Any]:
        """The chosen backend's crafting function for `model` (one dispatch for all)."""
        implementations = {"art": self._art, "torchattacks": self._torchattacks}
        return implementations[self.options.backend](model)

    def _art(self, model: nn.Module) -> Callable[..., Any]:
        raise NotImplementedError

    def _torchattacks(self, model: nn.Module) -> Callable[..., Any]:
        raise NotImplementedError


class SweepAttack(BackendAttack):
    """An ε sweep (FGSM, PGD; paper Sec. 6.2): per image, the example at the first ε of
    :meth:`epsilons` that fools the model, crafted by the chosen backend."""

    options: SweepOptions

    def epsilons(self) -> list[float]:
        """eps_step, 2 eps_step, ... up to max_eps (pixel scale)."""
        return epsilon_grid(self.options.eps_step, self.options.max_eps)

    def largest_epsilon(self) -> float:
        return self.options.max_eps

    def generate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> AdversarialBatch:
        model = model.eval()
        craft = self.implementation(model)
        return minimal_epsilon_sweep(model, images, labels, self.epsilons(), craft)
