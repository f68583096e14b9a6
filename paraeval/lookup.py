"""The registered datasets and victims by name, and the run's own victims.

Apart from the contracts (:mod:`paraeval.datasets`, :mod:`paraeval.victims`), which the plugin
API re-exports, because finding what is registered needs the plugin registry.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from . import registry
from .datasets import DatasetBase, Splits, check_splits
from .errors import UserError
from .victims import VictimBase


def datasets() -> dict[str, DatasetBase]:
    """Every registered dataset by name (built-in and plugins)."""
    return {name: entry.obj for name, entry in registry.datasets().entries.items()}


def dataset_named(name: str) -> DatasetBase:
    """The registered dataset `name`, or a UserError listing the valid names."""
    found = datasets()
    if name not in found:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(found)}")
    return found[name]


def load_dataset(
    name: str, data_dir: Path | str | None = None, *, allow_download: bool = True
) -> Splits:
    """The dataset's verified splits, loaded once per process (per folder)."""
    return _load(name, str(data_dir) if data_dir else None, allow_download)


@lru_cache(maxsize=8)
def _load(name: str, data_dir: str | None, allow_download: bool) -> Splits:
    dataset = dataset_named(name)
    directory = Path(data_dir).expanduser() if data_dir else None
    return check_splits(dataset, dataset.load(directory, allow_download=allow_download))


#: Victims added for this process's run (a model file, a module object), by name.
_RUN_VICTIMS: dict[str, VictimBase] = {}


def add_run_victim(victim: VictimBase) -> VictimBase:
    """Register `victim` for this process (beside the plugins'); a name clash is an error."""
    if victim.name in registry.victims().entries and victim.name not in _RUN_VICTIMS:
        raise UserError(f"the model's name {victim.name!r} is already a registered victim")
    _RUN_VICTIMS[victim.name] = victim
    return victim


def run_victims() -> dict[str, VictimBase]:
    return dict(_RUN_VICTIMS)


def victims() -> dict[str, VictimBase]:
    """Every victim by name: the plugins' (built-ins first) and this run's own."""
    found = {name: entry.obj for name, entry in registry.victims().entries.items()}
    return found | _RUN_VICTIMS


def victim_named(name: str) -> VictimBase:
    found = victims()
    if name not in found:
        raise UserError(f"unknown victim {name!r}; valid: {', '.join(found)}")
    return found[name]
