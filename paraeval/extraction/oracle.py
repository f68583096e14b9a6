"""The attacker's view of a model: a float64 black box returning one scalar per query.

Carlini, Jagielski and Mironov (CRYPTO 2020, Sec. 2) attack f(x) = <r, logits(x)>: a fixed
projection of the logits, never the softmax (its saturation hides the piecewise-linear
structure the attack relies on). Everything runs in float64 (Sec. 6: "we work in 64-bit
floating point"; their second differences need it). Every input row evaluated is one query.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: Rows per forward call; queries are independent, batching only saves Python overhead.
QUERY_BATCH = 4096


def float64_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` in float64 and eval mode (the original is untouched)."""
    return copy.deepcopy(model).double().eval()


class LogitOracle:
    """The model's float64 logits [n, 10] for flat [n, 784] rows; counts queries.

    Values outside [0, 1] are allowed (Carlini et al. query arbitrary real inputs; the
    in-domain lines of `paraeval.attacks.critical_points` stay inside the image box).
    """

    def __init__(self, model: nn.Module, image_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        self.model = float64_copy(model)
        self.image_shape = image_shape
        self.queries = 0

    @torch.no_grad()
    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to(torch.float64)
        self.queries += len(rows)
        outputs = [
            self.model(chunk.reshape(-1, *self.image_shape)) for chunk in rows.split(QUERY_BATCH)
        ]
        return torch.cat(outputs) if outputs else rows.new_empty(0, 10)


class ScalarOracle(LogitOracle):
    """f(x) = <r, logits(x)> with r ~ N(0, I_10) fixed by `seed`; counts queries."""

    def __init__(
        self, model: nn.Module, seed: int, image_shape: tuple[int, ...] = (1, 28, 28)
    ) -> None:
        super().__init__(model, image_shape)
        generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(10, generator=generator, dtype=torch.float64)

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        return super().__call__(rows) @ self.projection
