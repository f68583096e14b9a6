"""`query-streams`: how well the defense's query-stream detectors (`prada`, `atli-ood`, any
:class:`~paraeval.api.StreamDetector`) tell an extraction attacker from benign users.

Streams of `stream` queries each, `streams` of every kind, are sent through forks of the
oracle (each fork's detectors have seen nothing):

* benign - held-out users: MNIST test images 0-4,999 (never used to calibrate a detector);
* digits, noise - Knockoff-style attackers with out-of-distribution pools (those of
  `knockoff`: scikit-learn's 8x8 digits upscaled; uniform noise);
* evader - the adversary of Atli et al.'s abstract who "evades known defenses" with natural
  in-distribution queries: MNIST test images 5,000-9,999 (`knockoff`'s in-distribution pool).

Metrics per attacker kind: the true-positive rate at 1 % false-positive rate (the ROC point:
the threshold that 1 % of the benign streams' suspicion scores exceed, whatever the detector's
own calibration), the share of streams that raised the detector's own alarm and the median
number of queries until it did. ``fpr_benign`` is the share of benign streams that raised the
alarm: the calibration (on training images) checked on held-out users. A defense without a
detector gives empty metrics and a note, not a failure.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from paraeval.api import ExtractionAttackBase, ExtractionResult, Oracle
from paraeval.attacks.knockoff import SCORING, attacker_pool
from paraeval.core.seeding import derive_seed
from paraeval.hookspecs import hookimpl
from paraeval.options import Options, at_least
from paraeval.plugin.oracle import sample_streams

#: The attackers, against the benign streams.
KINDS = ("digits", "noise", "evader")
#: The ROC operating point (false-positive rate on benign streams).
ROC_FPR = 0.01


@dataclass(frozen=True)
class QueryStreamsOptions(Options):
    stream: int = at_least(500, "queries per stream", 20)
    streams: int = at_least(100, "streams of each kind (benign, digits, noise, evader)", 10)


class QueryStreams(ExtractionAttackBase):
    name = "query-streams"
    description = (
        "Benign, Knockoff-style and evading query streams against the defense's detectors: "
        "TPR at 1 % FPR, alarms, queries to the first alarm."
    )
    tags = ("extraction", "detection", "companion")
    #: Its streams are MNIST test images, 28x28 noise and crops (like the detectors').
    input_shapes = ((1, 28, 28),)
    options_class = QueryStreamsOptions
    options: QueryStreamsOptions
    granularity = "probabilities"
    headline = "tpr_digits"
    metric_docs: ClassVar[dict[str, str]] = {
        "tpr_digits": "true-positive rate (%) at 1 % FPR, digits-pool attacker streams",
        "tpr_noise": "true-positive rate (%) at 1 % FPR, noise-pool attacker streams",
        "tpr_evader": "true-positive rate (%) at 1 % FPR, in-distribution (evading) streams",
        "fpr_benign": "share (%) of held-out benign streams raising the detector's own alarm",
        "alarmed_digits": "share (%) of digits streams raising the detector's own alarm",
        "alarmed_noise": "share (%) of noise streams raising the detector's own alarm",
        "alarmed_evader": "share (%) of evading streams raising the detector's own alarm",
        "queries_to_alarm_digits": "median queries until the alarm, alarmed digits streams",
        "queries_to_alarm_noise": "median queries until the alarm, alarmed noise streams",
        "queries_to_alarm_evader": "median queries until the alarm, alarmed evading streams",
    }

    def extract(
        self, victim: nn.Module, oracle: Oracle, images: torch.Tensor, *, seed: int
    ) -> ExtractionResult:
        if not oracle.detectors:
            return ExtractionResult({}, [{"note": "the defense has no query-stream detector"}])
        generator = torch.Generator().manual_seed(derive_seed("query-streams", seed))
        pools = {
            "benign": images[:SCORING],
            "digits": attacker_pool("digits", images, images[:0].long(), seed)[0],
            "noise": attacker_pool("noise", images, images[:0].long(), seed)[0],
            "evader": images[SCORING:],
        }
        watched = {kind: self._watch(oracle, pool, generator) for kind, pool in pools.items()}
        benign_scores = np.array([score for score, _ in watched["benign"]])
        cut = float(np.quantile(benign_scores, 1 - ROC_FPR, method="higher"))
        metrics: dict[str, float | int | str | None] = {
            "fpr_benign": _share([alarm is not None for _, alarm in watched["benign"]]),
        }
        for kind in KINDS:
            scores = [score for score, _ in watched[kind]]
            alarms = [alarm for _, alarm in watched[kind] if alarm is not None]
            metrics[f"tpr_{kind}"] = _share([score > cut for score in scores])
            metrics[f"alarmed_{kind}"] = _share([alarm is not None for _, alarm in watched[kind]])
            metrics[f"queries_to_alarm_{kind}"] = statistics.median(alarms) if alarms else None
        details = [
            {"kind": kind, "stream": i, "score": _finite(score), "alarm_at": alarm}
            for kind, streams in watched.items()
            for i, (score, alarm) in enumerate(streams)
        ]
        return ExtractionResult(metrics, details)

    def _watch(
        self, oracle: Oracle, pool: torch.Tensor, generator: torch.Generator
    ) -> list[tuple[float, int | None]]:
        """Each stream's highest suspicion (over the oracle's detectors) and first alarm."""
        watched = []
        for stream in sample_streams(pool, self.options.streams, self.options.stream, generator):
            fork = oracle.fork()
            fork(stream)
            watched.append((max(d.score for d in fork.detectors), fork.first_alarm()))
        return watched


def _finite(score: float) -> float | None:
    """JSON-safe: a stream too short for its detector to judge has no score."""
    return round(score, 6) if math.isfinite(score) else None


def _share(flags: list[bool]) -> float:
    return round(100.0 * sum(flags) / len(flags), 4) if flags else float("nan")


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(QueryStreams())
