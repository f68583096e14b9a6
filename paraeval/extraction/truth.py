"""White-box ground truth that scores an extraction attack (never shown to the attacker).

The *victim's first layer* is the affine map z(x) in front of its first ReLU: conv1 (+ BN in
eval mode) for LeNet, fc1 for the MLP. Each of its units u has the hyperplane z_u(x) = 0 with
normal J_u (row u of the Jacobian), the same in the unprotected and the protected model,
because a parasite is inserted *after* the victim's first convolution or later (Sec. 6.3) and
leaves the victim's weights alone. Whether the protected model still *shows* these
hyperplanes to a black-box attacker is what the extraction attacks measure.

A critical point that is not on a first-layer hyperplane is attributed by probing the
protected model just before and after it (white-box forward hooks): a ReLU inside a parasite
whose input changes sign ("parasite"), a max-pool window whose arg-max changes while its
maximum is positive ("max-pool": max(a, b) has a kink where a = b, a hyperplane of its own
with normal J_a - J_b, neither a first-layer unit nor a parasite unit), another ReLU of the
victim changing sign ("deeper"), or nothing ("unexplained": a numerical false positive, or a
randomised model that routes the two probes to different variants).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from paraeval.api import float64_copy
from paraeval.core.devices import OnDevice, on_cpu
from paraeval.models.parasite import ParasiticCNN

#: A critical point lies on a first-layer hyperplane when some unit's crossing along the line
#: is within this fraction of the line's length of it. The search locates kinks to ~1e-12 of
#: the line (float64); neighbouring first-layer crossings are ~1e-4 apart on a Carlini line.
MATCH_TOLERANCE = 1e-8
#: |cos| above which a recovered normal counts as a victim unit's (the issue's criterion).
COSINE_THRESHOLD = 0.99

KINK_SOURCES = ("first-layer", "parasite", "max-pool", "deeper", "unexplained")


def first_layer_of(victim: nn.Module) -> nn.Module:
    """The affine map in front of the victim's first ReLU (see the module docstring): the
    victim's own ``first_layer()`` when it has one, else everything its forward pass runs
    before its first ``nn.ReLU`` module (:class:`BeforeFirstReLU`, checked to be affine).
    A GPU run's victim (:class:`~paraeval.core.devices.OnDevice`): its inner model's, on the CPU."""
    if isinstance(victim, OnDevice):  # a copy: the inner model stays where it computes
        return first_layer_of(on_cpu(victim))
    first_layer = getattr(victim, "first_layer", None)
    if callable(first_layer):
        layer: nn.Module = first_layer()
        return layer
    if not any(isinstance(module, nn.ReLU) for module in victim.modules()):
        raise ValueError(f"{type(victim).__name__} has no nn.ReLU module and no first_layer()")
    return BeforeFirstReLU(victim)


class _Reached(Exception):
    """Raised by the first ReLU's pre-hook to stop the forward pass there."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


