"""The scalar view of an :class:`~paraeval.api.Oracle` that Carlini et al.'s attack queries.

Carlini, Jagielski and Mironov (CRYPTO 2020, Sec. 2) attack f(x) = <r, logits(x)>: a fixed
projection of the logits, never the softmax (its saturation hides the piecewise-linear
structure the attack relies on). The oracle answers in float64 (Sec. 6: "we work in 64-bit
floating point"; their second differences need it) and counts every input row as one query.
"""

from __future__ import annotations

import torch
from torch import nn

from paraeval.api import Oracle


class ScalarOracle:
    """f(x) = <r, logits(x)> with r ~ N(0, I_10) fixed by `seed`, over a logit `oracle`."""

    def __init__(self, oracle: Oracle, seed: int) -> None:
        if oracle.granularity != "logits":
            raise ValueError("the critical-point search needs a logit oracle")
        self.oracle = oracle
        generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(10, generator=generator, dtype=torch.float64)

    @property
    def queries(self) -> int:
        return self.oracle.queries

    @property
    def scoring_model(self) -> nn.Module:
        return self.oracle.scoring_model

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        return self.oracle(rows) @ self.projection
