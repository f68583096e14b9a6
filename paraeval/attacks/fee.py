"""`fee`: functionally-equivalent extraction (Jagielski et al., USENIX Security 2020) via ART.

ART's FunctionallyEquivalentExtraction recovers a two-layer ReLU network 784-h-10 from logit
queries: it searches one random line for exactly h critical points (it raises otherwise),
recovers the first layer's weights and signs by second differences, and fits the last layer
by least squares. It applies to the `mlp` victim only (the attack declares
``victims = ("mlp",)``; other victims are skipped with a note) and is run against the plain
and the parasite-protected MLP in float64: ART's BlackBoxClassifier rounds predictions to its
float32 default, so the oracle here is a float64 subclass (``Float64BlackBox``).

Results: ``fee_extracted`` (1 if ART returned a model, 0 if it raised; an AssertionError
"number of critical points ... does not equal" is the expected failure when a parasite adds
kinks, recorded with its message in ``fee_failure``, not as a crashed cell), ``fee_fidelity``
(agreement of the extracted model's arg-max with the *victim*'s on the 10,000 test images,
as the issue defines it; extraction.csv also gives the agreement with the protected model the
attacker actually queried), ``fee_queries``. The last layer is fitted on the first 1,000 test
images (the attacker's sample; ART needs some inputs), fidelity measured on all 10,000.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from art.estimators.classification.blackbox import BlackBoxClassifier
from torch import nn

from ..api import ExtractionResult
from ..extraction.oracle import float64_copy
from ..hookspecs import hookimpl
from ..training import predict
from .options import ConfigurableAttack, Option

#: Test images the attacker uses for ART's last-layer fit.
LAST_LAYER_SAMPLE = 1_000


class Float64BlackBox(BlackBoxClassifier):
    """ART's black-box classifier without the float32 rounding of its predictions."""

    def predict(self, x: np.ndarray, batch_size: int = 128, **kwargs: Any) -> np.ndarray:
        return np.asarray(self.predict_fn(np.asarray(x, dtype=np.float64)), dtype=np.float64)


class CountingOracle:
    """The protected model as float64 logits for flat [n, 784] rows; counts queries."""

    def __init__(self, model: nn.Module) -> None:
        self.model = float64_copy(model)
        self.queries = 0

    @torch.no_grad()
    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.queries += len(rows)
        images = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float64))
        return self.model(images.reshape(-1, 1, 28, 28)).numpy()


class FunctionallyEquivalentExtraction(ConfigurableAttack):
    """ART's functionally-equivalent extraction of a 784-h-10 MLP; see the module docstring."""

    name = "fee"
    description = (
        "Functionally-equivalent extraction (Jagielski et al. 2020) with ART, float64, of the "
        "784-64-10 `mlp` victim; extraction success and fidelity on the 10,000 test images."
    )
    tags = ("extraction",)
    kind = "extraction"
    victims = ("mlp",)
    declared: ClassVar[dict[str, Option]] = {
        "delta_0": Option(0.05, "ART's initial step of the line search", float,
                          lambda v: v > 0, "> 0"),
    }  # fmt: skip

    def extract(
        self, victim: nn.Module, protected: nn.Module, images: torch.Tensor, *, seed: int
    ) -> ExtractionResult:
        from art.attacks.extraction import FunctionallyEquivalentExtraction as ArtFEE

        hidden = getattr(victim, "hidden", None)
        if not isinstance(hidden, int):
            raise ValueError("fee extracts a 784-h-10 MLP (the `mlp` victim) only")
        oracle = CountingOracle(protected)
        classifier = Float64BlackBox(oracle, input_shape=(784,), nb_classes=10)
        flat = images.reshape(len(images), -1).to(torch.float64).numpy()
        failure = None
        try:
            extracted = ArtFEE(classifier, num_neurons=hidden).extract(
                flat[:LAST_LAYER_SAMPLE], delta_0=self.options["delta_0"]
            )
        except (AssertionError, ValueError, np.linalg.LinAlgError) as exc:
            extracted, failure = None, f"{type(exc).__name__}: {exc}"
        queries = oracle.queries
        details: dict[str, Any] = {"extracted": int(extracted is not None), "queries": queries}
        if extracted is not None:
            stolen = torch.from_numpy(extracted.predict(flat).argmax(1))
            details["fidelity_to_victim"] = _agreement(stolen, predict(victim, images))
            details["fidelity_to_protected"] = _agreement(stolen, predict(protected, images))
        details["failure"] = failure
        metrics = {
            "fee_extracted": details["extracted"],
            "fee_fidelity": details.get("fidelity_to_victim"),
            "fee_queries": queries,
            "fee_failure": failure,
        }
        return ExtractionResult(metrics, [details])


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float((a == b).double().mean()), 6)


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(FunctionallyEquivalentExtraction())
