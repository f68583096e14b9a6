"""Declared, typed, validated attack options (ART's ``attack_params`` / ``_check_params`` idea)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import UserError


@dataclass(frozen=True)
class Option:
    """One hyper-parameter: its type, default, a check and a help text."""

    default: Any
    help: str
    parse: Callable[[str], Any] = str
    check: Callable[[Any], bool] = lambda _value: True
    requirement: str = ""


def parse_options(
    attack: str, declared: dict[str, Option], given: dict[str, Any]
) -> dict[str, Any]:
    """Defaults overridden by `given` (strings are parsed); unknown or invalid values raise."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise UserError(
            f"unknown option(s) {', '.join(unknown)} for attack {attack!r}; "
            f"valid: {', '.join(f'{k} (default {o.default})' for k, o in declared.items())}"
        )
    values = {key: option.default for key, option in declared.items()}
    for key, raw in given.items():
        option = declared[key]
        try:
            value = option.parse(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise UserError(f"{attack}: option {key}={raw!r} is not a valid value") from None
        if not option.check(value):
            raise UserError(f"{attack}: option {key}={raw!r} must be {option.requirement}")
        values[key] = value
    return values


class ConfigurableAttack:
    """Base of the built-in attacks: declared options, validated at construction.

    Subclasses set ``name``, ``description``, ``tags`` and ``declared`` and may override
    :meth:`check` for constraints between options. ``configure(**options)`` returns a new,
    validated instance (``pgd:eps_step=0.1`` on the command line).
    """

    name: str
    description: str
    tags: tuple[str, ...] = ()
    declared: ClassVar[dict[str, Option]]

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(self.name, self.declared, options)
        self.check()

    def check(self) -> None:
        """Constraints between options; call :meth:`require`."""

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            raise UserError(f"{self.name}: {message}")

    def configure(self, **options: Any) -> ConfigurableAttack:
        return type(self)(**{**self.options, **options})

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"{type(self).__name__}({args})"


def parse_bool(text: str) -> bool:
    """'true'/'false' (also 1/0, yes/no) -> bool; anything else is a ValueError."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(text)


BACKENDS = ("art", "torchattacks")


def backend_option() -> Option:
    return Option("art", "art or torchattacks", str, BACKENDS.__contains__, "art or torchattacks")


def fraction_option(default: float, help: str) -> Option:
    """A float in (0, 1]: an ε, a step, a ratio."""
    return Option(default, help, float, lambda v: 0 < v <= 1, "in (0, 1]")


def count_option(default: int, help: str) -> Option:
    return Option(default, help, int, lambda v: 1 <= v <= 1000, "in [1, 1000]")
