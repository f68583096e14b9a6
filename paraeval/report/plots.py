"""The report's figures, drawn with matplotlib and inlined as SVG (no scripts, no network).

Design: round axis ticks (matplotlib's locators), legends outside the data, the Okabe-Ito
colour-blind-safe palette, text kept as text (small files, searchable). The central figure is
a forest plot per paper table: each row's paper value beside the measured mean and its 95 %
interval, accuracy and M_adv side by side.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from markupsafe import Markup

#: Okabe & Ito (2008), safe for the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
STYLE: dict[Any, Any] = {
    "svg.fonttype": "none", "font.size": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "paraeval",
}  # fmt: skip


@dataclass(frozen=True)
class Line:
    """One series of a line or scatter plot."""

    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False
    #: Series with the same group share a colour (measured and paper of one kind).
    group: int | None = None


def svg(figure: Any) -> Markup:
    """The figure as inline SVG markup (XML header and metadata stripped), then closed."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg") :], flags=re.S)
    return Markup(text)


@dataclass(frozen=True)
class ForestRow:
    """One paper row: its label, the paper's values and the measured (mean, low, high)."""

    label: str
    paper: tuple[float, float]
    accuracy: tuple[float, float, float]
    m_adv: tuple[float, float, float]


def forest(rows: Sequence[ForestRow], title: str) -> Markup:
    """Per row: the measured mean with its 95 % interval (dot, bar) and the paper value (x)."""
    with plt.rc_context(STYLE):
        height = 0.9 + 0.24 * len(rows)
        figure, axes = plt.subplots(1, 2, figsize=(7.2, height), sharey=True)
        positions = list(range(len(rows)))[::-1]
        for axis, metric, name in (
            (axes[0], "accuracy", "accuracy (%)"),
            (axes[1], "m_adv", "M_adv (%)"),
        ):
            measured = [getattr(r, metric) for r in rows]
            paper = [r.paper[0 if metric == "accuracy" else 1] for r in rows]
            errors = [
                [m - lo if math.isfinite(lo) else 0 for m, lo, _ in measured],
                [hi - m if math.isfinite(hi) else 0 for m, _, hi in measured],
            ]
            axis.errorbar(
                [m for m, _, _ in measured],
                positions,
                xerr=errors,
                fmt="o",
                color=PALETTE[0],
                markersize=3.5,
                capsize=2,
                label="measured, 95 % prediction interval",
            )
            axis.scatter(
                paper, positions, marker="x", color=PALETTE[5], s=22, zorder=3, label="paper"
            )
            axis.set_xlabel(name)
        axes[0].set_yticks(positions, [r.label for r in rows])
        # the legend under the axes, the title above them: they never overlap
        figure.subplots_adjust(bottom=min(0.6, 0.55 / height))  # the x labels inside it
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(
            handles, labels, loc="upper left", bbox_to_anchor=(0.02, 0.0), ncol=2, frameon=False
        )
        figure.suptitle(title, x=0.02, ha="left", fontweight="bold")
        return svg(figure)


def lines(
    series: Sequence[Line],
    x_label: str,
    y_label: str,
    title: str,
    *,
    markers_only: bool = False,
    log_x: bool = False,
) -> Markup:
    """Lines (or points) per series, the legend outside the axes on the right."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5.6, 3.2))
        for index, line in enumerate(series):
            xs, ys = [p[0] for p in line.points], [p[1] for p in line.points]
            color = PALETTE[(index if line.group is None else line.group) % len(PALETTE)]
            if markers_only:
                axis.scatter(
                    xs, ys, s=14, color=color, label=line.label, marker="x" if line.dashed else "o"
                )
            else:
                axis.plot(
                    xs,
                    ys,
                    color=color,
                    label=line.label,
                    marker="o",
                    markersize=2.5,
                    linestyle="--" if line.dashed else "-",
                )
        axis.set_xlabel(x_label)
        axis.set_ylabel(y_label)
        if log_x:
            axis.set_xscale("log")
        axis.set_title(title, loc="left", fontweight="bold")
        if series:
            axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        return svg(figure)


def bars(labels: Sequence[str], values: Sequence[float], x_label: str, title: str) -> Markup:
    """Horizontal bars, one per label (the readings' distance to the paper)."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(6.0, 0.8 + 0.22 * len(labels)))
        positions = list(range(len(labels)))[::-1]
        axis.barh(positions, values, color=PALETTE[0], height=0.6)
        axis.set_yticks(positions, labels)
        axis.set_xlabel(x_label)
        axis.set_title(title, loc="left", fontweight="bold")
        return svg(figure)
