"""What an extraction attacker talks to: the :class:`Oracle` (the protected model as a counted,
float64 black box) and the :class:`StreamDetector` monitors a defense may attach to it.

Part of the plugin contract (re-exported by :mod:`paraeval.api` and :mod:`paraeval`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from paraeval.core.devices import on_cpu
from paraeval.errors import UserError

#: A query monitor: sees every batch of queries an extraction attack sends (rows [n, 784]).
Monitor = Callable[[torch.Tensor], None]


Granularity = Literal["logits", "probabilities", "label"]
GRANULARITIES: tuple[Granularity, ...] = ("logits", "probabilities", "label")


def float64_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` in float64 and eval mode (the original is untouched)."""
    return copy.deepcopy(model).double().eval()


class StreamDetector:
    """A stateful monitor of an oracle's query stream that may raise an alarm.

    Attach one to :class:`Protected` ``monitors``; the oracle calls it with every batch of
    queries before answering. Subclasses implement :meth:`observe` (the stream's suspicion
    after each query of the batch, higher is more suspicious, ``-inf`` while there is too
    little to judge) and :meth:`forget` (drop their per-stream state). The alarm fires the first
    time the suspicion reaches ``threshold``; ``alarm_at`` is the number of queries seen then.
    An :meth:`Oracle.fork` starts from a fresh copy, so every attack run (and every Knockoff
    budget) faces a detector that has seen nothing.
    """

    #: The suspicion at which the alarm fires (None: never; set by calibration).
    threshold: float | None = None

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the stream: no queries, no alarm."""
        self.queries = 0
        self.alarm_at: int | None = None
        self.score = float("-inf")
        self.forget()

    def forget(self) -> None:
        """Drop the subclass's per-stream state."""

    def observe(self, rows: torch.Tensor) -> Sequence[float]:
        """The stream's suspicion after each of `rows` (float64 [n, features]) in turn."""
        raise NotImplementedError

    def __call__(self, rows: torch.Tensor) -> None:
        for suspicion in self.observe(rows):
            self.queries += 1
            self.score = max(self.score, float(suspicion))
            fired = self.threshold is not None and suspicion >= self.threshold
            if fired and self.alarm_at is None:
                self.alarm_at = self.queries

    def fresh(self) -> StreamDetector:
        """A copy that has seen nothing (its fitted parts and threshold kept)."""
        copied = copy.deepcopy(self)
        copied.reset()
        return copied


class QueryBudgetExceeded(UserError):
    """An extraction attack asked for more queries than its oracle's budget."""


class Oracle:
    """The protected model as an extraction attacker sees it: float64, counted, bounded.

    Every input row is one query (rows [n, 784] or images [n, 1, 28, 28]); the answer is the
    logits, the softmax probabilities or the label, as `granularity` says. Monitors see every
    batch before it is answered. ``fork()`` gives a fresh counter on the same model.
    ``scoring_model`` is the model itself, for *scoring* what was found (never for attacking).
    Everything runs in float64 (Carlini et al. 2020, Sec. 6: second differences need it).
    """

    #: Rows per forward call; queries are independent, batching only saves Python overhead.
    BATCH = 4096

    def __init__(
        self,
        model: nn.Module,
        *,
        granularity: Granularity = "logits",
        budget: int | None = None,
        monitors: Sequence[Monitor] = (),
        image_shape: tuple[int, ...] = (1, 28, 28),
    ) -> None:
        if granularity not in GRANULARITIES:
            raise UserError(f"oracle granularity {granularity!r}; valid: {GRANULARITIES}")
        self.scoring_model = float64_copy(model)
        self.granularity = granularity
        self.budget = budget
        self.monitors = tuple(monitors)
        self.image_shape = image_shape
        self.queries = 0

    def fork(self) -> Oracle:
        """The same model (a copy: a randomised model restarts from the same state), granularity,
        budget and monitors, with a fresh query counter and detectors that have seen nothing."""
        forked = copy.copy(self)
        forked.scoring_model = copy.deepcopy(self.scoring_model)
        forked.queries = 0
        forked.monitors = tuple(
            m.fresh() if isinstance(m, StreamDetector) else m for m in self.monitors
        )
        return forked

    def answer_on_cpu(self) -> None:
        """Answer on the CPU from now on (the same model; on a GPU run, moved back from the GPU).

        For attacks that send one query at a time: a GPU round trip per query (copy in, a few
        kernels, copy out) costs more than the CPU's forward pass of one row (ART's FEE sends
        1.6 million single-row queries to the `mlp` victim's oracle)."""
        self.scoring_model = on_cpu(self.scoring_model)

    @property
    def detectors(self) -> tuple[StreamDetector, ...]:
        """The monitors that can raise an alarm."""
        return tuple(m for m in self.monitors if isinstance(m, StreamDetector))

    def first_alarm(self) -> int | None:
        """Queries answered when the earliest detector alarm fired (None: no alarm)."""
        fired = [d.alarm_at for d in self.detectors if d.alarm_at is not None]
        return min(fired) if fired else None

    @torch.no_grad()
    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to(torch.float64).flatten(1)  # [n, features], also for n = 0
        if self.budget is not None and self.queries + len(rows) > self.budget:
            raise QueryBudgetExceeded(f"{self.queries + len(rows)} queries > budget {self.budget}")
        self.queries += len(rows)
        for monitor in self.monitors:
            monitor(rows)
        logits = self._forward(rows)
        if self.granularity == "probabilities":
            return logits.softmax(dim=1)
        if self.granularity == "label":
            return logits.argmax(dim=1)
        return logits

    def _forward(self, rows: torch.Tensor) -> torch.Tensor:
        """The model's logits for float64 `rows`, BATCH rows per forward call. One batch is one
        call, with no list or concatenation: ART's FEE sends 1.6 million single-row queries."""
        if len(rows) <= self.BATCH and len(rows):
            logits: torch.Tensor = self.scoring_model(rows.reshape(-1, *self.image_shape))
            return logits
        outputs = [
            self.scoring_model(chunk.reshape(-1, *self.image_shape))
            for chunk in rows.split(self.BATCH)
        ]
        return torch.cat(outputs) if outputs else rows.new_empty(0, 10)


def sample_streams(
    images: torch.Tensor, streams: int, length: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """`streams` query streams of `length` distinct images each (drawn in turn from
    `generator`), as float64 rows: how a detector is calibrated and how it is tested."""
    flat = images.reshape(len(images), -1).double()
    length = min(length, len(flat))
    return [flat[torch.randperm(len(flat), generator=generator)[:length]] for _ in range(streams)]
