"""paraeval: measure defenses against adversarial examples and model extraction.

Public API: :data:`hookimpl` to write plugins; the plugin contract of :mod:`paraeval.api`
(:class:`Defense` / :class:`Attack` protocols, the :class:`DefenseBase` / :class:`AttackBase` /
:class:`ExtractionAttackBase` bases, :class:`Protected`, :class:`Oracle`, :class:`StreamDetector`,
:class:`AdversarialBatch`, :class:`ExtractionResult`); typed options (:class:`Options`,
:func:`option`); :func:`run` with :class:`RunConfig`; :func:`evaluate` on a module object;
:func:`load_results`; :func:`protect` (the protected model a run attacks) and
:func:`load_protected`.
Victims and datasets as plugins: :class:`VictimBase`, :class:`Recipe`, :class:`DatasetBase`,
:class:`Splits`.
"""

from paraeval.hookspecs import hookimpl
from paraeval.options import Options, option
from paraeval.version import __version__

__all__ = [
    "AdversarialBatch",
    "Attack",
    "AttackBase",
    "DatasetBase",
    "Defense",
    "DefenseBase",
    "ExtractionAttackBase",
    "ExtractionResult",
    "Options",
    "Oracle",
    "Protected",
    "Recipe",
    "Results",
    "RunConfig",
    "RunContext",
    "Splits",
    "StreamDetector",
    "VictimBase",
    "__version__",
    "evaluate",
    "hookimpl",
    "load_protected",
    "load_results",
    "option",
    "protect",
    "run",
]  # fmt: skip


#: Names of the plugin contract (paraeval.api, which imports torch), loaded when first used so
#: that `paraeval --help` and plugin discovery do not pay for torch.
_API = (
    "AdversarialBatch", "Attack", "AttackBase", "Defense", "DefenseBase", "ExtractionAttackBase",
    "ExtractionResult", "Oracle", "Protected", "RunContext", "StreamDetector",
    "VictimBase", "Recipe", "DatasetBase", "Splits",
)  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _API:
        from paraeval import api

        return getattr(api, name)
    if name in ("load_results", "Results"):
        from paraeval.run import loading

        return getattr(loading, name)
    if name == "evaluate":
        from paraeval.evaluation import evaluate

        return evaluate
    if name in ("protect", "load_protected"):
        from paraeval.run import protection

        return getattr(protection, name)
    if name in ("run", "RunConfig"):
        from paraeval.run import runner

        return getattr(runner, name)
    raise AttributeError(name)
