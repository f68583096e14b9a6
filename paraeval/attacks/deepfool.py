"""`deepfool`: DeepFool (Moosavi-Dezfooli et al. 2016), L2, its own minimal perturbation.

DeepFool walks to the nearest linearised decision boundary of the model it attacks, so it has
no ε budget: the example is whatever it reaches in at most `steps` iterations with `overshoot`,
clipped to [0, 1]. M_adv is defined as for FGSM (examples adversarial on the victim, replayed on
the protected model); the `epsilon` stored per image is the L2 norm of the perturbation.

Backends: ``art`` (DeepFool, all 10 class gradients) and ``torchattacks`` (DeepFool).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paraeval.api import AdversarialBatch
from paraeval.attacks.backends import art_classifier, minimal_perturbation, torchattacks_module
from paraeval.attacks.options import BackendAttack, BackendOptions, count_option
from paraeval.hookspecs import hookimpl
from paraeval.options import option

#: craft(images, labels) -> the attack's examples (no ε: DeepFool finds its own).
Walk = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DeepFoolOptions(BackendOptions):
    steps: int = count_option(50, "maximum iterations")
    overshoot: float = option(0.02, "overshoot", parse=float, check=lambda v: 0 <= v <= 1,
                              requirement="in [0, 1]")  # fmt: skip


class DeepFoolAttack(BackendAttack):
    name = "deepfool"
    description = (
        "DeepFool L2 (Moosavi-Dezfooli et al. 2016): its own minimal perturbation, 50 steps, "
        "overshoot 0.02 (transfer: crafted on the victim, replayed on the protected model)."
    )
    tags = ("evasion",)
    options_class = DeepFoolOptions
    options: DeepFoolOptions

    def generate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> AdversarialBatch:
        model = model.eval()
        adversarial = self.implementation(model)(images, labels)
        return minimal_perturbation(model, images, labels, adversarial.float())

    def _art(self, model: nn.Module) -> Walk:
        from art.attacks.evasion import DeepFool

        def walk(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            attack = DeepFool(
                art_classifier(model, images),
                max_iter=self.options.steps,
                epsilon=self.options.overshoot,
                nb_grads=10,
                batch_size=len(images),
                verbose=False,
            )
            return torch.from_numpy(attack.generate(x=images.numpy()))

        return walk

    def _torchattacks(self, model: nn.Module) -> Walk:
        torchattacks = torchattacks_module()

        def walk(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            attack = torchattacks.DeepFool(
                model, steps=self.options.steps, overshoot=self.options.overshoot
            )
            return attack(images, labels).detach().cpu()

        return walk


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(DeepFoolAttack())
