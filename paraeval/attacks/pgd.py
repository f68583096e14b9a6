"""`pgd`: L-infinity projected gradient descent (Madry et al. 2018) with the paper's ε sweep.

M_adv is defined as for FGSM (paper Sec. 6.2): for each image the example is crafted on the
victim at ε = 0.05, 0.10, ... up to `max_eps`, the first ε that fools the victim is kept, and
the example is replayed on the protected model. At each ε, PGD runs `steps` iterations of step
size `step_factor * ε / steps` (2.5 ε / steps: Madry et al.'s rule), from the clean image
(`random_init=false`, deterministic) or a uniform random start in the ε-ball.

Backends: ``art`` (ProjectedGradientDescent, norm inf) and ``torchattacks`` (PGD).

Example::

    paraeval run --attacks pgd:backend=torchattacks,steps=20
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from paraeval.api import AttackBase
from paraeval.attacks.backends import Craft, art_classifiers, torchattacks_module
from paraeval.attacks.fgsm import FGSMSweep
from paraeval.attacks.options import SweepAttack, SweepOptions, count_option
from paraeval.hookspecs import hookimpl
from paraeval.options import option, parse_bool


@dataclass(frozen=True)
class PGDOptions(SweepOptions):
    steps: int = count_option(40, "iterations per eps")
    step_factor: float = option(
        2.5, "step size = step_factor * eps / steps", parse=float,
        check=lambda v: 0 < v <= 10, requirement="in (0, 10]",
    )  # fmt: skip
    random_init: bool = option(False, "uniform random start", parse=parse_bool,
                               requirement="true or false")  # fmt: skip


class PGDSweep(SweepAttack):
    name = "pgd"
    description = (
        "PGD L-inf (Madry et al. 2018), 40 steps of 2.5 eps/40, with the paper's eps sweep "
        "0.05, 0.10, ... (transfer: crafted on the victim, replayed on the protected model)."
    )
    tags = ("evasion", "iterative")
    options_class = PGDOptions
    options: PGDOptions

    def reference(self) -> AttackBase:
        """FGSM on the same ε range: an iterative attack fooling fewer images is misconfigured."""
        return FGSMSweep(max_eps=self.options.max_eps)

    def _step(self, eps: float) -> float:
        return float(self.options.step_factor * eps / self.options.steps)

    def _art(self, model: nn.Module) -> Craft:
        from art.attacks.evasion import ProjectedGradientDescent

        classifier = art_classifiers(model)
        options = self.options

        def craft(eps: float, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            attack = ProjectedGradientDescent(
                classifier(images),
                norm=np.inf,
                eps=eps,
                eps_step=self._step(eps),
                max_iter=options.steps,
                num_random_init=int(options.random_init),
                batch_size=len(images),
                verbose=False,
            )
            return torch.from_numpy(attack.generate(x=images.numpy(), y=labels.numpy()))

        return craft

    def _torchattacks(self, model: nn.Module) -> Craft:
        torchattacks = torchattacks_module()
        options = self.options

        def craft(eps: float, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            attack = torchattacks.PGD(
                model,
                eps=eps,
                alpha=self._step(eps),
                steps=options.steps,
                random_start=options.random_init,
            )
            return attack(images, labels).detach().cpu()

        return craft


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(PGDSweep())
