"""`fgsm`: the paper's FGSM sweep (Sec. 6.2, Eq. 14).

For each image, x_adv = clip(x + eps * sign(grad_x L(theta, x, y)), 0, 1) with y the true label,
for eps = 0.05, 0.10, ... (multiples of `eps_step`) up to `max_eps`, stopping at the first eps
for which x_adv is adversarial for the model it is crafted on (its prediction differs from y).
An image never made adversarial up to `max_eps` is reported with success False, epsilon NaN.

Reading option ``eps_unit`` (the paper does not say on which scale its 0.05 steps are):
``pixel`` (default: Eq. 14 adds eps * sign(...) to the input x "in the MNIST dataset", whose
pixels are in [0, 1]) or ``normalized`` - the steps are in units of the input normalised by
the dataset's standard deviation (``DatasetBase.pixel_std``: on MNIST 0.3081, the usual
``Normalize((0.1307,), (0.3081,))``), so each step is 0.05 x 0.3081 = 0.0154 on MNIST's pixel
scale; a dataset that declares none gets its training pixels' std (one number for every
channel: the sweep applies one eps per image). Unbound (outside a run) the unit is MNIST's.
``max_eps`` is on the pixel scale in both readings, and ``epsilon`` in the results is always
the pixel-scale value applied.

Backends: ``art`` (ART FastGradientMethod on a PyTorchClassifier with clip_values (0, 1)) and
``torchattacks`` (torchattacks.FGSM). Both compute the same formula; tests check they agree.

Example::

    paraeval run --attacks fgsm:backend=torchattacks,eps_step=0.1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from paraeval.attacks.backends import Craft, art_classifiers, epsilon_grid, torchattacks_module
from paraeval.attacks.options import SweepAttack, SweepOptions
from paraeval.hookspecs import hookimpl
from paraeval.options import option

#: The standard deviation of MNIST's training pixels, the usual input normalisation.
MNIST_STD = 0.3081
EPS_UNITS = ("pixel", "normalized")


@dataclass(frozen=True)
class FGSMOptions(SweepOptions):
    eps_unit: str = option(
        "pixel", "scale of eps_step: pixel, or normalized (x the dataset's pixel std: 0.3081 "
        "on MNIST)", values=EPS_UNITS,
        paper="we add to each image of the MNIST dataset, eps.sign(...) (Eq. 14), eps = 0.05, "
        "0.1, ... (Sec. 6.2)",
        rule="text: the perturbation is added to the MNIST image, whose pixels are in [0, 1]",
    )  # fmt: skip


class FGSMSweep(SweepAttack):
    """The paper's minimal-epsilon FGSM sweep; see the module docstring."""

    name = "fgsm"
    description = (
        "FGSM (Goodfellow et al. 2015) with the paper's sweep eps = 0.05, 0.10, ... until the "
        "example is adversarial on the model attacked (Sec. 6.2)."
    )
    tags = ("evasion", "paper")
    options_class = FGSMOptions
    options: FGSMOptions

    def epsilons(self) -> list[float]:
        """The sweep on the pixel scale (see ``eps_unit`` in the module docstring)."""
        scale = self.normalized_unit() if self.options.eps_unit == "normalized" else 1.0
        return epsilon_grid(self.options.eps_step * scale, self.options.max_eps)

    def normalized_unit(self) -> float:
        """One normalised step on the pixel scale: the run's dataset's std once bound (the
        runner binds every attack), MNIST's outside a run."""
        return self.context.normalization_std if self.context is not None else MNIST_STD

    def _art(self, model: nn.Module) -> Craft:
        from art.attacks.evasion import FastGradientMethod

        classifier = art_classifiers(model)

        def craft(eps: float, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            attack = FastGradientMethod(classifier(images), eps=eps, batch_size=len(images))
            adversarial = attack.generate(x=images.numpy(), y=labels.numpy())
            return torch.from_numpy(adversarial.astype(np.float32))

        return craft

    def _torchattacks(self, model: nn.Module) -> Craft:
        torchattacks = torchattacks_module()

        def craft(eps: float, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return torchattacks.FGSM(model, eps=eps)(images, labels).detach().cpu()

        return craft


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(FGSMSweep())
