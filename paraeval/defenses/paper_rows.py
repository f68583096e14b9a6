"""One defense per row of the paper's Tables 1-3 (see paraeval.paper for the rows)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import UserError
from ..hookspecs import hookimpl
from ..paper import ROWS, PaperRow
from ..training import ParasiteConfig
from .parasites import BN_STATS, DEFAULT_BN_STATS, parasite_configs, protect_with


class PaperRowDefense:
    """The parasites of one paper row, inserted into the victim the paper used for it."""

    def __init__(self, row: PaperRow, bn_stats: str = DEFAULT_BN_STATS) -> None:
        self.paper = row
        self.options = {"bn_stats": bn_stats}
        self.name = row.name
        self.description = row.description + (f" [{row.note}]" if row.note else "")
        self.tags = (f"table{row.table}", "parasite", "paper")
        self.victims = (row.victim,)

    def configure(self, **options: str) -> PaperRowDefense:
        unknown = sorted(set(options) - {"bn_stats"})
        if unknown or options.get("bn_stats", DEFAULT_BN_STATS) not in BN_STATS:
            raise UserError(
                f"{self.name}: options are bn_stats={'|'.join(BN_STATS)} "
                f"(default {DEFAULT_BN_STATS}); got {options}"
            )
        return PaperRowDefense(self.paper, options.get("bn_stats", DEFAULT_BN_STATS))

    def parasite_configs(self, model: nn.Module, *, seed: int) -> list[ParasiteConfig]:
        """What `protect` will train, so the runner can train it ahead, in parallel."""
        return parasite_configs(model, self.paper.parasites, seed, self.stream)

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return protect_with(
            model, self.paper.parasites, seed, self.stream, self.options["bn_stats"]
        )

    @property
    def stream(self) -> str:
        return f"table{self.paper.table}"


@hookimpl
def register_defenses(register: Callable[[object], None]) -> None:
    for row in ROWS:
        register(PaperRowDefense(row))
