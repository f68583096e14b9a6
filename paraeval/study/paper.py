"""The published Tables 1-3 of Chabanne, Despiegel, Guiga (ICISSP 2021) as data.

These values only ever fill the ``paper_accuracy`` / ``paper_m_adv`` columns; they are never a
measured value. Each row also carries the configuration the paper describes for it.

Table 1 (sigma = 0.2, first 16x16 neurons of the 2nd convolutional layer), Table 2 (whole
output of the 1st layer of VM batch, after its BN layer, sigma in {0.1, 0.2, 0.3}) and Table 3
(several parasites after the 2nd layer of VM batch, sigma = 0.2) are transcribed row by row.

Reading of Table 3. The extracted text flattens multi-line cells; a row's accuracy and M_adv
sit on its *last* printed line, and lines without numbers belong to the next row with
numbers (the final dangling line "Last n neurons BN No bias - -" belongs to row 12). Each
line is "<which neurons> <before BN+act: BN?, bias> <after BN+act: BN?, bias>", a blank or
"- -" meaning no parasite there. Row by row (P = parasite, before/after = position):

 1  first n: before (BN, small), after (no BN, small)                         99.00 / 31.0
 2  first n: before (BN, small), after (BN, small)                            98.98 / 37.0
 3  first n: before (BN, small), after (no BN, none)                          98.93 / 31.5
 4  first n: before (BN, small), after (BN, none)                             98.99 / 31.0
 5  first n: before (BN, none),  after (BN, none)                             98.96 / 28.5
 6  first n: before (BN, small)                                               99.05 / 31.0
 7  last n: before (BN, none);   first n: after (BN, small)                   99.17 / 27.5
 8  last n: before (BN, none);   first n: after (BN, none)                    99.15 / 27.0
 9  last n: before (BN, none);   first n: after (no BN, none)                 99.19 / 25.5
10  before: (no BN, small) and (BN, small); first n: after (BN, small)        98.94 / 40.0
11  before: first n (BN, small) and last n (BN, none); first n: after (BN, small)
                                                                              99.03 / 38.5
12  before: first n (BN, small) and last n (BN, none);
    after: first n (BN, small) and last n (BN, small)                         98.89 / 43.0

The other grouping (a line without numbers belongs to the *previous* row with numbers) is the
reading ``table3_lines=previous``: :func:`_table3_previous_lines` lists its rows 6-12.

Row 10 prints "First n neurons" on both of its lines, i.e. two parasites before BN on the same
neurons; the text says "when there are two parasitic CNNs at the same location, the first is
applied to the first neurons and the second is applied to the last neurons" (Sec. 6.3), so we
apply the first (no BN, small) to the first n and the second (BN, small) to the last n.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from paraeval.defenses.parasite_spec import ParasiteSpec
from paraeval.models.insertion import Neurons, Placement, Position
from paraeval.models.parasite import BiasMode

#: The attack (in transfer mode) the paper's Tables 1-3 were measured with (Sec. 6.2).
#: A row whose protected accuracy falls more than this many pp below its victim's "breaks" the
#: victim: twice the paper's own largest drop (5.8 pp, Table 2 without BN, beta = 0, sigma
#: 0.3), where the paper speaks of "a slight drop" (Sec. 4) and "almost the same accuracy"
#: (Sec. 5).
BREAKS_VICTIM_PP = 10.0
PAPER_ATTACK = "fgsm"


@dataclass(frozen=True)
class PaperRow:
    """One row of Tables 1-3: its defense name, victim, parasites and published values."""

    table: int
    row: int
    name: str
    victim: str
    parasites: tuple[ParasiteSpec, ...]
    accuracy: float
    m_adv: float
    note: str = ""
    #: What measured the published values (the contract's :class:`paraeval.api.Published`).
    #: Left out of the repr: a cell key hashes the row's repr (tests/test_key_stability.py).
    attack: str = field(default=PAPER_ATTACK, repr=False)
    mode: str = field(default="transfer", repr=False)

    @property
    def description(self) -> str:
        parts = "; ".join(spec.label for spec in self.parasites)
        return f"Table {self.table} row {self.row} on {self.victim}: {parts}"


def _slug(batch_norm: bool, bias: str) -> str:
    return f"{'bn' if batch_norm else 'nobn'}-{bias}"


def _spec(
    layer: int, position: str, neurons: str, batch_norm: bool, bias: str, sigma: float = 0.2
) -> ParasiteSpec:
    placement = Placement(layer, cast(Position, position), cast(Neurons, neurons))
    return ParasiteSpec(placement, batch_norm, cast(BiasMode, bias), sigma)


def _table1() -> list[PaperRow]:
    published = [  # (victim, position, parasite BN, bias, accuracy, M_adv)
        ("vm", "after", False, "small", 98.69, 24.5),
        ("vm", "after", False, "none", 98.70, 19.0),
        ("vm", "after", True, "small", 98.50, 28.0),
        ("vm", "after", True, "none", 98.67, 22.0),
        ("vm-batch", "after", False, "small", 99.24, 17.5),
        ("vm-batch", "after", False, "none", 99.14, 14.0),
        ("vm-batch", "after", True, "small", 99.18, 17.0),
        ("vm-batch", "after", True, "none", 99.15, 12.0),
        ("vm-batch", "before", False, "small", 96.64, 37.5),
        ("vm-batch", "before", False, "none", 98.13, 39.0),
        ("vm-batch", "before", True, "small", 99.05, 27.5),
        ("vm-batch", "before", True, "none", 99.16, 14.0),
    ]
    rows = []
    for index, (victim, position, bn, bias, acc, m_adv) in enumerate(published, start=1):
        victim_slug = victim.replace("-", "")
        rows.append(
            PaperRow(
                table=1,
                row=index,
                name=f"t1-{victim_slug}-{position}-{_slug(bn, bias)}",
                victim=victim,
                parasites=(_spec(2, position, "first", bn, bias),),
                accuracy=acc,
                m_adv=m_adv,
            )
        )
    return rows


def _table2() -> list[PaperRow]:
    published = {  # (parasite BN, bias) -> {sigma: (accuracy, M_adv)}
        (True, "none"): {0.1: (99.11, 9.0), 0.2: (99.09, 34.0), 0.3: (99.02, 34.0)},
        (True, "small"): {0.1: (93.58, 48.0), 0.2: (99.05, 32.0), 0.3: (97.55, 46.5)},
        (False, "none"): {0.1: (99.18, 16.5), 0.2: (98.28, 42.0), 0.3: (93.33, 52.0)},
        (False, "small"): {0.1: (98.79, 46.5), 0.2: (98.00, 48.0), 0.3: (98.27, 45.0)},
    }
    rows: list[PaperRow] = []
    for (bn, bias), by_sigma in published.items():
        for sigma, (acc, m_adv) in by_sigma.items():
            rows.append(
                PaperRow(
                    table=2,
                    row=len(rows) + 1,
                    name=f"t2-{_slug(bn, bias)}-sigma{sigma}",
                    victim="vm-batch",
                    parasites=(_spec(1, "after", "whole", bn, bias, sigma),),
                    accuracy=acc,
                    m_adv=m_adv,
                )
            )
    return rows


def _table3() -> list[PaperRow]:
    b, a = "before", "after"
    published: list[tuple[tuple[ParasiteSpec, ...], float, float]] = [
        ((_spec(2, b, "first", True, "small"), _spec(2, a, "first", False, "small")), 99.00, 31.0),
        ((_spec(2, b, "first", True, "small"), _spec(2, a, "first", True, "small")), 98.98, 37.0),
        ((_spec(2, b, "first", True, "small"), _spec(2, a, "first", False, "none")), 98.93, 31.5),
        ((_spec(2, b, "first", True, "small"), _spec(2, a, "first", True, "none")), 98.99, 31.0),
        ((_spec(2, b, "first", True, "none"), _spec(2, a, "first", True, "none")), 98.96, 28.5),
        ((_spec(2, b, "first", True, "small"),), 99.05, 31.0),
        ((_spec(2, b, "last", True, "none"), _spec(2, a, "first", True, "small")), 99.17, 27.5),
        ((_spec(2, b, "last", True, "none"), _spec(2, a, "first", True, "none")), 99.15, 27.0),
        ((_spec(2, b, "last", True, "none"), _spec(2, a, "first", False, "none")), 99.19, 25.5),
        (
            (
                _spec(2, b, "first", False, "small"),
                _spec(2, b, "last", True, "small"),
                _spec(2, a, "first", True, "small"),
            ),
            98.94,
            40.0,
        ),
        (
            (
                _spec(2, b, "first", True, "small"),
                _spec(2, b, "last", True, "none"),
                _spec(2, a, "first", True, "small"),
            ),
            99.03,
            38.5,
        ),
        (
            (
                _spec(2, b, "first", True, "small"),
                _spec(2, b, "last", True, "none"),
                _spec(2, a, "first", True, "small"),
                _spec(2, a, "last", True, "small"),
            ),
            98.89,
            43.0,
        ),
    ]
    return [
        PaperRow(
            table=3,
            row=index,
            name=f"t3-row{index:02d}",
            victim="vm-batch",
            parasites=specs,
            accuracy=acc,
            m_adv=m_adv,
            note="row 10: second 'first n' read as last n (Sec. 6.3 rule)" if index == 10 else "",
        )
        for index, (specs, acc, m_adv) in enumerate(published, start=1)
    ]


def _table3_previous_lines() -> dict[str, tuple[ParasiteSpec, ...]]:
    """Table 3's rows 6-12 under the other grouping of the flattened lines: a line without
    numbers belongs to the *previous* row with numbers (a row's numbers on its first printed
    line). Rows 1-5 are one line each and read the same. The lines, in printed order:

      6  first n before (BN, small) [99.05 / 31.0]; last n before (BN, none)
      7  first n after (BN, small) [99.17 / 27.5]; last n before (BN, none)
      8  first n after (BN, none) [99.15 / 27.0]; last n before (BN, none)
      9  first n after (no BN, none) [99.19 / 25.5]; first n before (no BN, small)
     10  first n before (BN, small) and after (BN, small) [98.94 / 40.0]; last n before (BN, none)
     11  first n before (BN, small) and after (BN, small) [99.03 / 38.5]; last n after (BN, small)
     12  first n before (BN, small) and after (BN, small) [98.89 / 43.0]; last n before (BN, none)

    No line is left dangling and no row prints "first n" twice at one location; rows 10 and
    12 then describe the same parasites.
    """
    b, a = "before", "after"
    before_last = _spec(2, b, "last", True, "none")
    both_first = (_spec(2, b, "first", True, "small"), _spec(2, a, "first", True, "small"))
    rows = {
        6: (_spec(2, b, "first", True, "small"), before_last),
        7: (_spec(2, a, "first", True, "small"), before_last),
        8: (_spec(2, a, "first", True, "none"), before_last),
        9: (_spec(2, a, "first", False, "none"), _spec(2, b, "first", False, "small")),
        10: (*both_first, before_last),
        11: (*both_first, _spec(2, a, "last", True, "small")),
        12: (*both_first, before_last),
    }
    return {f"t3-row{index:02d}": specs for index, specs in rows.items()}


TABLE1 = _table1()
TABLE2 = _table2()
TABLE3 = _table3()
ROWS: tuple[PaperRow, ...] = (*TABLE1, *TABLE2, *TABLE3)
ROWS_BY_NAME = {row.name: row for row in ROWS}
#: Table 3's rows whose parasites the other grouping of its lines changes, under that grouping.
TABLE3_PREVIOUS_LINES = _table3_previous_lines()
