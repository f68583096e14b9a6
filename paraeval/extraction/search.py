"""Critical points along a line, and hyperplane normals at them (Carlini et al. 2020, Sec. 4).

A ReLU network is piecewise linear, so along a line x(t) = o + t d the scalar oracle f is a
piecewise-linear function of t; its kinks ("critical points") are where some ReLU's input
crosses zero. `search_line` finds them by bisection:

1. An interval [a, b] is *linear* when f(m) equals (f(a) + f(b)) / 2 at its midpoint m, up to
   a float64 tolerance; it is dropped.
2. Otherwise the two-line test of Jagielski et al. (2020), used by Carlini et al.: the slopes
   on [a, q1] and [q3, b] (q1, q3 the quarter points) are extrapolated to meet at t*; if t*
   lies in (q1, q3) and f(t*) and the one-sided slopes just left and right of t* (the
   second-difference test) match those two lines, [a, b] holds exactly one kink, at t*.
3. Otherwise [a, b] is split at m and both halves are searched (the quarter points are the
   halves' midpoints, so no query is repeated).

Intervals are processed breadth-first, all intervals of a round in one batched oracle call
(same queries as depth-first, far fewer Python calls). The search stops when every interval is
resolved (the line is *complete*) or the query budget is spent.

`normal_at` recovers the normal of the hyperplane through a critical point: the gradient of f
is estimated by forward differences along the 784 axes on both sides of the kink; the two
gradients differ by a multiple of the normal of the ReLU that switched (Carlini et al.
compute the same quantity as second partial derivatives, "get_ratios"). 2 x 785 queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Oracle = Callable[[torch.Tensor], torch.Tensor]

#: |f(m) - (f(a) + f(b)) / 2| below this fraction of the values' scale counts as linear:
#: float64 evaluation of a LeNet is exact to ~1e-14 relative, a kink of slope change s at
#: distance u from the nearer end moves f(m) by s * u / 2.
LINEAR_TOLERANCE = 1e-10
#: One-sided slopes at t* must match the extrapolated lines to this fraction of the kink size.
SLOPE_TOLERANCE = 1e-2
#: The one-sided slopes are probed this close to t* (relative to the interval or |t*|): far
#: closer than neighbouring kinks, which a coarse probe would step over (a cluster of kinks
#: seen from far away looks like one kink to the two-line test).
PROBE_STEP = 1e-8
#: Intervals narrower than this (relative to the line's length) are abandoned, unresolved.
MIN_RELATIVE_WIDTH = 1e-12


@dataclass
class CriticalPoint:
    """A kink at parameter t of its line, isolated within the interval (low, high)."""

    t: float
    low: float
    high: float

    @property
    def probe_step(self) -> float:
        """How far either side of t the kink was confirmed (see PROBE_STEP)."""
        return probe_step(self.low, self.high, self.t)


def probe_step(low: float, high: float, t: float) -> float:
    return PROBE_STEP * max(high - low, abs(t))


@dataclass
class LineSearch:
    """The outcome of searching one line."""

    points: list[CriticalPoint] = field(default_factory=list)
    queries: int = 0
    unresolved: int = 0
    #: (a, b) intervals not searched when the budget ran out: where kinks may still hide.
    unsearched: list[tuple[float, float]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unsearched

    def searched(self, t: float) -> bool:
        """Whether parameter t lies in the searched part of the line."""
        return not any(a <= t <= b for a, b in self.unsearched)


@dataclass
class _Interval:
    a: float
    b: float
    fa: float
    fb: float
    fm: float | None = None  # f at the midpoint, when already known


def search_line(
    oracle: Oracle,
    offset: torch.Tensor,
    direction: torch.Tensor,
    low: float,
    high: float,
    budget: int,
) -> LineSearch:
    """Every critical point of f on the segment offset + t * direction, t in [low, high]."""
    result = LineSearch()

    def evaluate(ts: list[float]) -> list[float]:
        result.queries += len(ts)
        if not ts:
            return []
        points = offset + torch.tensor(ts, dtype=torch.float64)[:, None] * direction
        return oracle(points).tolist()

    if budget < 2:
        result.unsearched = [(low, high)]
        return result
    f_low, f_high = evaluate([low, high])
    pending = [_Interval(low, high, f_low, f_high)]
    min_width = MIN_RELATIVE_WIDTH * (high - low)
    while pending:
        affordable = _affordable(pending, budget - result.queries)
        if not affordable:
            break
        pending = pending[affordable:] + _search_round(
            pending[:affordable], evaluate, result, min_width
        )
    result.unsearched = [(i.a, i.b) for i in pending]
    return result


def _affordable(intervals: list[_Interval], queries_left: int) -> int:
    """How many of `intervals` one round can search within the budget (upper bound on cost:
    the midpoint if unknown, two quarter points and three probes each)."""
    cost = 0
    for count, interval in enumerate(intervals):
        cost += (1 if interval.fm is None else 0) + 5
        if cost > queries_left:
            return count
    return len(intervals)


def _search_round(
    intervals: list[_Interval],
    evaluate: Callable[[list[float]], list[float]],
    result: LineSearch,
    min_width: float,
) -> list[_Interval]:
    """One breadth-first round: the intervals still to search afterwards."""
    unknown = [i for i in intervals if i.fm is None]
    for interval, value in zip(unknown, evaluate([(i.a + i.b) / 2 for i in unknown]), strict=True):
        interval.fm = value
    kinked = [i for i in intervals if not _is_linear(i)]
    result.unresolved += sum(i.b - i.a < min_width for i in kinked)
    kinked = [i for i in kinked if i.b - i.a >= min_width]
    quarters = evaluate([t for i in kinked for t in ((3 * i.a + i.b) / 4, (i.a + 3 * i.b) / 4)])
    candidates = []
    for index, interval in enumerate(kinked):
        f_q1, f_q3 = quarters[2 * index], quarters[2 * index + 1]
        guess = _two_line_guess(interval, f_q1, f_q3)
        candidates.append((interval, f_q1, f_q3, guess))
    confirmed = _second_difference_test(
        [(i, g) for i, _, _, g in candidates if g is not None], evaluate
    )
    following = []
    for interval, f_q1, f_q3, _ in candidates:
        if id(interval) in confirmed:
            result.points.append(confirmed[id(interval)])
            continue
        middle = (interval.a + interval.b) / 2
        assert interval.fm is not None
        following.append(_Interval(interval.a, middle, interval.fa, interval.fm, f_q1))
        following.append(_Interval(middle, interval.b, interval.fm, interval.fb, f_q3))
    return following


def _is_linear(interval: _Interval) -> bool:
    assert interval.fm is not None
    scale = abs(interval.fa) + abs(interval.fb) + abs(interval.fm) + 1e-3
    return abs(interval.fm - (interval.fa + interval.fb) / 2) <= LINEAR_TOLERANCE * scale


@dataclass
class _Guess:
    t: float
    height: float
    left_slope: float
    right_slope: float


def _two_line_guess(interval: _Interval, f_q1: float, f_q3: float) -> _Guess | None:
    """Where the line through (a, q1) meets the line through (q3, b), if inside (q1, q3)."""
    a, b = interval.a, interval.b
    q1, q3 = (3 * a + b) / 4, (a + 3 * b) / 4
    left = (f_q1 - interval.fa) / (q1 - a)
    right = (interval.fb - f_q3) / (b - q3)
    if left == right:
        return None
    t = a + (interval.fb - interval.fa - right * (b - a)) / (left - right)
    if not q1 < t < q3:
        return None
    return _Guess(t, interval.fa + left * (t - a), left, right)


def _second_difference_test(
    guesses: list[tuple[_Interval, _Guess]], evaluate: Callable[[list[float]], list[float]]
) -> dict[int, CriticalPoint]:
    """Confirm single kinks: f(t*) on both lines, and the slopes just left/right of t*."""
    steps = [probe_step(i.a, i.b, g.t) for i, g in guesses]
    probes: list[float] = []
    for (_, guess), step in zip(guesses, steps, strict=True):
        probes += [guess.t - step, guess.t, guess.t + step]
    values = evaluate(probes)
    confirmed = {}
    for index, (interval, guess) in enumerate(guesses):
        before, at, after = values[3 * index : 3 * index + 3]
        step = steps[index]
        kink = abs(guess.left_slope - guess.right_slope)
        left_ok = abs((at - before) / step - guess.left_slope) < SLOPE_TOLERANCE * kink
        right_ok = abs((after - at) / step - guess.right_slope) < SLOPE_TOLERANCE * kink
        height_ok = abs(at - guess.height) < SLOPE_TOLERANCE * kink * step
        if left_ok and right_ok and height_ok:
            confirmed[id(interval)] = CriticalPoint(guess.t, interval.a, interval.b)
    return confirmed


def forward_difference_jacobian(oracle: Oracle, point: torch.Tensor, h: float) -> torch.Tensor:
    """The oracle's derivative at `point` along each input axis ([dim] for a scalar oracle,
    [dim, k] for k outputs), by forward differences of step h: dim + 1 queries."""
    dim = point.numel()
    rows = torch.cat([point[None, :], point[None, :] + h * torch.eye(dim, dtype=point.dtype)])
    values = oracle(rows)
    return (values[1:] - values[0]) / h


def jacobians_beside(
    oracle: Oracle, offset: torch.Tensor, direction: torch.Tensor, point: CriticalPoint
) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle's derivatives just before and just after the kink at `point`.

    Taken at t* - s and t* + s, s a quarter of the distance from t* to the nearer end of its
    isolating interval (so both lie in the linear pieces next to the kink), with forward steps
    h = 1e-3 * s * |d| / sqrt(dim) along each axis: 2 x (dim + 1) queries.
    """
    s = 0.25 * min(point.t - point.low, point.high - point.t)
    h = 1e-3 * s * float(direction.norm()) / offset.numel() ** 0.5
    below = forward_difference_jacobian(oracle, offset + (point.t - s) * direction, h)
    above = forward_difference_jacobian(oracle, offset + (point.t + s) * direction, h)
    return below, above


def normal_at(
    oracle: Oracle, offset: torch.Tensor, direction: torch.Tensor, point: CriticalPoint
) -> torch.Tensor:
    """The (unnormalised) normal of the hyperplane through `point`: the jump of the gradient
    across the kink (see `jacobians_beside`)."""
    below, above = jacobians_beside(oracle, offset, direction, point)
    return above - below
