"""Accuracy, M_adv, prediction-change matrices and confidence intervals.

M_adv (paper Sec. 6.2): "the percentage of adversarial examples for the original model which
are no longer adversarial for the protected model". Counting rules (docs/usage.md, "Which images
count"):

* the images are the first `n_images` (200) MNIST test images;
* an image the *victim* already misclassifies is not attacked and does not count
  (`n_misclassified`): it is an error, not an adversarial example;
* an image the sweep never makes adversarial (up to eps = 1.0) does not count either;
* `n_adversarial` = the remaining images, whose example fools the victim; M_adv is the
  percentage of them that the protected model classifies correctly (true label).

The prediction-change matrix counts, over those `n_adversarial` examples, the victim's
prediction (row) against the protected model's prediction (column) on the same example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

METRIC_VERSION = 1
#: What M_adv's percentage is taken over: the adversarial examples the victim is fooled by
#: (default: Sec. 6.2 defines M_adv as a percentage "of adversarial examples for the original
#: model"), or every image the run attacked, misclassified ones included (every published M_adv
#: is a multiple of 0.5 % = k/200, which "the first 200 images" as the denominator gives).
M_ADV_DENOMINATORS = ("adversarial", "all")


@dataclass(frozen=True)
class TransferOutcome:
    """Replay of victim-crafted adversarial examples on a protected model."""

    n_attacked: int
    n_misclassified: int
    n_adversarial: int
    n_recovered: int
    n_changed_label: int
    change_matrix: np.ndarray

    @property
    def m_adv(self) -> float:
        return 100.0 * self.n_recovered / self.n_adversarial if self.n_adversarial else math.nan


def m_adv_over(cell: dict[str, object], denominator: str) -> float:
    """A stored transfer cell's M_adv (%) over `denominator` (one of M_ADV_DENOMINATORS),
    from its counts: recovered / adversarial, or recovered / every image of the run."""
    if denominator not in M_ADV_DENOMINATORS:
        raise ValueError(f"denominator must be one of {M_ADV_DENOMINATORS}, not {denominator!r}")
    if denominator == "adversarial":
        return float(cell["m_adv"])  # type: ignore[arg-type]
    images = int(cell["n_attacked"]) + int(cell["n_misclassified"])  # type: ignore[call-overload]
    return 100.0 * int(cell["n_recovered"]) / images if images else math.nan  # type: ignore[call-overload]


def transfer_outcome(
    labels: torch.Tensor,
    victim_clean: torch.Tensor,
    victim_adv: torch.Tensor,
    protected_adv: torch.Tensor,
    success: torch.Tensor,
) -> TransferOutcome:
    """Count M_adv's terms from predictions (all tensors of length n_images)."""
    attacked = victim_clean == labels
    counted = attacked & success & (victim_adv != labels)
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (victim_adv[counted].numpy(), protected_adv[counted].numpy()), 1)
    still_adversarial = counted & (protected_adv != labels)
    return TransferOutcome(
        n_attacked=int(attacked.sum()),
        n_misclassified=int((~attacked).sum()),
        n_adversarial=int(counted.sum()),
        n_recovered=int((counted & (protected_adv == labels)).sum()),
        n_changed_label=int((still_adversarial & (protected_adv != victim_adv)).sum()),
        change_matrix=matrix,
    )


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std, low, high) of a Student t interval over seeds; NaN bounds for < 2 values."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(data) == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if len(data) < 2:
        return (mean, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    from scipy import stats  # deferred: 2 s of import that cells never need

    half = float(stats.t.ppf(0.5 + confidence / 2, len(data) - 1)) * std / math.sqrt(len(data))
    return (mean, std, mean - half, mean + half)


def prediction_interval(
    values: list[float], confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """(mean, std, low, high) of the Student t prediction interval for *one more run*.

    A single published number (one victim, one parasite: one draw of the whole pipeline) is
    compared with where one run of the measured pipeline falls, mean +- t * s * sqrt(1 + 1/n),
    not with the interval of the mean over n seeds (``t_interval``), which shrinks with n
    while a single run's spread does not. NaN bounds for fewer than 2 values.
    """
    intervals = seed_intervals(values, confidence, clip=False)
    return (intervals.mean, intervals.std, intervals.pi_low, intervals.pi_high)


class SeedIntervals(NamedTuple):
    """A metric over seeds: mean, SD, the interval of the mean and the prediction interval for
    one run (the same t quantile: the prediction half-width is the mean's times sqrt(n + 1))."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    pi_low: float
    pi_high: float


def seed_intervals(
    values: list[float], confidence: float = 0.95, clip: bool = True
) -> SeedIntervals:
    """Both 95 % intervals of `values` from one t quantile, clipped to [0, 100] (percentages)
    unless `clip` is False; NaN bounds for fewer than 2 values."""
    mean, std, ci_low, ci_high = t_interval(values, confidence)
    n = sum(1 for v in values if not math.isnan(v))
    half = (ci_high - ci_low) / 2 * math.sqrt(n + 1)  # t s sqrt(1 + 1/n)
    pi_low, pi_high = mean - half, mean + half
    if clip:
        (ci_low, ci_high), (pi_low, pi_high) = clipped(ci_low, ci_high), clipped(pi_low, pi_high)
    return SeedIntervals(mean, std, ci_low, ci_high, pi_low, pi_high)


def within_half_width(paper: float, value: float, low: float, high: float) -> bool | None:
    """Whether `value` (a do-nothing baseline) lies as close to the paper's number as the
    half-width of a row's interval [low, high] allows; None without an interval."""
    if math.isnan(low) or math.isnan(high):
        return None
    return bool(abs(paper - value) <= (high - low) / 2)


def clipped(
    low: float, high: float, lowest: float = 0.0, highest: float = 100.0
) -> tuple[float, float]:
    """An interval of a percentage cut to [0, 100] (a t interval of values near a bound can
    leave it: 100.6 % accuracy is not a possible run); NaN stays NaN."""
    return (
        max(low, lowest) if not math.isnan(low) else low,
        min(high, highest) if not math.isnan(high) else high,
    )


def inside(value: float, low: float, high: float) -> bool | None:
    """Whether `value` lies in [low, high]; None without a value or an interval (one seed)."""
    return None if math.isnan(value) or math.isnan(low) else bool(low <= value <= high)


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (in %) for a proportion measured on a fixed image set."""
    if total == 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)  # the standard library's: no scipy import
    p = successes / total
    denom = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / denom
    return (100 * (centre - half), 100 * (centre + half))


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Arg-max predictions of `model` on float images, in batches."""
    return torch.cat(
        [model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]
    )


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy in percent."""
    return float((predict(model, images) == labels).double().mean() * 100)
