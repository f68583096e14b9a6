"""The hooks a paraeval plugin can implement (the contract they register is ``paraeval.api``).

A plugin is any module or object with functions decorated by :data:`hookimpl`, found through
the ``paraeval`` entry-point group (or registered in code with ``pm.register``). Built-in
defenses and attacks are registered through these same hooks (``plugins.DEFAULT_PLUGINS``).
Each hook receives a ``register`` callback and calls it once per object it provides; what an
object must and may have is declared, with defaults, by the base classes of ``paraeval.api``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from paraeval.api import Attack, Defense, DefenseBase, ExtractionAttackBase
    from paraeval.datasets import DatasetBase
    from paraeval.models.victim_base import VictimBase
    from paraeval.run.loading import Results

hookspec = pluggy.HookspecMarker("paraeval")
hookimpl = pluggy.HookimplMarker("paraeval")


@hookspec
def register_defenses(register: Callable[[Defense | DefenseBase], None]) -> None:
    """Register defenses by calling ``register(defense)`` once per defense.

    Required: ``name: str`` (unique), ``description: str`` and
    ``protect(model: torch.nn.Module, *, seed: int) -> torch.nn.Module | paraeval.Protected``,
    which returns a module mapping the victim's inputs [N, C, H, W] to logits [N, classes] without
    modifying ``model`` (the runner checks, and fails the cell otherwise).

    Optional, with the defaults of :class:`paraeval.api.DefenseBase`: ``tags`` (``()``),
    ``victims`` (``()`` = all), ``options`` / ``options_class`` (typed options, hashed into the
    cell key), ``configure(**given)``, ``paper`` (:class:`paraeval.api.Published` values or None),
    ``stateful`` (False) with ``reset()``, ``bind(context)`` (receives the run's
    :class:`paraeval.api.RunContext`) and ``parasite_configs(model, *, seed)`` (what ``protect``
    will train, so the runner trains it ahead in parallel). A plain object with the three
    required members is wrapped by :func:`paraeval.api.as_defense` and keeps working.
    """


@hookspec
def register_attacks(register: Callable[[Attack | ExtractionAttackBase], None]) -> None:
    """Register attacks by calling ``register(attack)`` once per attack.

    An evasion attack has ``name``, ``description`` and
    ``generate(model, images, labels, *, seed) -> paraeval.AdversarialBatch``: examples crafted
    on ``model`` (the unprotected victim in the paper's transfer setting, the protected model
    with ``mode=adaptive``). Optional, with the defaults of :class:`paraeval.api.AttackBase`:
    ``tags``, ``victims``, typed ``options``, ``configure(**given)`` and ``reference()`` (an
    attack it must not be weaker than).

    An extraction attack subclasses :class:`paraeval.api.ExtractionAttackBase` (``kind =
    "extraction"``) and has ``extract(victim, oracle, images, *, seed) ->
    paraeval.ExtractionResult``: it queries the protected model only through the
    :class:`paraeval.api.Oracle` (float64, counted, at its declared ``granularity``) and scores
    against ``victim``; every metric it returns is stored, ``headline`` names the one shown.
    """


@hookspec
def register_victims(register: Callable[[VictimBase], None]) -> None:
    """Register victims by calling ``register(victim)`` once per victim.

    A victim subclasses :class:`paraeval.api.VictimBase`: ``name``, ``description``,
    ``dataset`` (a registered dataset's name), ``build() -> torch.nn.Module`` mapping the
    dataset's inputs [N, C, H, W] to logits [N, classes], and either ``recipe`` (a
    :class:`paraeval.api.Recipe`: the run trains it and caches it by config hash) or
    ``recipe = None`` with ``load()`` returning pretrained weights (safetensors, or a state
    dict read with ``weights_only=True``) and ``fingerprint()`` naming them. Optional:
    ``paper_accuracy``, ``tags``.
    """


@hookspec
def register_datasets(register: Callable[[DatasetBase], None]) -> None:
    """Register datasets by calling ``register(dataset)`` once per dataset.

    A dataset subclasses :class:`paraeval.api.DatasetBase`: ``name``, ``description``,
    ``input_shape`` ([C, H, W]), ``classes``, ``value_range`` and ``load(data_dir, *,
    allow_download) -> paraeval.api.Splits`` (float images in the value range, int64 labels;
    the run checks them against the declaration). Tests must never download: read from
    ``data_dir`` or a bundled copy.
    """


@hookspec
def on_run_finished(directory: Path, results: Results) -> None:
    """Called once a run's outputs are written (by `paraeval run` and `paraeval reproduce`).

    ``directory`` is the run directory; ``results`` the same directory read back by
    :func:`paraeval.load_results` (results, summary, prediction changes, samples, extraction
    as DataFrames, and the run record). For experiment trackers (W&B, MLflow) and notifiers;
    an exception here is the plugin's bug and stops the command.
    """
