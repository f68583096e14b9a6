"""`critical-points`: the critical-point search of Carlini, Jagielski and Mironov (CRYPTO 2020).

The experiment the paper leaves as future work (Sec. 7: "we would like to directly implement
attacks such as (Carlini et al., 2020)"): does a parasite hide the victim's first-layer
hyperplanes from the first step of a cryptanalytic extraction?

The attacker queries the protected model as a float64 black box f(x) = <r, logits(x)>
(`paraeval.extraction.scalar_oracle` over the run's `paraeval.api.Oracle`), searches lines for
critical points by bisection with the two-line / second-difference test, and recovers the
hyperplane normal at the first few of them by finite differences
(`paraeval.extraction.search`). Two kinds of lines, each with the same query budget:

* ``carlini``: Carlini et al.'s sweep: offset ~ N(0, s^2 I) with s ~ U(0.1, 1), direction
  ~ N(0, I), t in [-scale, scale] (their `sweep_for_critical_points`, scale 1e3);
* ``in-domain``: the segment between two test images (t in [0, 1]): the queries a client of
  an image classifier can send without leaving the image box.

Scored against white-box ground truth (`paraeval.extraction.truth`), per kind of line:
points per line; precision (fraction of critical points on a victim first-layer hyperplane);
recall (fraction of the victim's first-layer crossings on the searched part of the lines that
were found; crossings hidden downstream, e.g. by a max-pool, count as missed); the sources of
the other points (parasite, max-pool, deeper, unexplained); the fraction of recovered normals
with |cos| > 0.99 to a victim first-layer unit (over all estimated normals and over those at
first-layer points); queries used. Search queries are capped by ``budget`` per kind of line;
normals cost 2 x 785 queries each on top.

Example::

    paraeval run --victims vm --defenses none,table1 --attacks critical-points:budget=5000
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from paraeval.api import ExtractionAttackBase, ExtractionResult, Oracle
from paraeval.core.seeding import derive_seed
from paraeval.extraction.scalar_oracle import ScalarOracle
from paraeval.extraction.search import CriticalPoint, LineSearch, normal_at, search_line
from paraeval.extraction.truth import (
    COSINE_THRESHOLD,
    KINK_SOURCES,
    MATCH_TOLERANCE,
    FirstLayer,
    kink_source,
)
from paraeval.hookspecs import hookimpl
from paraeval.options import Options, option

LINE_KINDS = ("carlini", "in-domain")


@dataclass
class LineKindTally:
    """Counts for one kind of line; ratios are taken at the end."""

    kind: str
    lines: int = 0
    complete_lines: int = 0
    queries: int = 0
    sources: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINK_SOURCES, 0))
    crossings: int = 0
    crossings_found: int = 0
    normals: int = 0
    normals_cos99: int = 0
    first_layer_normals: int = 0
    first_layer_normals_cos99: int = 0

    @property
    def points(self) -> int:
        return sum(self.sources.values())

    def row(self) -> dict[str, Any]:
        ratio = _ratio
        return {
            "lines": self.kind,
            "n_lines": self.lines,
            "n_complete_lines": self.complete_lines,
            "n_points": self.points,
            "points_per_line": ratio(self.points, self.lines),
            "precision": ratio(self.sources["first-layer"], self.points),
            "recall": ratio(self.crossings_found, self.crossings),
            **{
                f"{s.replace('-', '_')}_fraction": ratio(n, self.points)
                for s, n in self.sources.items()
            },
            "n_crossings": self.crossings,
            "n_normals": self.normals,
            "normals_cos99": ratio(self.normals_cos99, self.normals),
            "n_first_layer_normals": self.first_layer_normals,
            "first_layer_normals_cos99": ratio(
                self.first_layer_normals_cos99, self.first_layer_normals
            ),
            "queries": self.queries,
        }


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def summarise(tallies: list[LineKindTally]) -> dict[str, float | int | str | None]:
    """The results.csv metrics: counts summed over the kinds of line, then ratios."""
    total = LineKindTally("all")
    for tally in tallies:
        for name in (
            "lines",
            "queries",
            "crossings",
            "crossings_found",
            "normals",
            "normals_cos99",
            "first_layer_normals",
            "first_layer_normals_cos99",
        ):
            setattr(total, name, getattr(total, name) + getattr(tally, name))
        for source, count in tally.sources.items():
            total.sources[source] += count
    row = total.row()
    return {
        "cp_points_per_line": row["points_per_line"],
        "cp_precision": row["precision"],
        "cp_recall": row["recall"],
        "cp_parasite_fraction": row["parasite_fraction"],
        "cp_normals_cos99": row["normals_cos99"],
        "cp_first_layer_normals_cos99": row["first_layer_normals_cos99"],
        "cp_queries": row["queries"],
    }


def draw_line(
    kind: str, generator: torch.Generator, images: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(offset, direction, low, high) of one line of `kind` (see the module docstring)."""
    if kind == "carlini":
        dim = images[0].numel()
        spread = 0.1 + 0.9 * float(torch.rand(1, generator=generator, dtype=torch.float64))
        offset = spread * torch.randn(dim, generator=generator, dtype=torch.float64)
        direction = torch.randn(dim, generator=generator, dtype=torch.float64)
        return offset, direction, -scale, scale
    first, second = torch.randperm(len(images), generator=generator)[:2].tolist()
    start = images[first].flatten().to(torch.float64)
    return start, images[second].flatten().to(torch.float64) - start, 0.0, 1.0


