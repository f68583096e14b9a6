"""paraeval: measure defenses against adversarial examples and model extraction.

Public API: :data:`hookimpl` to write plugins; the plugin contract of :mod:`paraeval.api`
(:class:`Defense` / :class:`Attack` protocols, the :class:`DefenseBase` / :class:`AttackBase` /
:class:`ExtractionAttackBase` bases, :class:`Protected`, :class:`Oracle`,
:class:`AdversarialBatch`, :class:`ExtractionResult`); typed options (:class:`Options`,
:func:`option`); and :func:`run` with :class:`RunConfig`.
"""

from .api import (
    AdversarialBatch,
    Attack,
    AttackBase,
    Defense,
    DefenseBase,
    ExtractionAttackBase,
    ExtractionResult,
    Oracle,
    Protected,
    RunContext,
)
from .hookspecs import hookimpl
from .options import Options, option
from .version import __version__

__all__ = [
    "AdversarialBatch", "Attack", "AttackBase", "Defense", "DefenseBase", "ExtractionAttackBase",
    "ExtractionResult", "Options", "Oracle", "Protected", "RunConfig", "RunContext", "__version__",
    "hookimpl", "option", "run",
]  # fmt: skip


def __getattr__(name: str) -> object:
    # run/RunConfig import torch-heavy modules; load them only when asked for.
    if name in ("run", "RunConfig"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
