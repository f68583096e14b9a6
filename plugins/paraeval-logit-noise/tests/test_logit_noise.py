from __future__ import annotations

import subprocess
import sys

import torch
from paraeval_logit_noise import LogitNoise
from torch import nn


def test_noise_is_seeded_and_small() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = torch.rand(5, 1, 28, 28)
    a = LogitNoise().protect(model, seed=1)(x)
    b = LogitNoise().protect(model, seed=1)(x)
    c = LogitNoise().protect(model, seed=2)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float((a - model(x)).abs().max()) < 1.0


def test_entry_point_is_discovered_by_paraeval_list() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "paraeval", "list", "defenses"],
        capture_output=True, text=True, env={"COLUMNS": "250", "PATH": ""}, check=True,
    )  # fmt: skip
    assert "logit-noise" in result.stdout and "paraeval-logit-noise 0.1.0" in result.stdout
