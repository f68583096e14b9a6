"""One parasite a defense inserts: where it acts (a :class:`~paraeval.models.insertion.Placement`)
and how it is built (paper Sec. 6.1: BN or not, the bias beta, the noise's sigma).

The paper's rows (:mod:`paraeval.study.paper`) are lists of these, and so is every parasite
defense (the generic ``parasite``, the MLP and dynamic ones).
"""

from __future__ import annotations

from dataclasses import dataclass

from paraeval.models.insertion import Placement
from paraeval.models.parasite import BiasMode


@dataclass(frozen=True)
class ParasiteSpec:
    """One parasite of a paper row: where it acts and how it is built."""

    placement: Placement
    batch_norm: bool
    bias: BiasMode
    sigma: float = 0.2

    @property
    def label(self) -> str:
        bn = "BN" if self.batch_norm else "no BN"
        return f"{self.placement.label}: {bn}, bias {self.bias}, sigma {self.sigma}"
