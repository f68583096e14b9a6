"""`fee`: functionally-equivalent extraction (Jagielski et al., USENIX Security 2020).

Recovers a two-layer ReLU network 784-h-10 from logit queries, float64, against the plain and
the parasite-protected `mlp` victim (the attack declares ``victims = ("mlp",)``; other victims
are skipped with a note). Two backends:

* ``art``: ART's FunctionallyEquivalentExtraction. It searches one random line for exactly h
  critical points and raises otherwise, recovers the first layer by second differences and
  fits the last layer by least squares. ART's BlackBoxClassifier rounds predictions to float32,
  so the oracle is a float64 subclass (``Float64BlackBox``). Its fixed-step line search
  (delta_0 = 0.05, slopes over a tenth of the step) cannot separate two units whose kinks on
  its line are closer than its resolution, and then it raises: whether that happens depends
  on the victim and the line (the committed reproduction's outcome and fidelity for the
  unprotected `mlp` are in reports/results.csv, columns ``fee_extracted`` and
  ``fee_fidelity``). It queries one row at a time (1.6 million queries on the `mlp` victim),
  so on a GPU run its oracle answers on the CPU (:meth:`~paraeval.api.Oracle.answer_on_cpu`):
  a GPU round trip per row costs more.
* ``paraeval`` (default): the same extraction with paraeval's own critical-point search
  (`paraeval.extraction.two_layer`), which locates kinks to ~1e-12 and needs no prior h.

Results: ``fee_extracted`` (1 if a model came back, 0 if the extraction failed: a failure is a
*result*, recorded with its message in ``fee_failure``, not a crashed cell), ``fee_fidelity``
(arg-max agreement of the extracted model with the *victim* on the 10,000 test images;
extraction.csv also gives the agreement with the protected model the attacker actually
queried, and for ``paraeval`` the number of hidden units found), and
``fee_queries``. The last layer is fitted on the first 1,000 test images (the attacker's
sample), fidelity measured on all 10,000.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from paraeval.api import ExtractionAttackBase, ExtractionResult, Oracle
from paraeval.core.metrics import predict
from paraeval.core.seeding import derive_seed
from paraeval.extraction.two_layer import extract_two_layer
from paraeval.hookspecs import hookimpl
from paraeval.options import Options, option

#: Test images the attacker uses for ART's last-layer fit.
LAST_LAYER_SAMPLE = 1_000


def float64_black_box(predict: Callable[[np.ndarray], np.ndarray]) -> Any:
    """ART's black-box (neural-network) classifier without the float32 rounding of its
    predictions; FunctionallyEquivalentExtraction requires the neural-network variant. ART
    is imported here, not with the plugin: its package import takes ~7 s on 2 cores, paid by
    every process (CLI, executor workers) that loads the built-in plugins otherwise."""
    from art.estimators.classification.blackbox import BlackBoxClassifierNeuralNetwork

    class Float64BlackBox(BlackBoxClassifierNeuralNetwork):
        def predict(self, x: np.ndarray, batch_size: int = 128, **kwargs: Any) -> np.ndarray:
            as_float64 = np.asarray(x, dtype=np.float64)
            return np.asarray(self._predict_fn(as_float64), dtype=np.float64)

    return Float64BlackBox(predict, input_shape=(784,), nb_classes=10)


@dataclass(frozen=True)
class FEEOptions(Options):
    backend: str = option("paraeval", "extraction implementation", values=("paraeval", "art"))
    delta_0: float = option(0.05, "ART's initial step of the line search", parse=float,
                            check=lambda v: v > 0, requirement="> 0")  # fmt: skip


class FunctionallyEquivalentExtraction(ExtractionAttackBase):
    """Functionally-equivalent extraction of a 784-h-10 MLP; see the module docstring."""

    name = "fee"
    description = (
        "Functionally-equivalent extraction (Jagielski et al. 2020) of the 784-64-10 `mlp` "
        "victim, float64: backend=paraeval (own critical-point search) or art (ART's "
        "FunctionallyEquivalentExtraction); success and fidelity on the 10,000 test images."
    )
    tags = ("extraction",)
    victims = ("mlp",)
    options_class = FEEOptions
    options: FEEOptions
    headline = "fee_fidelity"
    metric_docs: ClassVar[dict[str, str]] = {
        "fee_extracted": "1 if the extraction returned a model, 0 if it failed",
        "fee_fidelity": "arg-max agreement of the extracted model with the victim on the "
        "10,000 test images",
        "fee_queries": "oracle queries used",
        "fee_failure": "the error when the extraction failed (a result, not a crashed cell)",
    }

    def extract(
        self, victim: nn.Module, oracle: Oracle, images: torch.Tensor, *, seed: int
    ) -> ExtractionResult:
        hidden = getattr(victim, "hidden", None)
        if not isinstance(hidden, int):
            raise ValueError("fee extracts a 784-h-10 MLP (the `mlp` victim) only")
        flat = images.reshape(len(images), -1).to(torch.float64)
        extract = self._art if self.options.backend == "art" else self._paraeval
        stolen, details = extract(oracle, flat, hidden, seed)
        details = {
            "backend": self.options.backend,
            "extracted": int(stolen is not None),
            "queries": oracle.queries,
            **details,
        }
        if stolen is not None:
            details["fidelity_to_victim"] = _agreement(stolen, predict(victim, images))
            answered = predict(oracle.scoring_model, images.double())
            details["fidelity_to_protected"] = _agreement(stolen, answered)
        metrics = {
            "fee_extracted": details["extracted"],
            "fee_fidelity": details.get("fidelity_to_victim"),
            "fee_queries": details["queries"],
            "fee_failure": details.get("failure"),
        }
        return ExtractionResult(metrics, [details])

    def _art(
        self, oracle: Oracle, flat: torch.Tensor, hidden: int, seed: int
    ) -> tuple[torch.Tensor | None, dict[str, Any]]:
        from art.attacks.extraction import FunctionallyEquivalentExtraction as ArtFEE

        oracle.answer_on_cpu()  # ART queries one row at a time: no GPU round trip per query
        classifier = float64_black_box(
            lambda x: oracle(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        )
        try:
            extracted = ArtFEE(classifier, num_neurons=hidden).extract(
                flat[:LAST_LAYER_SAMPLE].numpy(), delta_0=self.options.delta_0
            )
        except (AssertionError, ValueError, np.linalg.LinAlgError) as exc:
            return None, {"failure": f"{type(exc).__name__}: {exc}"}
        return torch.from_numpy(extracted.predict(flat.numpy()).argmax(1)), {}

    def _paraeval(
        self, oracle: Oracle, flat: torch.Tensor, hidden: int, seed: int
    ) -> tuple[torch.Tensor | None, dict[str, Any]]:
        generator = torch.Generator().manual_seed(derive_seed("fee-line", seed))
        try:
            model, units = extract_two_layer(
                oracle, flat.shape[1], generator, flat[:LAST_LAYER_SAMPLE]
            )
        except ValueError as exc:
            return None, {"failure": f"{type(exc).__name__}: {exc}"}
        return model(flat).argmax(1), {"units_found": units, "units_true": hidden}


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float((a == b).double().mean()), 6)


@hookimpl
def register_attacks(register: Callable[[Any], None]) -> None:
    register(FunctionallyEquivalentExtraction())
