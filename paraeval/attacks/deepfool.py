"""`deepfool`: DeepFool (Moosavi-Dezfooli et al. 2016), L2, its own minimal perturbation.

DeepFool walks to the nearest linearised decision boundary of the model it attacks, so it has
no ε budget: the example is whatever it reaches in at most `steps` iterations with `overshoot`,
clipped to [0, 1]. M_adv is defined as for FGSM (examples adversarial on the victim, replayed on
the protected model); the `epsilon` stored per image is the L2 norm of the perturbation.

Backends: ``art`` (DeepFool, all 10 class gradients) and ``torchattacks`` (DeepFool).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from ..api import AdversarialBatch
from ..hookspecs import hookimpl
from .backends import art_classifier, minimal_perturbation, torchattacks_module
from .options import ConfigurableAttack, Option, backend_option, count_option


class DeepFoolAttack(ConfigurableAttack):
    name = "deepfool"
    description = (
        "DeepFool L2 (Moosavi-Dezfooli et al. 2016): its own minimal perturbation, 50 steps, "
        "overshoot 0.02 (transfer: crafted on the victim, replayed on the protected model)."
    )
    tags = ("evasion",)
    declared: ClassVar[dict[str, Option]] = {
        "backend": backend_option(),
        "steps": count_option(50, "maximum iterations"),
        "overshoot": Option(0.02, "overshoot", float, lambda v: 0 <= v <= 1, "in [0, 1]"),
    }  # fmt: skip

    def generate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> AdversarialBatch:
        model = model.eval()
        if self.options["backend"] == "art":
            from art.attacks.evasion import DeepFool

            attack = DeepFool(
                art_classifier(model, (1, 28, 28)), max_iter=self.options["steps"],
                epsilon=self.options["overshoot"], nb_grads=10, batch_size=len(images),
                verbose=False,
            )  # fmt: skip
            adversarial = torch.from_numpy(attack.generate(x=images.numpy()))
        else:
            torchattacks = torchattacks_module()
            attack = torchattacks.DeepFool(
                model, steps=self.options["steps"], overshoot=self.options["overshoot"]
            )
            adversarial = attack(images, labels).detach()
        return minimal_perturbation(model, images, labels, adversarial.float())


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(DeepFoolAttack())
