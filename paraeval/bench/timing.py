"""A bench row: a candidate's and its baseline's timings, taken interleaved after a warm-up
each, and the median ratio with its spread (docs/performance.md's columns)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    name: str
    baseline: str
    candidate_times: list[float]
    baseline_times: list[float] = field(default_factory=list)
    size: str = ""

    def record(self, device: str) -> dict[str, Any]:
        ratios = [c / b for c, b in zip(self.candidate_times, self.baseline_times, strict=False)]
        candidate = statistics.median(self.candidate_times)
        base = statistics.median(self.baseline_times) if self.baseline_times else None
        return {
            "name": self.name,
            "baseline": self.baseline,
            "ratio": round(candidate / base, 3) if base else None,
            "ratio_low": round(min(ratios), 3) if ratios else None,
            "ratio_high": round(max(ratios), 3) if ratios else None,
            "candidate_s": round(candidate, 5),
            "baseline_s": round(base, 5) if base else None,
            "repetitions": len(self.candidate_times),
            "size": self.size,
            "device": device,
        }


def paired(
    candidate: Callable[[], object], baseline: Callable[[], object], repetitions: int
) -> tuple[list[float], list[float]]:
    """Interleaved timings of two callables after one warm-up each."""
    candidate()
    baseline()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repetitions):
        for fn, sink in ((candidate, times[0]), (baseline, times[1])):
            started = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - started)
    return times
