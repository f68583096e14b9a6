"""ART's output defenses as paraeval defenses: `reverse-sigmoid`, `high-confidence`, `rounded`,
`gaussian-noise`, `class-labels` (the defenses of the functionality that sit beside
the parasite paper's defense of the weights).

ART's postprocessors act on a classifier's *probabilities* in ``predict()``; a paraeval defense
returns a module mapping images to logits. So the protected model computes the victim's
softmax, applies the ART postprocessor (numpy, as ART does) and returns log(max(p~, 1e-12)):
finite logits whose softmax is p~ (renormalised where the postprocessor leaves a sum other
than 1, e.g. `high-confidence` zeroing small probabilities). ART's postprocessors are not
differentiable and are bypassed by gradient attacks by construction; here the output carries a
gradient of exactly zero, so the runner's sanity check reports "zero input gradients (gradient
masking?)" for every cell: adaptive robustness measured on these models is gradient masking,
never robustness.

`class-labels`: ART 1.20's ``ClassLabels`` is wrong for batches larger than one (it sets the
arg-max column of *every* row to 1 - an open ART pull request), so its one-hot answer is
computed here row by row (a test compares with ART applied to each row alone).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from paraeval.api import DefenseBase
from paraeval.hookspecs import hookimpl
from paraeval.options import NoOptions, Options, at_least, option

#: Smallest probability kept before the log (finite logits).
FLOOR = 1e-12


class Postprocessed(nn.Module):
    """The victim answering through a probability postprocessor, as log-probabilities with a
    zero input gradient (what a gradient attack sees of a non-differentiable output)."""

    def __init__(self, model: nn.Module, postprocess: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__()
        self.model = model
        self.postprocess = postprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        with torch.no_grad():
            p = torch.softmax(logits, dim=1).double().numpy()
            post = torch.from_numpy(np.asarray(self.postprocess(p), dtype=np.float64))
            post = post.clamp_min(0.0)
            post = post / post.sum(dim=1, keepdim=True).clamp_min(FLOOR)
            answer = torch.log(post.clamp_min(FLOOR)).to(logits.dtype)
        return answer + 0.0 * logits  # on the graph, with a gradient of exactly zero


class ArtOutputDefense(DefenseBase):
    """One ART postprocessor as a defense (subclasses name it and build it from options)."""

    tags: tuple[str, ...] = ("output-perturbation", "art", "companion")
    #: The class of ``art.defences.postprocessor`` (its parameters are the options' names).
    art_class: ClassVar[str] = ""

    def postprocessor(self) -> Callable[[np.ndarray], np.ndarray]:
        import importlib

        module = importlib.import_module("art.defences.postprocessor")  # ~7 s: only when used
        built: Callable[[np.ndarray], np.ndarray] = getattr(module, self.art_class)(
            **self.options.as_dict()
        )
        return built

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return Postprocessed(copy.deepcopy(model), self.postprocessor()).eval()


@dataclass(frozen=True)
class ReverseSigmoidOptions(Options):
    beta: float = option(1.0, "perturbation magnitude (ART's default)", parse=float,
                         check=lambda v: v >= 0, requirement=">= 0")  # fmt: skip
    gamma: float = option(0.1, "slope of the reverse sigmoid (ART's default)", parse=float,
                          check=lambda v: v > 0, requirement="> 0")  # fmt: skip


class ReverseSigmoid(ArtOutputDefense):
    art_class = "ReverseSigmoid"
    name = "reverse-sigmoid"
    description = "ART ReverseSigmoid (Lee et al. 2019): perturbs every answer's probabilities."
    options_class = ReverseSigmoidOptions
    options: ReverseSigmoidOptions


@dataclass(frozen=True)
class HighConfidenceOptions(Options):
    cutoff: float = option(
        0.25, "probabilities below it are answered as 0 (ART's default)", parse=float,
        check=lambda v: 0 <= v < 1, requirement="in [0, 1)",
    )  # fmt: skip


class HighConfidence(ArtOutputDefense):
    art_class = "HighConfidence"
    name = "high-confidence"
    description = "ART HighConfidence: only probabilities above a cutoff are returned."
    options_class = HighConfidenceOptions
    options: HighConfidenceOptions


@dataclass(frozen=True)
class RoundedOptions(Options):
    decimals: int = at_least(3, "decimals kept (ART's default)", 0)


class Rounded(ArtOutputDefense):
    art_class = "Rounded"
    name = "rounded"
    description = "ART Rounded: probabilities rounded to a few decimals."
    options_class = RoundedOptions
    options: RoundedOptions


@dataclass(frozen=True)
class GaussianNoiseOptions(Options):
    scale: float = at_least(0.2, "standard deviation of the noise (ART's default)", 0, float)


class GaussianNoise(ArtOutputDefense):
    art_class = "GaussianNoise"
    name = "gaussian-noise"
    description = "ART GaussianNoise: noise on the probabilities (numpy's seeded global RNG)."
    tags = (*ArtOutputDefense.tags, "randomized")
    options_class = GaussianNoiseOptions
    options: GaussianNoiseOptions


def one_hot_labels(preds: np.ndarray) -> np.ndarray:
    """What ART's ClassLabels returns for one row, for every row of a batch."""
    labels = np.zeros_like(preds)
    labels[np.arange(len(preds)), np.argmax(preds, axis=1)] = 1
    return labels


class ClassLabels(ArtOutputDefense):
    name = "class-labels"
    description = "ART ClassLabels: only the top-1 label (one-hot), batch bug worked around."
    options_class = NoOptions

    def postprocessor(self) -> Callable[[np.ndarray], np.ndarray]:
        return one_hot_labels


@hookimpl
def register_defenses(register: Callable[[Any], None]) -> None:
    for defense in (ReverseSigmoid(), HighConfidence(), Rounded(), GaussianNoise(), ClassLabels()):
        register(defense)
