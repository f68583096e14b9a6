"""Functionally-equivalent extraction of a 784-h-10 ReLU network with paraeval's own search.

ART's FunctionallyEquivalentExtraction needs exactly h critical points on one line and its
line search (fixed steps of 0.05, slopes estimated over a tenth of the step) cannot separate
kinks closer than its resolution. This module does the same extraction (Jagielski et al.
2020, Sec. 5; Carlini et al. 2020, Sec. 4) with `paraeval.extraction.search`, which locates
kinks to ~1e-12 and assumes nothing about h:

1. critical points on one Carlini line, t in [-scale, scale], with the scalar oracle;
2. at each, the Jacobian of the 10 logits on both sides by forward differences (2 x 785
   queries); their difference is the rank-1 matrix +-w_k a_k^T of the hidden unit k that
   switched (its input weights w_k, its output weights a_k). Its leading singular pair gives
   w_k and a_k (the split of scale between them is free: ReLU is positively homogeneous),
   oriented so that w_k . d > 0; the bias is -w_k . x* (x* on the unit's hyperplane);
3. the orientation of every unit and the output offset: one more Jacobian (at the line's
   offset) gives the skip term of `TwoLayerModel`, and the mean residual on a sample of inputs
   the constant.

No assumption on h: every kink found becomes a hidden unit, so a parasite's own kinks (which
are only locally hyperplanes) become units too, and the fidelity measures what that costs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from paraeval.extraction.search import (
    CriticalPoint,
    forward_difference_jacobian,
    jacobians_beside,
    search_line,
)

LogitOracle = Callable[[torch.Tensor], torch.Tensor]
#: Forward-difference step of the Jacobian taken at the line's offset.
OFFSET_STEP = 1e-6


@dataclass
class TwoLayerModel:
    """relu(x W^T + b) A - x C + c: the extracted network (float64, flat inputs).

    The skip term x C absorbs the orientation of the units: a unit recovered as
    relu(-z) where the victim has relu(z) differs from it by the affine map z, since
    relu(z) = z + relu(-z); C is measured exactly from one Jacobian (see `extract_two_layer`).
    """

    weights: torch.Tensor  # [units, dim]
    biases: torch.Tensor  # [units]
    outputs: torch.Tensor  # [units, classes]
    skip: torch.Tensor  # [dim, classes]
    offset: torch.Tensor  # [classes]

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(rows @ self.weights.T + self.biases)
        return hidden @ self.outputs - rows @ self.skip + self.offset


def extract_two_layer(
    oracle: LogitOracle,
    dim: int,
    generator: torch.Generator,
    fit_rows: torch.Tensor,
    scale: float = 1e4,
    budget: int = 200_000,
) -> tuple[TwoLayerModel, int]:
    """The extracted network and the number of hidden units found (see the module docstring)."""
    projection = torch.randn(10, generator=generator, dtype=torch.float64)
    offset = torch.randn(dim, generator=generator, dtype=torch.float64)
    direction = torch.randn(dim, generator=generator, dtype=torch.float64)
    search = search_line(
        lambda rows: oracle(rows) @ projection, offset, direction, -scale, scale, budget
    )
    units = [_unit_at(oracle, offset, direction, point) for point in search.points]
    if not units:
        raise ValueError("no critical point found on the line")
    weights = torch.stack([u[0] for u in units])
    biases = torch.stack([u[1] for u in units])
    outputs = torch.stack([u[2] for u in units])
    # J(x) = sum over units active at x of w a^T - C for every x; measure it at the offset.
    active = (weights @ offset + biases) > 0
    skip = weights[active].T @ outputs[active] - forward_difference_jacobian(
        oracle, offset, OFFSET_STEP
    )
    model = TwoLayerModel(weights, biases, outputs, skip, torch.zeros(10, dtype=torch.float64))
    model.offset = (oracle(fit_rows) - model(fit_rows)).mean(dim=0)
    return model, len(units)


def _unit_at(
    oracle: LogitOracle, offset: torch.Tensor, direction: torch.Tensor, point: CriticalPoint
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w, b, a) of the unit switching at `point`, oriented so that w . direction > 0."""
    below, above = jacobians_beside(oracle, offset, direction, point)
    left, singular, right = torch.linalg.svd(above - below, full_matrices=False)
    sign = 1.0 if float(left[:, 0] @ direction) > 0 else -1.0
    weight = sign * left[:, 0] * singular[0].sqrt()
    output = sign * right[0] * singular[0].sqrt()
    crossing = offset + point.t * direction
    return weight, -(weight @ crossing), output
