"""Small inline-SVG charts for the self-contained HTML report (no scripts, no network).

Every text that may come from a plugin goes through markupsafe.escape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False
    tooltips: Sequence[str] = ()


@dataclass(frozen=True)
class Frame:
    """Maps data coordinates to a width x height plot with margins."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width: int = 560
    height: int = 340
    margin: int = 52

    def x(self, value: float) -> float:
        low, high = self.x_range
        span = (high - low) or 1.0
        return self.margin + (value - low) / span * (self.width - 2 * self.margin)

    def y(self, value: float) -> float:
        low, high = self.y_range
        span = (high - low) or 1.0
        return self.height - self.margin - (value - low) / span * (self.height - 2 * self.margin)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = (high - low) / count if high > low else 1.0
    return [low + i * step for i in range(count + 1)]


def _padded(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.08 or 1.0
    return low - pad, high + pad


def _axes(frame: Frame, x_label: str, y_label: str, title: str) -> list[str]:
    parts = [
        f'<text x="{frame.width / 2}" y="18" text-anchor="middle" class="title">{escape(title)}</text>',
        f'<line x1="{frame.margin}" y1="{frame.height - frame.margin}" x2="{frame.width - frame.margin}" '
        f'y2="{frame.height - frame.margin}" stroke="#333"/>',
        f'<line x1="{frame.margin}" y1="{frame.margin}" x2="{frame.margin}" '
        f'y2="{frame.height - frame.margin}" stroke="#333"/>',
        f'<text x="{frame.width / 2}" y="{frame.height - 10}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="14" y="{frame.height / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {frame.height / 2})">{escape(y_label)}</text>',
    ]
    for tick in _ticks(*frame.x_range):
        parts.append(
            f'<text x="{frame.x(tick):.1f}" y="{frame.height - frame.margin + 16}" '
            f'text-anchor="middle" class="tick">{tick:.3g}</text>'
        )
    for tick in _ticks(*frame.y_range):
        parts.append(
            f'<text x="{frame.margin - 6}" y="{frame.y(tick) + 4:.1f}" text-anchor="end" '
            f'class="tick">{tick:.3g}</text>'
        )
    return parts


def chart(
    series: Sequence[Series], x_label: str, y_label: str, title: str, lines: bool = True
) -> Markup:
    """A line chart (or scatter with `lines=False`) with a legend."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    frame = Frame(_padded(xs), _padded(ys))
    parts = _axes(frame, x_label, y_label, title)
    for index, item in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = [(frame.x(x), frame.y(y)) for x, y in item.points if math.isfinite(x + y)]
        if lines and len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            dash = ' stroke-dasharray="5 4"' if item.dashed else ""
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}"{dash}/>')
        tooltips = list(item.tooltips) or [item.label] * len(points)
        for (x, y), tip in zip(points, tooltips, strict=False):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        legend_y = 34 + 15 * index
        parts.append(
            f'<rect x="{frame.width - 190}" y="{legend_y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{frame.width - 175}" y="{legend_y}" class="legend">{escape(item.label)}</text>'
        )
    return _svg(frame, parts)


def heatmap(matrix: Sequence[Sequence[int]], title: str) -> Markup:
    """A 10x10 count matrix: rows = victim prediction, columns = protected prediction."""
    cell, margin = 22, 40
    size = margin + 10 * cell + 10
    peak = max((value for row in matrix for value in row), default=0) or 1
    parts = [
        f'<text x="{size / 2}" y="14" text-anchor="middle" class="title">{escape(title)}</text>'
    ]
    for r, row in enumerate(matrix):
        parts.append(
            f'<text x="{margin - 6}" y="{margin + r * cell + 15}" text-anchor="end" class="tick">{r}</text>'
        )
        for c, value in enumerate(row):
            shade = 1 - math.log1p(value) / math.log1p(peak) if value else 1.0
            level = int(255 * shade)
            fill = f"rgb({level},{level},255)"
            parts.append(
                f'<rect x="{margin + c * cell}" y="{margin + r * cell}" width="{cell}" '
                f'height="{cell}" fill="{fill}" stroke="#ddd"><title>victim {r} → protected {c}: '
                f"{value}</title></rect>"
            )
            if value:
                color = "#fff" if shade < 0.5 else "#000"
                parts.append(
                    f'<text x="{margin + c * cell + cell / 2}" y="{margin + r * cell + 15}" '
                    f'text-anchor="middle" class="tick" fill="{color}">{value}</text>'
                )
    for c in range(10):
        parts.append(
            f'<text x="{margin + c * cell + cell / 2}" y="{margin - 6}" text-anchor="middle" class="tick">{c}</text>'
        )
    frame = Frame((0, 1), (0, 1), width=size, height=size + 4)
    return _svg(frame, parts)


def _svg(frame: Frame, parts: list[str]) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{frame.width}" height="{frame.height}" '
        f'viewBox="0 0 {frame.width} {frame.height}" role="img">{body}</svg>'
    )
