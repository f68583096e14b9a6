"""Where the models compute: ``--device auto|cpu|cuda``.

The pipeline keeps every tensor it passes around on the CPU - images, labels, adversarial
examples, oracle queries - and only the models compute on the device: :class:`OnDevice`
wraps a model so that its inputs go to the device and its outputs come back, gradients
included (a transfer is differentiable). So the attacks (ART, torchattacks, the extraction
searches) and the metrics need no device code, and a plugin written for the CPU runs on a GPU
unchanged. On MNIST-sized batches the transfers are small next to the compute.

Keys: a GPU's kernels do not give the CPU's float sums, so victims trained, parasites trained
and cells computed on a GPU are other artifacts and other cells: their keys carry the device
when it is not the CPU (so every CPU key stays what it was). Results of the two must agree
within the seeds' confidence intervals, not bit for bit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Self

import torch
from torch import nn

from paraeval.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """ "cpu" or "cuda": `auto` is CUDA when this machine has it; `cuda` without it is an error."""
    if device not in DEVICES:
        raise UserError(f"--device {device!r}; valid: {', '.join(DEVICES)}")
    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if device == "cuda" and not available:
        raise UserError(
            "--device cuda: this machine has no CUDA device (torch.cuda."
            "is_available() is False); use --device cpu or auto"
        )
    return device


class OnDevice(nn.Module):
    """`inner` computing on `device` behind a CPU-in, CPU-out interface (see the module
    docstring). Moving the wrapper (``.to("cpu")``, as ART does with its model) leaves the
    inner model on its device; a change of dtype (``.double()``) reaches it."""

    def __init__(self, inner: nn.Module, device: str) -> None:
        super().__init__()
        self.inner = copy.deepcopy(inner).to(device)  # never moves the caller's model
        self.device = torch.device(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.inner(x.to(self.device))
        return output.to(x.device)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Self:
        self.inner._apply(fn, recurse)
        self.inner.to(self.device)
        return self

    def __getattr__(self, name: str) -> Any:
        """The inner model's attributes (`hidden`, ...) for code that reads them; nn.Module's
        own lookup (parameters, buffers, submodules) first."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self._modules.get("inner")
            if inner is None or name.startswith("__"):
                raise
            return getattr(inner, name)


def on_device(model: nn.Module, device: str) -> nn.Module:
    """`model` itself on the CPU, else wrapped to compute on `device`."""
    return model if device == "cpu" else OnDevice(model, device)


def on_cpu(model: nn.Module) -> nn.Module:
    """`model` computing on the CPU: a copy of an :class:`OnDevice` wrapper's inner model moved
    back, any other model itself."""
    return copy.deepcopy(model.inner).cpu() if isinstance(model, OnDevice) else model


def device_of(model: nn.Module) -> str:
    """Where `model` computes: the device of an :class:`OnDevice` wrapper, else "cpu" (the
    pipeline hands every other model over on the CPU). An attack that trains a model of its
    own (Knockoff's thief) trains it there, so a GPU run trains it on the GPU."""
    return str(model.device) if isinstance(model, OnDevice) else "cpu"
