"""`knockoff`: Knockoff Nets (Orekondy et al. 2019) through ART's KnockoffNets, against the
oracle - the functionality-stealing attack of the companion paper of Atli et al.
(../shared/seeds/001_*, abstract only: "Knockoff Nets steals a model through its
predictions").

The attacker holds a pool of unlabelled images, queries the protected model on some of them
(the query budget), and trains a thief network on the answers. Pools:

* ``in-distribution`` - the held-out half of the MNIST test set (images 5,000-9,999); the
  first half scores the thief;
* ``digits`` - scikit-learn's bundled 8x8 digits (1,797 images, offline), upscaled to 28x28
  (bilinear) and scaled to [0, 1]: natural, related, but not MNIST;
* ``noise`` - uniform noise images: out of distribution.

For every budget (ascending, each from a fresh thief and a fresh query counter): thief test
accuracy (true labels of the scoring half), fidelity (agreement with the protected model and
with the victim on the scoring half), queries, the mean L1 distance between the probabilities
the oracle returned and the victim's on the queried images (what the defense changed), and
the protected model's inference time relative to the victim's on the same batch. The
headline is the fidelity to the victim at the largest budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from paraeval.api import ExtractionAttackBase, ExtractionResult, Oracle, float64_copy
from paraeval.core.devices import device_of, on_device
from paraeval.core.metrics import predict
from paraeval.core.seeding import derive_seed, seeded, single_threaded
from paraeval.errors import UserError
from paraeval.hookspecs import hookimpl
from paraeval.models.victims import VICTIM_ARCHITECTURES
from paraeval.options import Options, at_least, option

#: The test images scoring the thief; the rest form the in-distribution pool.
SCORING = 5_000


def _budgets(text: str) -> tuple[int, ...]:
    values = tuple(sorted({int(part) for part in text.replace(";", " ").replace("+", " ").split()}))
    if not values:
        raise ValueError(text)
    return values


@dataclass(frozen=True)
class KnockoffOptions(Options):
    budgets: tuple[int, ...] = option(
        (100, 1000, 5000), "query budgets, '+'-separated (each from a fresh thief)",
        parse=_budgets, check=lambda v: all(b >= 10 for b in v), requirement="integers >= 10",
    )  # fmt: skip
    pool: str = option("in-distribution", "the attacker's unlabelled images",
                       values=("in-distribution", "digits", "noise"))  # fmt: skip
    strategy: str = option("random", "ART's sampling strategy", values=("random", "adaptive"))
    granularity: str = option("probabilities", "what the oracle answers",
                              values=("probabilities", "label"))  # fmt: skip
    thief: str = option("vm", "the thief's architecture", values=tuple(VICTIM_ARCHITECTURES))
    epochs: int = at_least(10, "training epochs of the thief per budget (ART's nb_epochs)", 1)


class Knockoff(ExtractionAttackBase):
    name = "knockoff"
    description = (
        "Knockoff Nets (ART): train a thief on the oracle's answers to an attacker pool; "
        "fidelity and accuracy per query budget."
    )
    tags = ("extraction", "functionality", "companion")
    #: The thief is one of the MNIST architectures and the pools are 28x28 grey images.
    input_shapes = ((1, 28, 28),)
    options_class = KnockoffOptions
    options: KnockoffOptions
    needs_labels = True
    granularity = "probabilities"  # the default of the granularity option
    headline = "fidelity_victim"
    metric_docs: ClassVar[dict[str, str]] = {
        "fidelity_victim": "agreement (%) of the thief with the victim on the scoring half, "
        "largest budget",
        "fidelity_protected": "agreement (%) of the thief with the protected model, largest budget",
        "thief_accuracy": "the thief's test accuracy (%) on the scoring half, largest budget",
        "queries": "queries spent at the largest budget",
        "l1_distortion": "mean L1 distance between the returned and the victim's probabilities",
        "latency_ratio": "protected model's inference time / the victim's, batch 256",
        "queries_to_alarm": "queries answered when the defense's detector first raised its "
        "alarm, largest budget (empty: no detector or no alarm)",
        "fidelity_at_alarm": "fidelity to the victim of a thief trained on the queries answered "
        "before the alarm (at the budget when none fired), largest budget",
    }

    #: Bumped when a change of this code changes its numbers (2: the thief trains on one
    #: thread); part of the cell key, so stored cells of an older version are recomputed.
    VERSION: ClassVar[int] = 2

    def key_options(self) -> dict[str, Any]:
        return {**super().key_options(), "version": self.VERSION}

    def configure(self, **given: str) -> Knockoff:
        configured = super().configure(**given)
        if configured.options.strategy == "adaptive" and configured.options.pool == "noise":
            raise UserError("knockoff: strategy=adaptive needs a labelled pool (not noise)")
        configured.granularity = configured.options.granularity  # type: ignore[assignment]
        return configured

    def extract(
        self,
        victim: nn.Module,
        oracle: Oracle,
        images: torch.Tensor,
        *,
        seed: int,
        labels: torch.Tensor | None = None,
    ) -> ExtractionResult:
        if labels is None:
            raise UserError("knockoff scores the thief against true labels; none were given")
        scoring, scoring_labels = images[:SCORING], labels[:SCORING]
        pool, pool_labels = attacker_pool(self.options.pool, images, labels, seed)
        victim_pred = _argmax(victim, scoring)
        protected_pred = _argmax(oracle.scoring_model, scoring)
        details = []
        device = device_of(victim)  # the thief trains where the run's models compute
        for budget in self.options.budgets:
            counted = oracle.fork()
            thief, queried = self._steal(counted, pool, pool_labels, budget, seed, device)
            thief_pred = _argmax(thief, scoring)
            detail = {
                "budget": budget,
                "queries": counted.queries,
                "thief_accuracy": _percent(thief_pred == scoring_labels),
                "fidelity_victim": _percent(thief_pred == victim_pred),
                "fidelity_protected": _percent(thief_pred == protected_pred),
                "l1_distortion": _l1(oracle.scoring_model, victim, queried),
            }
            if counted.detectors:  # what the thief had stolen when the alarm fired
                alarm = counted.first_alarm()
                detail["queries_to_alarm"] = alarm
                detail["fidelity_at_alarm"] = detail["fidelity_victim"]
                if alarm is not None and alarm < counted.queries:
                    caught, _ = self._steal(oracle.fork(), pool, pool_labels, alarm, seed, device)
                    at_alarm = _argmax(caught, scoring)
                    detail["fidelity_at_alarm"] = _percent(at_alarm == victim_pred)
            details.append(detail)
        largest = details[-1]
        kept = (
            "fidelity_victim",
            "fidelity_protected",
            "thief_accuracy",
            "queries",
            "l1_distortion",
            "queries_to_alarm",
            "fidelity_at_alarm",
        )
        metrics: dict[str, float | int | str | None] = {k: largest.get(k) for k in kept}
        metrics["latency_ratio"] = _latency_ratio(oracle.scoring_model, victim, scoring[:256])
        return ExtractionResult(metrics, details)

    def _steal(
        self,
        oracle: Oracle,
        pool: torch.Tensor,
        pool_labels: torch.Tensor | None,
        budget: int,
        seed: int,
        device: str = "cpu",
    ) -> tuple[nn.Module, torch.Tensor]:
        """ART's KnockoffNets with `budget` queries; the thief and the images it queried.

        The thief trains on `device` behind the CPU-in, CPU-out wrapper (ART sees a CPU
        model): on a GPU run the thief of every Knockoff cell would otherwise train on one CPU
        thread (the stored CPU cells took ~40 s each on 2 cores; `paraeval reproduce` has 28).
        A GPU run's cells are keyed apart from the CPU's (paraeval.core.devices), so CPU results
        are unchanged."""
        from art.attacks.extraction import KnockoffNets
        from art.estimators.classification import BlackBoxClassifier, PyTorchClassifier

        queried: list[torch.Tensor] = []

        def answer(x: np.ndarray) -> np.ndarray:
            batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            queried.append(batch)
            out = oracle(batch)
            if self.options.granularity == "label":
                out = nn.functional.one_hot(out, 10).double()
            return out.numpy()

        black_box = BlackBoxClassifier(
            answer, input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0)
        )
        # One thread: the thief's weights then depend on the seed and the budget only, not on
        # the core count (as for the victims,
        # paraeval.training.victims), so every defense's thief
        # sees the same queries and starts, trains and ends the same way given the same answers.
        with seeded(derive_seed("knockoff-thief", seed, budget)), single_threaded():
            thief = on_device(VICTIM_ARCHITECTURES[self.options.thief](), device)
            estimator = PyTorchClassifier(
                thief,
                loss=nn.CrossEntropyLoss(),
                input_shape=(1, 28, 28),
                nb_classes=10,
                optimizer=torch.optim.Adam(thief.parameters(), lr=1e-3),
                clip_values=(0.0, 1.0),
                device_type="cpu",
            )
            attack = KnockoffNets(
                black_box,
                batch_size_fit=64,
                batch_size_query=256,
                nb_epochs=self.options.epochs,
                nb_stolen=min(budget, len(pool)),
                sampling_strategy=self.options.strategy,
                use_probability=self.options.granularity == "probabilities",
            )
            y = None
            if self.options.strategy == "adaptive" and pool_labels is not None:
                y = nn.functional.one_hot(pool_labels, 10).numpy()
            attack.extract(pool.numpy(), y=y, thieved_classifier=estimator)
        sent = torch.cat(queried) if queried else pool[:0]
        return thief.eval(), sent


def attacker_pool(
    name: str, images: torch.Tensor, labels: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attacker's images (and their labels where they have some)."""
    if name == "in-distribution":
        return images[SCORING:], labels[SCORING:]
    if name == "digits":
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]

        digits = load_digits()
        small = torch.from_numpy(digits.images).float().div(16.0).unsqueeze(1)
        upscaled = nn.functional.interpolate(small, size=(28, 28), mode="bilinear")
        return upscaled.clamp(0, 1), torch.from_numpy(digits.target).long()
    generator = torch.Generator().manual_seed(derive_seed("knockoff-noise", seed))
    return torch.rand(len(images) - SCORING, 1, 28, 28, generator=generator), None


def _argmax(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Predictions in the model's own precision (a float64 oracle or a float32 thief)."""
    return predict(model, images.to(next(model.parameters()).dtype))


def _percent(mask: torch.Tensor) -> float:
    return round(100.0 * float(mask.double().mean()), 4)


def _l1(protected: nn.Module, victim: nn.Module, queried: torch.Tensor) -> float | None:
    if not len(queried):
        return None
    with torch.no_grad():
        returned = protected(queried.double()).softmax(1)
        clean = victim(queried).double().softmax(1)
    return round(float((returned - clean).abs().sum(1).mean()), 6)


def _latency_ratio(protected: nn.Module, victim: nn.Module, batch: torch.Tensor) -> float:
    """Median of 5 timed forward passes each, float64 protected vs float64 victim copy."""
    reference = float64_copy(victim)

    def timed(model: nn.Module) -> float:
        times = []
        with torch.no_grad():
            for _ in range(5):
                started = time.perf_counter()
                model(batch.double())
                times.append(time.perf_counter() - started)
        return sorted(times)[2]

    return round(timed(protected) / timed(reference), 3)


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(Knockoff())
