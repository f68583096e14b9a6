"""The hooks a paraeval plugin can implement.

A plugin is any module or object with functions decorated by :data:`hookimpl`. Built-in
defenses and attacks are registered through these same hooks (see ``plugins.DEFAULT_PLUGINS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .api import Attack, Defense

hookspec = pluggy.HookspecMarker("paraeval")
hookimpl = pluggy.HookimplMarker("paraeval")


@hookspec
def register_defenses(register: Callable[[Defense], None]) -> None:
    """Register defenses by calling ``register(defense)`` once per defense.

    A defense has ``name: str``, ``description: str`` and
    ``protect(model: torch.nn.Module, *, seed: int) -> torch.nn.Module``, which returns a module
    mapping [N, 1, 28, 28] inputs in [0, 1] to logits [N, 10] without modifying ``model``.
    Optional attributes: ``tags: tuple[str, ...]`` (selectable with ``--defenses TAG``),
    ``victims: tuple[str, ...]`` (the victims it applies to; default all), ``paper``
    (a :class:`paraeval.paper.PaperRow` with the published values) and
    ``parasite_configs(model, *, seed) -> list[ParasiteConfig]`` (what ``protect`` will train,
    so the runner can train it ahead in parallel processes).
    """


@hookspec
def register_attacks(register: Callable[[Attack], None]) -> None:
    """Register attacks by calling ``register(attack)`` once per attack.

    An evasion attack has ``name: str``, ``description: str`` and
    ``generate(model, images, labels, *, seed) -> AdversarialBatch``, which crafts adversarial
    examples on ``model`` (the unprotected victim in the paper's transfer setting). Optional:
    ``tags: tuple[str, ...]``, ``options: dict`` (its current hyper-parameters, shown in
    ``paraeval list`` and hashed into each result's key) and ``victims: tuple[str, ...]``.

    An extraction attack (:class:`paraeval.api.ExtractionAttack`) has ``kind = "extraction"``
    and ``extract(victim, protected, images, *, seed) -> ExtractionResult`` instead: it queries
    ``protected`` as a black box and scores what it recovers against ``victim``.
    """
