"""The parasitic CNN (paper Sec. 4 and 6.1, Fig. 4 and 5).

Four convolutions with 5x5 filters and 2, 2, 2, 1 output channels, a ReLU after each
(including the last: Fig. 4 shows a ReLU after every convolution), optionally a BatchNorm
between each convolution and its ReLU (Fig. 5). Padding 2 with zeros keeps the spatial size,
so a 1-channel s x s input gives a 1-channel s x s output that can be written back in place.

Bias modes (Sec. 5.3, "bounding the bias to a small value (||beta||_2 < eps) or eliminating
the bias (beta = 0)"):

* ``none``  - beta = 0: the convolutions have no bias (under ``bias_scope=all`` the BN layers
  have no shift either).
* ``small`` - ||beta||_2 < 0.05, enforced by projecting beta onto the ball of radius
  ``0.999 * 0.05`` after every optimiser step (and at init), so the inequality is strict.

Which parameters form beta is a reading (``bias_scope``,
paraeval.defenses.parasite_reading): ``conv``
(the default) - the convolutions' biases, the bias Sec. 5.3 speaks of ("increasing the bias
in the convolutional layers"); BN shifts then train freely. ``all`` - the convolution biases
and, with BN, the BN shifts too (the paper writes the BN shift with the same symbol beta in
Sec. 1.1). ``paraeval readings`` measures both; neither is assumed to be the paper's.

BN layers learn a scale and shift by default (``bn_affine``, PyTorch's BatchNorm2d default);
``bn_affine=False`` gives BNs that only normalise, the reading of Sec. 6.1's "normalize their
input, ensuring a mean of 0 and a standard deviation of 1" without learned parameters.

BatchNorm runs in eval mode once trained. Its statistics are, by default, re-estimated on the
victim's activations once inserted (``bn_stats=recalibrated``,
:func:`paraeval.defenses.parasites.recalibrate_batch_norms`), or kept from the parasite's
training on uniform inputs (``bn_stats=training``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

BiasMode = Literal["none", "small"]
BiasScope = Literal["all", "conv"]
#: How a parasite's convolutions start (a reading: paraeval.defenses.parasite_reading).
ParasiteInit = Literal["torch", "dirac", "kaiming", "glorot"]

CHANNELS = (2, 2, 2, 1)
KERNEL = 5
PADDING = KERNEL // 2
BIAS_BOUND = 0.05
#: Projection radius: strictly inside the paper's open ball ||beta||_2 < 0.05.
BIAS_RADIUS = 0.999 * BIAS_BOUND


class ParasiticCNN(nn.Module):
    """[N, 1, s, s] -> [N, 1, s, s]; trained to approximate x + N (identity + fixed noise)."""

    def __init__(
        self,
        batch_norm: bool,
        bias: BiasMode,
        bias_scope: BiasScope = "conv",
        bn_affine: bool = True,
    ) -> None:
        super().__init__()
        if bias not in ("none", "small"):
            raise ValueError(f"bias must be 'none' or 'small', not {bias!r}")
        if bias_scope not in ("all", "conv"):
            raise ValueError(f"bias_scope must be 'all' or 'conv', not {bias_scope!r}")
        self.batch_norm = batch_norm
        self.bias_mode = bias
        self.bias_scope = bias_scope
        self.bn_affine = bn_affine
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels in CHANNELS:
            layers.append(
                nn.Conv2d(in_channels, out_channels, KERNEL, padding=PADDING, bias=bias != "none")
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels, affine=bn_affine))
            layers.append(nn.ReLU())
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)
        if bias == "none" and batch_norm and bias_scope == "all" and bn_affine:
            for bn in self.batch_norms():
                nn.init.zeros_(bn.bias)
                bn.bias.requires_grad_(False)
        self.project_bias()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def convolutions(self) -> list[nn.Conv2d]:
        return [m for m in self.layers if isinstance(m, nn.Conv2d)]

    def batch_norms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.layers if isinstance(m, nn.BatchNorm2d)]

    def bias_parameters(self) -> list[torch.Tensor]:
        """The parameters that form beta (see the module docstring)."""
        return beta(self.layers, self.bias_scope)

    def bias_norm(self) -> float:
        """||beta||_2 over :meth:`bias_parameters` (0.0 when there are none)."""
        params = self.bias_parameters()
        if not params:
            return 0.0
        return float(torch.cat([p.detach().flatten() for p in params]).norm())

    def bn_shift_norm(self) -> float:
        """||.||_2 of the BN shifts (0.0 without BN): outside beta under bias_scope="conv"."""
        shifts = [bn.bias.detach().flatten() for bn in self.batch_norms() if bn.bias is not None]
        return float(torch.cat(shifts).norm()) if shifts else 0.0

    @torch.no_grad()
    def project_bias(self) -> None:
        """Project beta onto the ball of radius BIAS_RADIUS (`small`) or keep it 0 (`none`)."""
        if zeroed(self.bias_parameters(), self.bias_mode):
            return
        params = self.bias_parameters()
        norm = self.bias_norm()
        if norm > BIAS_RADIUS:
            for p in params:
                p.mul_(BIAS_RADIUS / norm)


def beta(layers: nn.Module, bias_scope: BiasScope) -> list[torch.Tensor]:
    """beta among `layers`' modules: the convolution biases, and the BN shifts when
    ``bias_scope == "all"`` (a parasite's, or a bank of them: paraeval.training.bank)."""
    params = [m.bias for m in layers.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
    if bias_scope == "all":
        params += [
            m.bias for m in layers.modules() if isinstance(m, nn.BatchNorm2d) and m.bias is not None
        ]
    return params


@torch.no_grad()
def zeroed(params: list[torch.Tensor], bias_mode: BiasMode) -> bool:
    """Keep beta at 0 where the mode forbids a bias; True when nothing is left to project."""
    if bias_mode == "none":
        for p in params:
            p.zero_()
    return not params or bias_mode == "none"
