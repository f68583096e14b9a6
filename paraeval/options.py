"""Typed plugin options: one frozen dataclass per defense or attack, one validation path.

A plugin's hyper-parameters are the fields of an :class:`Options` subclass, each declared with
:func:`option` (default, help text, fixed values or a check; for a reading of the paper, the
sentence it interprets and the rule behind its default). The same class parses the selection
syntax's strings (``pgd:steps=10``), rejects unknown names and invalid values with one line
listing the valid ones (exit code 2), is hashed into every cell key (``as_dict``) and is listed
by ``paraeval list defenses|attacks --options`` - ART's ``attack_params`` / ``_check_params``
idea with a dataclass's types, torchattacks' "hyper-parameters are plain attributes".

Example::

    @dataclass(frozen=True)
    class NoiseOptions(Options):
        std: float = option(0.1, "standard deviation of the logit noise", parse=float,
                            check=lambda v: v >= 0, requirement=">= 0")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, cast

from paraeval.errors import UserError


@dataclass(frozen=True)
class OptionSpec:
    """How one option is parsed, checked and documented."""

    help: str
    values: tuple[Any, ...] | None = None  # None: any value `check` accepts
    parse: Callable[[str], Any] = str
    check: Callable[[Any], bool] = lambda _value: True
    requirement: str = ""  # shown when `check` fails (values give their own)
    paper: str = ""  # the sentence of the paper a reading interprets ("": silent / not one)
    rule: str = ""  # why the default is what it is
    none_text: str = "auto"  # how a None value is written (and parsed) on the command line

    def shown(self, value: Any) -> str:
        """`value` as the command line writes it."""
        return self.none_text if value is None else shown_value(value)

    def requirement_text(self) -> str:
        if self.values is not None:
            return "one of " + "|".join(map(shown_value, self.values))
        return self.requirement or "a valid value"


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field that is an option (keyword arguments: :class:`OptionSpec`'s)."""
    return field(default=default, metadata={"option": OptionSpec(help, **spec)})


def at_least(default: Any, help: str, minimum: float, parse: Any = int) -> Any:
    """An integer (or, with ``parse=float``, a number) option with a lower bound."""
    return option(
        default, help, parse=parse, check=lambda v: v >= minimum, requirement=f">= {minimum}"
    )


def parse_bool(text: str) -> bool:
    """'true'/'false' (also 1/0, yes/no) -> bool; anything else is a ValueError."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(text)


def shown_value(value: Any) -> str:
    """An option's value as the command line writes it (None is 'auto')."""
    return "auto" if value is None else str(value)


_INVALID = object()


@dataclass(frozen=True)
class Options:
    """Base of every plugin's typed options (see the module docstring)."""

    @classmethod
    def specs(cls) -> dict[str, OptionSpec]:
        """Field name -> its declaration, in declaration order."""
        return {
            f.name: cast(OptionSpec, f.metadata["option"])
            for f in dataclasses.fields(cls)
            if "option" in f.metadata
        }

    @classmethod
    def parse(cls, owner: str, given: Mapping[str, Any]) -> Self:
        """The defaults with `given` (strings parsed) on top; `owner` names the plugin in errors."""
        specs = cls.specs()
        unknown = sorted(set(given) - set(specs))
        if unknown:
            valid = cls.describe_valid() or "none (it takes no options)"
            raise UserError(f"{owner}: unknown option(s) {', '.join(unknown)}; valid: {valid}")
        values = {name: _parse_value(owner, name, specs[name], raw) for name, raw in given.items()}
        parsed = cls(**values)
        parsed.check(owner)
        return parsed

    def check(self, owner: str) -> None:
        """Constraints between options (override; raise with :meth:`require`)."""

    @staticmethod
    def require(owner: str, condition: bool, message: str) -> None:
        if not condition:
            raise UserError(f"{owner}: {message}")

    def updated(self, owner: str, given: Mapping[str, Any]) -> Self:
        """These options with `given` applied on top, validated."""
        return self.parse(owner, {**self.changed(), **given})

    def as_dict(self) -> dict[str, Any]:
        """Every option, for cell keys and labels."""
        return dataclasses.asdict(self)

    def changed(self) -> dict[str, Any]:
        """The options that differ from the defaults."""
        default = type(self)()
        return {k: v for k, v in self.as_dict().items() if default.as_dict()[k] != v}

    @classmethod
    def describe_valid(cls) -> str:
        """'name=requirement (default x), ...' for error messages."""
        default = cls().as_dict()
        return ", ".join(
            f"{name}={spec.requirement_text()} (default {spec.shown(default[name])})"
            for name, spec in cls.specs().items()
        )

    @classmethod
    def rows(cls) -> list[dict[str, str]]:
        """One row per option: name, values, default, help, paper sentence, rule."""
        default = cls().as_dict()
        return [
            {
                "option": name,
                "values": spec.requirement_text(),
                "default": spec.shown(default[name]),
                "help": spec.help,
                "paper": spec.paper,
                "rule": spec.rule,
            }
            for name, spec in cls.specs().items()
        ]

    def __str__(self) -> str:
        specs = self.specs()
        return ", ".join(
            f"{k}={specs[k].shown(v) if k in specs else shown_value(v)}"
            for k, v in self.as_dict().items()
        )


def _parse_value(owner: str, name: str, spec: OptionSpec, raw: Any) -> Any:
    try:
        value = spec.parse(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = _INVALID
    valid = value is not _INVALID and (spec.values is None or value in spec.values)
    if not valid or not spec.check(value):
        raise UserError(f"{owner}: option {name}={raw!r} must be {spec.requirement_text()}")
    return value


@dataclass(frozen=True)
class NoOptions(Options):
    """The options of a plugin that takes none."""
