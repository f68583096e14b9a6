"""The `dcp` defense: a training-free perturbation of the output probabilities (Khaled et al.,
"Efficient Defense Against Model Stealing Attacks on Convolutional Neural Networks", ICMLA
2023; ../shared/seeds/002_*: only the abstract is there, the formula is read from the
authors' code, KacemKhaled/defending-extraction, ``df/defenses.py`` ``method_dcp``).

For a query with clean probabilities p = softmax(logits):

* alpha = 1 / (1 + exp(nu (max p - beta))), nu = 1000: ~1 when the model is unsure
  (max p < beta), ~0 when it is confident - only unsure answers are perturbed;
* r = beta (sigmoid(gamma * logit p) - 1/2), logit p = log(p / (1 - p));
* p~ = (p - alpha r) / sum(p - alpha r).

The authors' code clamps the *odds* p / (1 - p) to [1e-12, 1 - 1e-12] before the log, so a
class with p >= 1/2 gets logit ~0 and r ~0 (only classes below 1/2 are moved): the
``odds_clamp=official`` reading (default, the reference implementation). ``odds_clamp=symmetric``
clamps p to [1e-12, 1 - 1e-12] instead, the formula as written. beta has no single default in
the paper (the code sweeps 0.0-1.5); gamma is 0.2 except on CIFAR-100 (0.1).

paraeval defenses return logits; the protected model returns log(max(p~, 1e-12)), whose
softmax is p~ (every cell keeps finite logits). Only paraeval's public API is imported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paraeval import DefenseBase, Options, hookimpl, option

#: The steepness of alpha's switch (the authors' nu).
NU = 1000.0
#: Smallest probability kept before the log (finite logits).
FLOOR = 1e-12


@dataclass(frozen=True)
class DCPOptions(Options):
    beta: float = option(
        0.5, "perturbation strength; also the confidence below which answers are perturbed",
        parse=float, check=lambda v: 0.0 <= v <= 2.0, requirement="between 0 and 2",
        paper="DCP's beta (the authors' code sweeps 0.0, 0.1, ..., 1.0, 1.2, 1.5)",
        rule="no single value in the paper: the middle of the authors' sweep (a choice)",
    )  # fmt: skip
    gamma: float = option(
        0.2, "slope of the reverse sigmoid", parse=float, check=lambda v: v > 0,
        requirement="> 0", paper="gamma = 0.2 for every dataset but CIFAR-100 (0.1)",
        rule="the authors' value for MNIST-like data",
    )  # fmt: skip
    odds_clamp: str = option(
        "official", "how logit p is bounded", values=("official", "symmetric"),
        paper="logit p = log(p / (1 - p)) (the formula; the code clamps the odds to <= 1)",
        rule="the authors' code (official); symmetric is the formula as written",
    )  # fmt: skip


def perturb(p: torch.Tensor, options: DCPOptions) -> torch.Tensor:
    """DCP's perturbed probabilities for rows of probabilities `p` (see the module docstring)."""
    alpha = torch.reciprocal(1 + torch.exp(NU * (p.max(dim=1, keepdim=True).values - options.beta)))
    if options.odds_clamp == "official":
        logit = torch.log((p / (1 - p)).clamp(FLOOR, 1 - FLOOR))
    else:
        q = p.clamp(FLOOR, 1 - FLOOR)
        logit = torch.log(q / (1 - q))
    r = options.beta * (torch.sigmoid(options.gamma * logit) - 0.5)
    out = p - alpha * r
    return out / out.sum(dim=1, keepdim=True)


class DCPModel(nn.Module):
    """The victim answering with DCP's probabilities, as logits log(max(p~, FLOOR))."""

    def __init__(self, model: nn.Module, options: DCPOptions) -> None:
        super().__init__()
        self.model = model
        self.dcp_options = options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.model(x), dim=1)
        return torch.log(perturb(p, self.dcp_options).clamp_min(FLOOR))


class DCP(DefenseBase):
    name = "dcp"
    description = (
        "Khaled et al. 2023: training-free perturbation of unsure answers' probabilities "
        "(reverse sigmoid gated by max p < beta); returns log-probabilities."
    )
    tags = ("output-perturbation", "companion")
    options_class = DCPOptions
    options: DCPOptions

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return DCPModel(copy.deepcopy(model), self.options).eval()


@hookimpl
def register_defenses(register: Callable[[Any], None]) -> None:
    register(DCP())
