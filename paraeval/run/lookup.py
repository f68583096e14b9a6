"""The registered datasets and victims by name: where a run turns names into objects.

Apart from the contracts (:mod:`paraeval.datasets`, :mod:`paraeval.models.victim_base`), which
the plugin API re-exports, because finding what is registered needs the plugin registry. A
run resolves its names here once, where it starts (:func:`paraeval.run.runner.validate`; a
worker process once for itself); what it resolved travels down as objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from paraeval import registry
from paraeval.datasets import DatasetBase, Splits, check_splits
from paraeval.errors import UserError
from paraeval.models.victim_base import VictimBase
from paraeval.training.victims import VictimConfig


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


def check_own_victim(victim: VictimBase) -> VictimBase:
    """A victim a run brings itself (a model file, a module object): its name must not be a
    registered victim's."""
    if victim.name in registry.victims().entries:
        raise UserError(f"the model's name {victim.name!r} is already a registered victim")
    return victim


def victims(own: Iterable[VictimBase] = ()) -> dict[str, VictimBase]:
    """Every victim by name: the plugins' (built-ins first) and those a run brings itself."""
    found = {name: entry.obj for name, entry in registry.victims().entries.items()}
    return found | {victim.name: victim for victim in own}


def victim_named(name: str, own: Iterable[VictimBase] = ()) -> VictimBase:
    found = victims(own)
    if name not in found:
        raise UserError(f"unknown victim {name!r}; valid: {', '.join(found)}")
    return found[name]


def victim_config(
    name: str, seed: int = 0, device: str = "cpu", own: Iterable[VictimBase] = ()
) -> VictimConfig:
    """The registered victim `name` (or one of the run's `own`) as a run trains and keys it,
    on its dataset, carrying both so that nothing downstream looks them up again."""
    victim = victim_named(name, own)
    return VictimConfig.of(victim, dataset_named(victim.dataset), seed, device)
