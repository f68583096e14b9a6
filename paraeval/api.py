"""The public types of the plugin API: what a defense and an attack look like."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Defense(Protocol):
    """Turns a victim into a protected model. See ``hookspecs.register_defenses``."""

    name: str
    description: str

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module: ...


@dataclass
class AdversarialBatch:
    """What an evasion attack returns for N images.

    adversarial  float [N, 1, 28, 28] in [0, 1]: the examples (the clean image where the attack
                 gave up)
    success      bool [N]: the example is adversarial on the model it was crafted on
    epsilon      float [N]: the perturbation budget at which it became adversarial (NaN if never)
    """

    adversarial: torch.Tensor
    success: torch.Tensor
    epsilon: torch.Tensor


@runtime_checkable
class Attack(Protocol):
    """Crafts adversarial examples. See ``hookspecs.register_attacks``."""

    name: str
    description: str

    def generate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> AdversarialBatch: ...


@dataclass
class ExtractionResult:
    """What a model-extraction attack returns for one (victim, protected model) pair.

    metrics  flat numbers; those named like results.csv's extraction columns
             (``runner.EXTRACTION_COLUMNS``, README "Outputs") go there
    details  rows for DIR/extraction.csv (e.g. one per kind of line searched)
    """

    metrics: dict[str, float | int | str | None]
    details: list[dict[str, Any]]


@runtime_checkable
class ExtractionAttack(Protocol):
    """Queries a protected model as a black box and scores what it recovers of the victim.

    ``extract`` may query ``protected`` only as an oracle; ``victim`` (the unprotected model)
    is white-box ground truth for scoring. ``images`` are test images (for in-domain queries).
    An extraction that fails because the defense broke its assumptions returns a result that
    says so; raising marks the cell failed.
    """

    name: str
    description: str
    kind: str  # "extraction"

    def extract(
        self, victim: nn.Module, protected: nn.Module, images: torch.Tensor, *, seed: int
    ) -> ExtractionResult: ...


def describe_options(obj: Any) -> dict[str, Any]:
    """The ``options`` dict of a plugin object, or {} when it declares none."""
    options = getattr(obj, "options", None)
    return dict(options) if isinstance(options, dict) else {}
