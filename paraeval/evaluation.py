"""`paraeval.evaluate(model, dataset=...)`: the grid on a module object, from Python.

The module is the run's victim as it is (never retrained; ``eval()`` mode), keyed by a hash of
its weights, so a changed model makes new cells and an unchanged one reuses the store. It runs
in this process (``executor="local"``): a module object is not shipped to workers - save it
and pass ``--model FILE.py:Class --weights W`` for those.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from paraeval.models.victim_base import ModuleVictim, check_victim_model
from paraeval.run.lookup import dataset_named
from paraeval.run.runner import RunConfig, RunResult, run


def evaluate(
    model: nn.Module,
    *,
    dataset: str,
    defenses: str = "none",
    attacks: str = "fgsm",
    seeds: Sequence[int] = (0,),
    out: Path | str = Path("runs/latest"),
    name: str | None = None,
    write: bool = True,
    **options: Any,
) -> RunResult:
    """Protect and attack `model` (a classifier of `dataset`'s inputs) with the selected
    defenses and attacks; the results are stored under `out` (and the CSVs and report written
    there when `write`). `options` are further :class:`~paraeval.run.runner.RunConfig` fields
    (``n_images``, ``retry_failed``, ...)."""
    check_victim_model(model, dataset_named(dataset), "evaluate")
    victim = ModuleVictim(model, dataset, name)
    config = RunConfig(
        victims=[victim.name],
        defenses=defenses,
        attacks=attacks,
        seeds=list(seeds),
        out=Path(out),
        own_victims=(victim,),
        **options,
    )
    result = run(config)
    if write:
        from paraeval.report.outputs import write_outputs

        write_outputs(Path(out), result.keys)
    return result
