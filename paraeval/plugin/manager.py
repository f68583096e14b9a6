"""The plugin manager: built-ins from DEFAULT_PLUGINS, third-party plugins from entry points.

Third-party packages declare ``[project.entry-points.paraeval] name = "module"``. Setting
``PARAEVAL_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points (only built-ins load);
``PARAEVAL_PLUGINS=a,b`` loads only the named entry points. A plugin that fails to import is
recorded in :data:`load_failures` and skipped, never fatal.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from dataclasses import dataclass

import pluggy

from paraeval import hookspecs

ENTRY_POINT_GROUP = "paraeval"
DISABLE_AUTOLOAD_ENV = "PARAEVAL_DISABLE_PLUGIN_AUTOLOAD"
ONLY_PLUGINS_ENV = "PARAEVAL_PLUGINS"

DEFAULT_PLUGINS = (
    "paraeval.datasets.builtin",
    "paraeval.models.victims",
    "paraeval.defenses.none",
    "paraeval.study.paper_rows",
    "paraeval.defenses.dynamic",
    "paraeval.defenses.mlp_parasites",
    "paraeval.defenses.postprocessors",
    "paraeval.defenses.detectors",
    "paraeval.defenses.generic",
    "paraeval.attacks.fgsm",
    "paraeval.attacks.pgd",
    "paraeval.attacks.deepfool",
    "paraeval.attacks.critical_points",
    "paraeval.attacks.fee",
    "paraeval.attacks.knockoff",
    "paraeval.attacks.query_streams",
)


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that could not be imported: its name and the traceback."""

    name: str
    error: str


pm = pluggy.PluginManager("paraeval")
pm.add_hookspecs(hookspecs)
load_failures: list[LoadFailure] = []
#: id(plugin object) -> "distribution version", for plugins loaded from entry points.
_distributions: dict[int, str] = {}
_loaded = False


def _load_entry_points() -> None:
    only = {n.strip() for n in os.environ.get(ONLY_PLUGINS_ENV, "").split(",") if n.strip()}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if only and entry_point.name not in only:
            continue
        if pm.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
        except Exception:  # a broken third-party plugin must not break paraeval
            load_failures.append(LoadFailure(entry_point.name, traceback.format_exc()))
            continue
        pm.register(plugin, name=entry_point.name)
        if entry_point.dist is not None:
            _distributions[id(plugin)] = f"{entry_point.dist.name} {entry_point.dist.version}"


def load_plugins() -> pluggy.PluginManager:
    """Register built-ins and (unless disabled) entry-point plugins, once per process."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if not os.environ.get(DISABLE_AUTOLOAD_ENV):
        _load_entry_points()
    pm.check_pending()
    return pm


def plugin_distribution(plugin: object) -> str:
    """'dist version' for an entry-point plugin, 'paraeval version' for built-ins."""
    if id(plugin) in _distributions:
        return _distributions[id(plugin)]
    from paraeval.version import __version__

    return f"paraeval {__version__} (built-in)" if _is_builtin(plugin) else "(registered in code)"


def _is_builtin(plugin: object) -> bool:
    return getattr(plugin, "__name__", "") in DEFAULT_PLUGINS
