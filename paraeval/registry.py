"""Name -> defense / attack, collected from the plugin hooks, and the selection syntax.

Selection (``--defenses`` / ``--attacks``): a comma-separated list whose items are
``all``, an exact name, a tag (``table1``, ``parasite``, ...) or a glob (``t1-*``).
An attack item may carry options: ``pgd:max_eps=0.3,steps=40`` - after ``name:``, each
``key=value`` item (up to the next item without ``=``) is an option of that attack;
``mode=adaptive`` (any attack) attacks the protected model instead of the victim.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from paraeval.api import (
    AttackBase,
    DefenseBase,
    ExtractionAttackBase,
    Plugin,
    as_attack,
    as_defense,
)
from paraeval.errors import SelectionError
from paraeval.plugin.manager import load_plugins, plugin_distribution

if TYPE_CHECKING:
    from paraeval.datasets import DatasetBase
    from paraeval.models.victim_base import VictimBase

T = TypeVar("T", bound=Plugin)
#: What an attack entry holds: an evasion or an extraction attack.
AnyAttack = AttackBase | ExtractionAttackBase


@dataclass
class Entry(Generic[T]):
    """A registered object and the plugin that registered it."""

    obj: T
    plugin: object
    mode: str = "transfer"
    #: How results name it: the name, plus the options the user gave ("pgd:steps=10").
    label: str = ""

    @property
    def name(self) -> str:
        return self.obj.name

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.obj.tags)

    @property
    def provider(self) -> str:
        return plugin_distribution(self.plugin)


@dataclass
class Registry(Generic[T]):
    """All registered objects of one kind, by name."""

    kind: str
    #: Turns what a plugin registered into the contract's base class (api.as_defense, ...).
    adapt: Callable[[Any], T]
    entries: dict[str, Entry[T]] = field(default_factory=dict)

    def add(self, registered: object, plugin: object) -> None:
        name = getattr(registered, "name", None)
        if not isinstance(name, str) or not name:
            raise SelectionError(f"a {self.kind} registered by {plugin!r} has no name")
        obj = self.adapt(registered)
        if name in self.entries:
            first = self.entries[name].provider
            raise SelectionError(
                f"duplicate {self.kind} name {name!r}: registered by {first} and by "
                f"{plugin_distribution(plugin)} ({getattr(plugin, '__name__', plugin)!r})"
            )
        self.entries[name] = Entry(obj, plugin)

    def names(self) -> list[str]:
        return list(self.entries)

    def tags(self) -> set[str]:
        return {tag for entry in self.entries.values() for tag in entry.tags}

    def select(self, spec: str) -> list[Entry[T]]:
        """Entries matching a selection string, in registration order, without duplicates."""
        chosen: dict[str, Entry[T]] = {}
        for item, _options in split_selection(spec):
            matches = self._match(item)
            for entry in matches:
                chosen.setdefault(entry.name, entry)
        return list(chosen.values())

    def _match(self, item: str) -> list[Entry[T]]:
        if item == "all":
            return list(self.entries.values())
        if item in self.entries:
            return [self.entries[item]]
        tagged = [e for e in self.entries.values() if item in e.tags]
        if tagged:
            return tagged
        if any(ch in item for ch in "*?["):
            globbed = [e for e in self.entries.values() if fnmatch.fnmatchcase(e.name, item)]
            if globbed:
                return globbed
            raise SelectionError(f"no {self.kind} matches {item!r}; valid: {self._valid()}")
        close = difflib.get_close_matches(item, [*self.entries, *self.tags()], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SelectionError(f"unknown {self.kind} {item!r}.{hint} Valid: {self._valid()}")

    def _valid(self) -> str:
        tags = sorted(self.tags())
        return ", ".join(["all", *self.entries, *(f"{t} (tag)" for t in tags)])


def split_selection(spec: str) -> list[tuple[str, dict[str, str]]]:
    """'a,b:k=v,j=w,c' -> [('a', {}), ('b', {'k': 'v', 'j': 'w'}), ('c', {})]; a value may
    contain ':' ('parasite:layer=conv2,neurons=first:256')."""
    items: list[tuple[str, dict[str, str]]] = []
    for raw in spec.split(","):
        token = raw.strip()
        if not token:
            continue
        if "=" in token and (":" not in token or token.index("=") < token.index(":")):
            # key=value continuing the previous name's options (a value may hold ':')
            if not items:
                raise SelectionError(f"option {token!r} does not follow a name")
            key, value = token.split("=", 1)
            items[-1][1][key.strip()] = value.strip()
            continue
        name, _, option = token.partition(":")
        options: dict[str, str] = {}
        if option:
            if "=" not in option:
                raise SelectionError(f"option {option!r} of {name!r} is not key=value")
            key, value = option.split("=", 1)
            options[key.strip()] = value.strip()
        items.append((name.strip(), options))
    if not items:
        raise SelectionError("empty selection")
    return items


def _collect(hook_name: str, registry: Registry[T]) -> Registry[T]:
    pm = load_plugins()
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        impl.function(register=_registrar(registry, impl.plugin))
    return registry


def _registrar(registry: Registry[T], plugin: object) -> Callable[[Any], None]:
    return lambda obj: registry.add(obj, plugin)


def defenses() -> Registry[DefenseBase]:
    """Every registered defense (built-in and plugins), in registration order."""
    return _collect("register_defenses", Registry("defense", as_defense))


def attacks() -> Registry[AnyAttack]:
    """Every registered attack (built-in and plugins), in registration order."""
    return _collect("register_attacks", Registry("attack", as_attack))


def victims() -> Registry[VictimBase]:
    """Every registered victim (built-in and plugins), in registration order."""
    from paraeval.models.victim_base import VictimBase

    return _collect("register_victims", Registry("victim", _instance_of(VictimBase, "victim")))


def datasets() -> Registry[DatasetBase]:
    """Every registered dataset (built-in and plugins), in registration order."""
    from paraeval.datasets import DatasetBase

    return _collect("register_datasets", Registry("dataset", _instance_of(DatasetBase, "dataset")))


def _instance_of(base: type[T], kind: str) -> Callable[[Any], T]:
    """Victims and datasets subclass their base class (they have no minimal protocol)."""

    def adapt(registered: Any) -> T:
        if not isinstance(registered, base):
            raise SelectionError(f"{kind} {registered.name!r} does not subclass {base.__name__}")
        return registered

    return adapt


#: transfer: craft on the victim, replay on the protected model (the paper's setting);
#: adaptive: attack the protected model itself. Extraction attacks (``kind = "extraction"``)
#: always query the protected model and run in their own mode, "extraction".
MODES = ("transfer", "adaptive")
EXTRACTION = "extraction"


def configured_attacks(spec: str) -> list[Entry[AnyAttack]]:
    """Select attacks and apply per-attack options via their ``configure(**options)``.

    ``mode=transfer|adaptive`` is handled here, for every attack: it is not an option of the
    attack but of how the runner uses it.
    """
    selected: list[Entry[AnyAttack]] = []
    registry = attacks()
    for item, options in split_selection(spec):
        mode = options.pop("mode", None)
        if mode is not None and mode not in MODES:
            raise SelectionError(f"mode={mode!r} for {item!r}; valid: {', '.join(MODES)}")
        for entry in _configured(registry, item, options, mode or "transfer"):
            if entry.obj.kind == EXTRACTION:
                if mode is not None:
                    raise SelectionError(f"{entry.name} is an extraction attack: no mode option")
                entry.mode = EXTRACTION
            selected.append(entry)
    return selected


def configured_defenses(spec: str) -> list[Entry[DefenseBase]]:
    """Select defenses, applying options (``t1-*:bn_stats=training``) via ``configure``."""
    registry = defenses()
    selected: dict[str, Entry[DefenseBase]] = {}
    for item, options in split_selection(spec):
        for entry in _configured(registry, item, options):
            selected.setdefault(entry.label, entry)
    return list(selected.values())


def _configured(
    registry: Registry[T], item: str, options: dict[str, str], mode: str = "transfer"
) -> list[Entry[T]]:
    """The entries `item` selects, reconfigured with `options` and labelled with them."""
    configured = []
    for entry in registry.select(item):
        obj = entry.obj.configure(**options) if options else entry.obj
        given = ",".join(f"{key}={value}" for key, value in options.items())
        label = f"{entry.name}:{given}" if given else entry.name
        configured.append(Entry(obj, entry.plugin, mode, label))
    return configured
