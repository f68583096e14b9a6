"""Declared, typed, validated attack options (ART's ``attack_params`` / ``_check_params`` idea)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
