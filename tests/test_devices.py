"""--device: models compute on the device behind a CPU-in, CPU-out wrapper; GPU work is
keyed apart from CPU work, and every CPU key stays what it was. Checked here on the CPU (the
GPU side is tests/test_gpu.py, skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paraeval.core.devices import OnDevice, on_device, resolve_device
from paraeval.errors import UserError
from paraeval.training.parasites import ParasiteConfig
from paraeval.training.victims import VictimConfig

from .conftest import run_cli


def test_the_wrapper_computes_like_the_model_and_passes_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    wrapped = OnDevice(model, "cpu")
    x = torch.rand(2, 1, 2, 2, requires_grad=True)
    assert torch.equal(wrapped(x), model(x))
    wrapped(x).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert wrapped.double()(x.double()).dtype == torch.float64  # a dtype change reaches it
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is its own
    with torch.no_grad():
        next(wrapped.parameters()).add_(1.0)
    assert not torch.equal(next(wrapped.parameters()).float(), next(model.parameters()))


def test_the_wrapper_shows_the_inner_models_attributes() -> None:
    from paraeval.models.mlp import MLP

    wrapped = OnDevice(MLP(hidden=16), "cpu")
    assert wrapped.hidden == 16  # fee reads it
    from paraeval.extraction.truth import first_layer_of

    layer = first_layer_of(wrapped)  # extraction's ground truth: a CPU copy of the inner layer
    assert torch.equal(layer[1].weight, wrapped.inner.fc1.weight)
    assert layer[1].weight.data_ptr() != wrapped.inner.fc1.weight.data_ptr()
    with pytest.raises(AttributeError):
        _ = wrapped.no_such_attribute


def test_a_one_query_at_a_time_attack_has_its_oracle_answer_on_the_cpu(monkeypatch) -> None:
    """ART's FEE sends single-row queries: on a GPU run its oracle moves back to the CPU (one
    GPU round trip per row would cost more than the row). The oracle keeps its answers and its
    count; FEE's art backend asks for it before ART sends anything."""
    import art.attacks.extraction

    from paraeval import registry
    from paraeval.api import Oracle
    from paraeval.models.mlp import MLP

    torch.manual_seed(0)
    model = MLP(hidden=16)
    oracle = Oracle(OnDevice(model, "cpu"), granularity="logits")  # what a GPU run builds
    rows = torch.rand(3, 784, dtype=torch.float64)
    before = oracle(rows)
    oracle.answer_on_cpu()
    assert not isinstance(oracle.scoring_model, OnDevice) and oracle.queries == 3
    assert torch.equal(oracle(rows), before) and oracle.queries == 6

    seen = []

    class RecordingFEE:  # stands in for ART's attack: records whom it would query
        def __init__(self, classifier, num_neurons) -> None:
            seen.append(type(fee_oracle.scoring_model))

        def extract(self, *args, **kwargs):
            raise ValueError("stopped before any query")

    monkeypatch.setattr(art.attacks.extraction, "FunctionallyEquivalentExtraction", RecordingFEE)
    fee_oracle = Oracle(OnDevice(model, "cpu"), granularity="logits")
    (entry,) = registry.configured_attacks("fee:backend=art")
    result = entry.obj.extract(OnDevice(model, "cpu"), fee_oracle, rows.float(), seed=0)
    assert seen and seen[0] is not OnDevice
    assert result.metrics["fee_extracted"] == 0 and "stopped" in result.metrics["fee_failure"]


def test_on_the_cpu_nothing_is_wrapped() -> None:
    model = nn.Linear(2, 2)
    assert on_device(model, "cpu") is model


def test_the_device_is_resolved_or_refused() -> None:
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="valid: auto, cpu, cuda"):
        resolve_device("gpu")


def test_gpu_artifacts_are_keyed_apart_and_cpu_keys_do_not_move() -> None:
    parasite = ParasiteConfig(True, "small")
    assert "device" not in parasite.as_dict()  # CPU keys: as stored before devices
    assert ParasiteConfig(True, "small", device="cuda").as_dict() != parasite.as_dict()
    victim = VictimConfig("vm")
    assert "device" not in victim.key_fields()
    assert VictimConfig("vm", device="cuda").key_fields()["device"] == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU machine")
def test_asking_for_cuda_without_it_is_one_line_and_exit_code_2() -> None:
    result = run_cli("run", "--device", "cuda", "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --device cuda: this machine has no CUDA device (torch.cuda.is_available() "
        "is False); use --device cpu or auto"
    ]


def test_every_parasite_defense_declares_its_parasites_on_the_runs_device(victims, mnist):
    """What a defense declares for pretraining must be what `protect` loads: on a GPU run,
    GPU parasites (a declaration without the run's device would train them all twice)."""
    from paraeval import registry
    from paraeval.api import RunContext
    from paraeval.datasets.idx import MNIST
    from paraeval.models.mlp import MLP

    context = RunContext(MNIST.as_float(mnist.train_images[:10]), device="cuda")
    models = {"vm": victims["vm"][0], "vm-batch": victims["vm-batch"][0], "mlp": MLP()}
    checked = 0
    for entry in registry.defenses().entries.values():
        victim = entry.obj.victims[0] if entry.obj.victims else "vm"
        configs = entry.obj.bind(context).parasite_configs(models[victim], seed=0)
        assert all(config.device == "cuda" for config in configs), entry.name
        checked += bool(configs)
    assert checked >= 38  # 36 paper rows, dynamic-parasite, the MLP parasites, parasite


def test_prada_predicts_on_the_runs_device(victims, mnist, monkeypatch) -> None:
    """PRADA classifies every query with its own float64 copy of the model: on a GPU run that
    copy computes on the GPU (recorded here, without CUDA, where it would be moved)."""
    import paraeval.defenses.detectors as detectors
    from paraeval import registry
    from paraeval.api import RunContext
    from paraeval.datasets.idx import MNIST

    moved = []
    monkeypatch.setattr(detectors, "on_device", lambda model, device: moved.append(device) or model)
    (entry,) = registry.configured_defenses("prada:streams=10,stream=120")
    for device in ("cpu", "cuda"):
        context = RunContext(MNIST.as_float(mnist.train_images), device=device)
        protected = entry.obj.bind(context).protect(victims["vm"][0], seed=0)
        (detector,) = protected.monitors
        assert next(detector.model.parameters()).dtype == torch.float64
    assert moved == ["cpu", "cuda"]
