"""One defense per row of the paper's Tables 1-3 (see paraeval.paper for the rows)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..hookspecs import hookimpl
from ..paper import ROWS, PaperRow
from .parasites import protect_with


class PaperRowDefense:
    """The parasites of one paper row, inserted into the victim the paper used for it."""

    def __init__(self, row: PaperRow) -> None:
        self.paper = row
        self.name = row.name
        self.description = row.description + (f" [{row.note}]" if row.note else "")
        self.tags = (f"table{row.table}", "parasite", "paper")
        self.victims = (row.victim,)

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return protect_with(model, self.paper.parasites, seed, stream=f"table{self.paper.table}")


@hookimpl
def register_defenses(register: Callable[[object], None]) -> None:
    for row in ROWS:
        register(PaperRowDefense(row))
