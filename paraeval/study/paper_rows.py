"""One defense per row of the paper's Tables 1-3 (see paraeval.study.paper for the rows): each a
preset of the generic `parasite` defense - the same insertion and training code, with
the row's fixed placements, its table's seed stream and the paper's published values.

Every row takes the reading options of :class:`~paraeval.defenses.parasite_reading.ParasiteReading`
(``--defenses 't1-*:init=dirac,bn_stats=training'``); ``paraeval list defenses --options``
lists them with their values, defaults and the sentences of the paper they interpret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from torch import nn

from paraeval.api import DatasetBase, DefenseBase, VictimBase
from paraeval.defenses.generic import GenericParasite
from paraeval.defenses.parasite_reading import WHOLE_LAYER_OPTIONS, ParasiteReading
from paraeval.defenses.parasite_spec import ParasiteSpec
from paraeval.errors import UserError
from paraeval.hookspecs import hookimpl
from paraeval.study.paper import ROWS, TABLE3_PREVIOUS_LINES, PaperRow

#: The paper row whose layout the ``row12`` reading decides.
ROW12 = "t3-row12"


class PaperRowDefense(GenericParasite):
    """The parasites of one paper row, inserted into the victim the paper used for it."""

    # The reading alone: a row's placements are fixed, it has no layer/neurons options.
    options_class = ParasiteReading  # type: ignore[assignment]
    options: ParasiteReading  # type: ignore[assignment]
    refused_options = ()

    def __init__(self, row: PaperRow, reading: ParasiteReading | None = None) -> None:
        self.row = row
        self.paper = row
        self.options = reading or ParasiteReading()
        self.name = row.name
        self.description = row.description + (f" [{row.note}]" if row.note else "")
        self.tags = (f"table{row.table}", "parasites", "paper")
        self.victims = (row.victim,)

    def configure(self, **given: str) -> Self:
        """The reading's options; ``row12`` reads the layout of ``table3_lines=next`` only."""
        configured = super().configure(**given)
        if "row12" in given and configured.reading.table3_lines == "previous":
            raise UserError(
                f"{self.name}: row12 reads Table 3's 'next' grouping; under "
                "table3_lines=previous no line is left dangling"
            )
        return configured

    def key_options(self) -> dict[str, Any]:
        """The reading, hashed into the cell key: only the options that apply to the row
        (``row12`` on row 12, the whole-layer options on whole-layer rows, ``bn_scale_shift``
        on rows with a BN parasite), so an option that cannot change a row leaves its key."""
        options = self.reading.key_dict()
        if self.name != ROW12 or self.reading.table3_lines == "previous":
            del options["row12"]
        if self.name not in TABLE3_PREVIOUS_LINES:
            options.pop("table3_lines", None)
        if not any(spec.placement.neurons == "whole" for spec in self.specs):
            for name in WHOLE_LAYER_OPTIONS:
                options.pop(name, None)
        if not any(spec.batch_norm for spec in self.specs):
            options.pop("bn_scale_shift", None)
        return options

    @property
    def specs(self) -> tuple[ParasiteSpec, ...]:
        """The row's parasites: under ``table3_lines=previous`` the other grouping of Table 3's
        lines; row 12 without its dangling 4th line under ``row12=3``."""
        if self.reading.table3_lines == "previous" and self.name in TABLE3_PREVIOUS_LINES:
            return TABLE3_PREVIOUS_LINES[self.name]
        if self.name == ROW12 and self.reading.row12 == 3:
            return self.row.parasites[:3]
        return self.row.parasites

    @property
    def stream(self) -> str:
        return f"table{self.row.table}"

    def placed(self, model: nn.Module) -> tuple[ParasiteSpec, ...]:
        return self.specs

    def check(self, model: nn.Module) -> None:
        """Nothing to check: the row's placements are the paper's, on the paper's victim."""

    def applies_to(self, victim: VictimBase, dataset: DatasetBase) -> bool:
        return DefenseBase.applies_to(self, victim, dataset)

    def skip_reason(self, victim: str) -> str:
        return DefenseBase.skip_reason(self, victim)


@hookimpl
def register_defenses(register: Callable[[object], None]) -> None:
    for row in ROWS:
        register(PaperRowDefense(row))
