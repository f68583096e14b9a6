"""An example third-party paraeval plugin: the `logit-noise` defense of DESIGN.md.

Installed with ``pip install -e plugins/paraeval-logit-noise``, it is found through the
``paraeval`` entry-point group and appears in ``paraeval list defenses``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from paraeval import hookimpl


class NoisyLogits(nn.Module):
    """Wraps a model and adds N(0, std^2) to its logits, from a seeded generator."""

    def __init__(self, model: nn.Module, std: float, seed: int) -> None:
        super().__init__()
        self.model = model
        self.std = std
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        noise = torch.randn(logits.shape, generator=self.generator, dtype=logits.dtype)
        return logits + self.std * noise


class LogitNoise:
    name = "logit-noise"
    description = "Adds N(0, 0.1) to the logits."
    tags = ("example",)

    def __init__(self, std: float = 0.1) -> None:
        self.std = std

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return NoisyLogits(copy.deepcopy(model), self.std, seed).eval()


@hookimpl
def register_defenses(register: Callable[[object], None]) -> None:
    register(LogitNoise())


#: Where the example tracker appends one JSON line per finished run (unset: it does nothing).
TRACK_ENV = "PARAEVAL_LOGIT_NOISE_TRACK"


@hookimpl
def on_run_finished(directory: Path, results) -> None:  # results: paraeval.Results
    """An experiment tracker in miniature: what W&B or MLflow logging would do here."""
    target = os.environ.get(TRACK_ENV)
    if not target:
        return
    summary = results.summary
    line = {
        "directory": str(directory),
        "command": results.run.get("command"),
        "cells": len(results.results),
        "mean_m_adv": None if summary.empty else float(summary["m_adv_mean"].mean()),
    }
    with open(target, "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")