class BeforeFirstReLU(nn.Module):
    """z(x): the input of the first ``nn.ReLU`` module the victim's forward pass calls (for a
    user's model that does not declare ``first_layer()``)."""

    def __init__(self, victim: nn.Module) -> None:
        super().__init__()
        self.victim = victim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def stop(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            raise _Reached(inputs[0])

        handles = [
            m.register_forward_pre_hook(stop)
            for m in self.victim.modules()
            if isinstance(m, nn.ReLU)
        ]
        try:
            self.victim(x)
        except _Reached as reached:
            return reached.value
        finally:
            for handle in handles:
                handle.remove()
        raise ValueError(f"{type(self.victim).__name__}'s forward pass calls no nn.ReLU module")


def check_affine(layer: nn.Module, image_shape: tuple[int, ...]) -> None:
    """A ValueError unless z((x + y) / 2) = (z(x) + z(y)) / 2 on random inputs (float64): the
    attack's ground truth is a set of hyperplanes only if z is affine."""
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.rand(4, *image_shape, generator=generator, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        gap = (layer((x + y) / 2) - (layer(x) + layer(y)) / 2).abs().max()
    if float(gap) > 1e-9:
        raise ValueError(
            "the layers before the first ReLU are not affine (max-pool? "
            "dropout in train mode?): no hyperplanes to score against"
        )


@dataclass
class FirstLayer:
    """z(x) for flat float64 inputs, its Jacobian rows and their norms."""

    layer: nn.Module
    image_shape: tuple[int, ...]
    jacobian: torch.Tensor  # [units, dim]
    row_norms: torch.Tensor  # [units]

    @classmethod
    def of(cls, victim: nn.Module, image_shape: tuple[int, ...] = (1, 28, 28)) -> FirstLayer:
        layer = float64_copy(first_layer_of(victim))
        check_affine(layer, image_shape)
        dim = int(torch.tensor(image_shape).prod())
        with torch.no_grad():
            zero = layer(torch.zeros(1, *image_shape, dtype=torch.float64)).flatten(1)
            basis = torch.eye(dim, dtype=torch.float64).reshape(dim, *image_shape)
            jacobian = (layer(basis).flatten(1) - zero).T.contiguous()
        return cls(layer, image_shape, jacobian, jacobian.norm(dim=1))

    @torch.no_grad()
    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        return self.layer(rows.reshape(-1, *self.image_shape)).flatten(1)

    def crossings(self, offset: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """t at which each unit's z crosses 0 on offset + t * direction (inf if parallel)."""
        at_zero = self(offset[None, :])[0]
        slope = self.jacobian @ direction
        return torch.where(slope != 0, -at_zero / slope, torch.full_like(slope, float("inf")))

    def best_cosine(self, normal: torch.Tensor) -> float:
        """max over units of |cos(normal, J_u)|."""
        norms = (self.row_norms * normal.norm()).clamp_min(1e-300)
        cosines = (self.jacobian @ normal).abs() / norms
        return float(cosines.max())


def _per_probe(activations: torch.Tensor) -> torch.Tensor | None:
    """[2, ...] activations of the two probes, or None when a module did not see both.

    A whole-layer parasite sees each probe's channel maps as separate inputs ([2 C, 1, s, s],
    probe-major), so any even batch splits into the two probes; a randomised model that routes
    the probes to different variants shows a batch of 1.
    """
    if len(activations) == 0 or len(activations) % 2:
        return None
    return activations.reshape(2, -1)


def kink_source(
    model: nn.Module,
    before: torch.Tensor,
    after: torch.Tensor,
    image_shape: tuple[int, ...] = (1, 28, 28),
) -> str:
    """What changes in `model` (float64) between two flat inputs either side of one kink."""
    parasite_relus = {
        id(m)
        for p in model.modules()
        if isinstance(p, ParasiticCNN)
        for m in p.modules()
        if isinstance(m, nn.ReLU)
    }
    changed: set[str] = set()

    def relu_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: object) -> None:
        pre = _per_probe(inputs[0])
        if pre is not None and bool(((pre[0] > 0) != (pre[1] > 0)).any()):
            changed.add("parasite" if id(module) in parasite_relus else "deeper")

    def pool_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: object) -> None:
        pre = inputs[0]
        if len(pre) != 2 or not isinstance(module, nn.MaxPool2d):
            return
        values, indices = F.max_pool2d(
            pre, module.kernel_size, module.stride, module.padding, return_indices=True
        )
        positive = (values[0] > 0) | (values[1] > 0)
        if bool(((indices[0] != indices[1]) & positive).any()):
            changed.add("max-pool")

    handles = [
        m.register_forward_hook(relu_hook if isinstance(m, nn.ReLU) else pool_hook)
        for m in model.modules()
        if isinstance(m, nn.ReLU | nn.MaxPool2d)
    ]
    try:
        with torch.no_grad():
            model(torch.stack([before, after]).reshape(2, *image_shape).to(torch.float64))
    finally:
        for handle in handles:
            handle.remove()
    for source in ("parasite", "max-pool", "deeper"):
        if source in changed:
            return source
    return "unexplained"
