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


def test_entry_point_is_discovered_by_paraeval() -> None:
    """In a fresh process: found through the entry point, attributed to this distribution."""
    probe = (
        "from paraeval.registry import defenses; "
        "entry = defenses().entries['logit-noise']; print(entry.provider)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": ""},
    )
    assert result.stdout.strip() == "paraeval-logit-noise 0.1.0"


def test_the_tracker_hook_appends_one_line_per_run(tmp_path, monkeypatch) -> None:
    import json
    from types import SimpleNamespace

    import pandas as pd
    from paraeval_logit_noise import TRACK_ENV, on_run_finished

    results = SimpleNamespace(
        summary=pd.DataFrame({"m_adv_mean": [10.0, 30.0]}),
        results=pd.DataFrame({"seed": [0, 1, 2]}),
        run={"command": "paraeval run"},
    )
    on_run_finished(directory=tmp_path, results=results)  # no target: nothing written
    log = tmp_path / "track.jsonl"
    monkeypatch.setenv(TRACK_ENV, str(log))
    on_run_finished(directory=tmp_path, results=results)
    on_run_finished(directory=tmp_path, results=results)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["mean_m_adv"] == 20.0 and lines[0]["cells"] == 3
