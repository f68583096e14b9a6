"""The `none` defense: the unprotected victim (the baseline of every table)."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from paraeval.api import DefenseBase
from paraeval.hookspecs import hookimpl


class NoDefense(DefenseBase):
    name = "none"
    description = "The unprotected victim (baseline: M_adv is 0 by definition)."
    tags = ("baseline",)

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return copy.deepcopy(model).eval()


@hookimpl
def register_defenses(register: Callable[[object], None]) -> None:
    register(NoDefense())