@dataclass(frozen=True)
class CriticalPointOptions(Options):
    lines: str = option("both", "kinds of lines searched", values=("both", *LINE_KINDS))
    budget: int = option(20_000, "search queries per kind of line", parse=int,
                         check=lambda v: 100 <= v <= 10_000_000,
                         requirement="in [100, 10000000]")  # fmt: skip
    normals: int = option(8, "normals recovered per kind of line (1570 queries each)",
                          parse=int, check=lambda v: 0 <= v <= 1000,
                          requirement="in [0, 1000]")  # fmt: skip
    scale: float = option(1e3, "half-length of Carlini lines", parse=float,
                          check=lambda v: v > 0, requirement="> 0")  # fmt: skip


class CriticalPointAttack(ExtractionAttackBase):
    """Carlini et al.'s critical-point search and normal recovery; see the module docstring."""

    name = "critical-points"
    description = (
        "Critical-point search of Carlini, Jagielski & Mironov (CRYPTO 2020) on a float64 "
        "scalar oracle; precision/recall of victim first-layer hyperplanes, normals by finite "
        "differences, parasite-explained fraction."
    )
    tags = ("extraction",)
    options_class = CriticalPointOptions
    options: CriticalPointOptions
    headline = "cp_precision"
    metric_docs: ClassVar[dict[str, str]] = {
        "cp_points_per_line": "critical points found per line searched (mean over the kinds "
        "of line, counts pooled)",
        "cp_precision": "share of the critical points on a victim first-layer hyperplane",
        "cp_recall": "share of the victim's first-layer crossings on the searched parts of the "
        "lines that were found",
        "cp_parasite_fraction": "share of the critical points from a parasite's own ReLUs",
        "cp_normals_cos99": "share of recovered normals with |cos| > 0.99 to a victim "
        "first-layer unit",
        "cp_first_layer_normals_cos99": "the same over the normals at first-layer points",
        "cp_queries": "oracle queries used",
    }

    def kinds(self) -> tuple[str, ...]:
        lines = self.options.lines
        return LINE_KINDS if lines == "both" else (lines,)

    def extract(
        self, victim: nn.Module, oracle: Oracle, images: torch.Tensor, *, seed: int
    ) -> ExtractionResult:
        truth = FirstLayer.of(victim, tuple(images.shape[1:]))
        tallies = []
        for kind in self.kinds():
            # A fresh oracle per kind of line: its query count is the kind's, and a randomised
            # defense answers the same whether one kind or both are searched.
            scalar = ScalarOracle(oracle.fork(), derive_seed("projection", seed))
            generator = torch.Generator().manual_seed(derive_seed("lines", kind, seed))
            tallies.append(self._attack(kind, scalar, truth, images, generator))
        return ExtractionResult(summarise(tallies), [t.row() for t in tallies])

    def _attack(
        self,
        kind: str,
        oracle: ScalarOracle,
        truth: FirstLayer,
        images: torch.Tensor,
        generator: torch.Generator,
    ) -> LineKindTally:
        tally = LineKindTally(kind)
        found: list[tuple[torch.Tensor, torch.Tensor, CriticalPoint, str]] = []
        budget = self.options.budget
        while oracle.queries < budget:
            offset, direction, low, high = draw_line(kind, generator, images, self.options.scale)
            search = search_line(oracle, offset, direction, low, high, budget - oracle.queries)
            tally.lines += 1
            tally.complete_lines += search.complete
            for point, source in self._score_line(
                tally, truth, oracle, offset, direction, low, high, search
            ):
                found.append((offset, direction, point, source))
            if not search.complete:
                break
        for offset, direction, point, source in found[: self.options.normals]:
            cosine = truth.best_cosine(normal_at(oracle, offset, direction, point))
            tally.normals += 1
            tally.normals_cos99 += cosine > COSINE_THRESHOLD
            if source == "first-layer":
                tally.first_layer_normals += 1
                tally.first_layer_normals_cos99 += cosine > COSINE_THRESHOLD
        tally.queries = oracle.queries
        return tally

    @staticmethod
    def _score_line(
        tally: LineKindTally,
        truth: FirstLayer,
        oracle: ScalarOracle,
        offset: torch.Tensor,
        direction: torch.Tensor,
        low: float,
        high: float,
        search: LineSearch,
    ) -> list[tuple[CriticalPoint, str]]:
        """Attribute every point of one line; count the first-layer crossings found."""
        tolerance = MATCH_TOLERANCE * (high - low)
        crossings = truth.crossings(offset, direction)
        inside = crossings[(crossings >= low) & (crossings <= high)]
        searched = torch.tensor([search.searched(float(t)) for t in inside], dtype=torch.bool)
        inside = inside[searched]
        found_t = torch.tensor([p.t for p in search.points], dtype=torch.float64)
        tally.crossings += len(inside)
        if len(found_t) and len(inside):
            distance = (inside[:, None] - found_t[None, :]).abs().min(dim=1).values
            tally.crossings_found += int((distance <= tolerance).sum())
        scored = []
        for point in search.points:
            nearest = float((crossings - point.t).abs().min()) if len(crossings) else float("inf")
            if nearest <= tolerance:
                source = "first-layer"
            else:
                step = point.probe_step
                source = kink_source(
                    oracle.scoring_model,
                    offset + (point.t - step) * direction,
                    offset + (point.t + step) * direction,
                    truth.image_shape,
                )
            tally.sources[source] += 1
            scored.append((point, source))
        return scored


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(CriticalPointAttack())
