"""paraeval: measure defenses against adversarial examples and model extraction.

Public API: :data:`hookimpl` to write plugins, the :class:`Defense` / :class:`Attack`
protocols and :class:`AdversarialBatch`, and :func:`run` with :class:`RunConfig`.
"""

from .api import AdversarialBatch, Attack, Defense
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["AdversarialBatch", "Attack", "Defense", "RunConfig", "__version__", "hookimpl", "run"]


def __getattr__(name: str) -> object:
    # run/RunConfig import torch-heavy modules; load them only when asked for.
    if name in ("run", "RunConfig"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
