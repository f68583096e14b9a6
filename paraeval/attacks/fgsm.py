"""`fgsm`: the paper's FGSM sweep (Sec. 6.2, Eq. 14).

For each image, x_adv = clip(x + eps * sign(grad_x L(theta, x, y)), 0, 1) with y the true label,
for eps = 0.05, 0.10, ... (multiples of `eps_step`, computed as k * eps_step so no rounding
drift) up to `max_eps`, stopping at the first eps for which x_adv is adversarial for the model
it is crafted on (its prediction differs from y). An image never made adversarial up to
`max_eps` is reported with success False and epsilon NaN.

Backends: ``art`` (ART FastGradientMethod on a PyTorchClassifier with clip_values (0, 1)) and
``torchattacks`` (torchattacks.FGSM). Both compute the same formula; tests check they agree.

Example::

    paraeval run --attacks fgsm:backend=torchattacks,eps_step=0.1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..api import AdversarialBatch
from ..errors import UserError
from ..hookspecs import hookimpl
from .options import Option, parse_options

BACKENDS = ("art", "torchattacks")


def _art_fgsm(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> Callable[[float], torch.Tensor]:
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(images.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    x = images.numpy()
    y = labels.numpy()

    def at(eps: float) -> torch.Tensor:
        attack = FastGradientMethod(classifier, eps=eps, batch_size=len(x))
        return torch.from_numpy(attack.generate(x=x, y=y).astype(np.float32))

    return at


def _torchattacks_fgsm(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> Callable[[float], torch.Tensor]:
    try:
        import torchattacks
    except ImportError:
        raise UserError(
            "backend=torchattacks needs torchattacks: pip install --no-deps torchattacks==3.5.1"
        ) from None

    def at(eps: float) -> torch.Tensor:
        return torchattacks.FGSM(model, eps=eps)(images, labels).detach()

    return at


class FGSMSweep:
    """The paper's minimal-epsilon FGSM sweep; see the module docstring."""

    name = "fgsm"
    description = (
        "FGSM (Goodfellow et al. 2015) with the paper's sweep eps = 0.05, 0.10, ... until the "
        "example is adversarial on the model attacked (Sec. 6.2)."
    )
    tags = ("evasion", "paper")
    declared: ClassVar[dict[str, Option]] = {
        "backend": Option(
            "art", "art or torchattacks", str, lambda v: v in BACKENDS, "art or torchattacks"
        ),
        "eps_step": Option(0.05, "sweep step", float, lambda v: 0 < v <= 1, "in (0, 1]"),
        "max_eps": Option(1.0, "largest eps tried", float, lambda v: 0 < v <= 1, "in (0, 1]"),
    }

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(self.name, self.declared, options)
        if self.options["max_eps"] < self.options["eps_step"]:
            raise UserError("fgsm: max_eps must be >= eps_step")

    def configure(self, **options: Any) -> FGSMSweep:
        return FGSMSweep(**{**self.options, **options})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"FGSMSweep({args})"

    def epsilons(self) -> list[float]:
        step, top = self.options["eps_step"], self.options["max_eps"]
        return [round(k * step, 10) for k in range(1, int(round(top / step, 6)) + 1)]

    def generate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> AdversarialBatch:
        model = model.eval()
        backend = _art_fgsm if self.options["backend"] == "art" else _torchattacks_fgsm
        at = backend(model, images, labels)
        adversarial = images.clone()
        success = torch.zeros(len(images), dtype=torch.bool)
        epsilon = torch.full((len(images),), float("nan"))
        for eps in self.epsilons():
            candidate = at(eps)
            with torch.no_grad():
                fooled = model(candidate).argmax(1) != labels
            new = fooled & ~success
            adversarial[new] = candidate[new]
            epsilon[new] = eps
            success |= fooled
            if bool(success.all()):
                break
        return AdversarialBatch(adversarial=adversarial, success=success, epsilon=epsilon)


@hookimpl
def register_attacks(register: Callable[[object], None]) -> None:
    register(FGSMSweep())
