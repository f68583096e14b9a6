"""The two attack libraries paraeval drives: ART and torchattacks, and the shared ε sweep."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from paraeval.api import AdversarialBatch
from paraeval.errors import UserError

#: craft(eps, images, labels) -> adversarial images, for the images given only.
Craft = Callable[[float, torch.Tensor, torch.Tensor], torch.Tensor]


def art_classifier(model: nn.Module, images: torch.Tensor) -> Any:
    """An ART PyTorchClassifier on [0, 1] inputs (clip_values (0, 1)), CPU, logits, for
    inputs shaped like `images` and as many classes as the model has logits."""
    from art.estimators.classification import PyTorchClassifier

    with torch.no_grad():
        classes = int(model(images[:1]).shape[1])
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(images.shape[1:]),
        nb_classes=classes,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


def art_classifiers(model: nn.Module) -> Callable[[torch.Tensor], Any]:
    """images -> the ART classifier of `model` for inputs of that shape, built once per shape
    (an attack's sweep calls it for every ε)."""
    built: dict[tuple[int, ...], Any] = {}

    def classifier(images: torch.Tensor) -> Any:
        shape = tuple(images.shape[1:])
        if shape not in built:
            built[shape] = art_classifier(model, images)
        return built[shape]

    return classifier


def torchattacks_module() -> Any:
    """Import torchattacks or explain how to install it (it is installed with --no-deps)."""
    try:
        import torchattacks
    except ImportError:
        raise UserError(
            "backend=torchattacks needs torchattacks: pip install --no-deps torchattacks==3.5.1"
        ) from None
    return torchattacks


def epsilon_grid(step: float, top: float) -> list[float]:
    """step, 2*step, ... up to top, computed as k * step so no rounding drift accumulates."""
    return [round(k * step, 10) for k in range(1, int(round(top / step, 6)) + 1)]


@torch.no_grad()
def _fooled(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return model(images).argmax(1) != labels


def minimal_epsilon_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilons: list[float],
    craft: Craft,
) -> AdversarialBatch:
    """For each image, the example at the first ε of `epsilons` that fools `model`.

    Only the images not yet fooled are attacked at the next ε (for FGSM this changes nothing:
    each image's gradient is independent of the others').
    """
    adversarial = images.clone()
    success = torch.zeros(len(images), dtype=torch.bool)
    epsilon = torch.full((len(images),), math.nan)
    for eps in epsilons:
        active = torch.nonzero(~success).flatten()
        if len(active) == 0:
            break
        candidate = craft(eps, images[active], labels[active])
        fooled = _fooled(model, candidate, labels[active])
        newly = active[fooled]
        adversarial[newly] = candidate[fooled]
        epsilon[newly] = eps
        success[newly] = True
    return AdversarialBatch(adversarial=adversarial, success=success, epsilon=epsilon)


def minimal_perturbation(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, adversarial: torch.Tensor
) -> AdversarialBatch:
    """Wrap a minimal-perturbation attack's output: success and its L2 norm as `epsilon`."""
    adversarial = adversarial.clamp(0, 1)
    success = _fooled(model, adversarial, labels)
    norms = (adversarial - images).flatten(1).norm(dim=1)
    epsilon = torch.where(success, norms, torch.full_like(norms, math.nan))
    kept = torch.where(success.view(-1, 1, 1, 1), adversarial, images)
    return AdversarialBatch(adversarial=kept, success=success, epsilon=epsilon)
