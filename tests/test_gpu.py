"""The GPU path, run on a machine with CUDA (the `device` machine); skipped elsewhere.

    pytest -m gpu tests/test_gpu.py

Not run by CI (no GPU there). What they show: a parasite bank trains on the GPU as on the
CPU; a model on the GPU behind the CPU-in, CPU-out wrapper passes gradients and survives
ART; Knockoff's thief and PRADA's classifier compute on the GPU; Table 1 computed on the GPU
agrees with the CPU within the seeds' 95 % intervals.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from .conftest import run_cli

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_a_bank_trains_on_the_gpu_as_on_the_cpu() -> None:
    from paraeval.training.bank import train_bank
    from paraeval.training.parasites import ParasiteConfig

    def configs(device: str) -> list[ParasiteConfig]:
        return [
            ParasiteConfig(
                False, "small", sigma=0.2, side=16, seed=seed, n_train=2000, epochs=2, device=device
            )
            for seed in range(8)
        ]

    probe = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    for cpu, gpu in zip(train_bank(configs("cpu")), train_bank(configs("cuda")), strict=True):
        assert next(gpu.model.parameters()).device.type == "cpu"  # handed back on the CPU
        with torch.no_grad():
            assert float((cpu.model(probe) - gpu.model(probe)).abs().max()) < 1e-3
        assert gpu.fit["mse_to_target"] == pytest.approx(cpu.fit["mse_to_target"], rel=0.02)


def test_a_model_on_the_gpu_serves_cpu_tensors_and_art(victims) -> None:
    from paraeval.attacks.backends import art_classifier
    from paraeval.core.devices import OnDevice
    from paraeval.run.lookup import load_dataset

    model = victims["vm"][0]
    wrapped = OnDevice(model, "cuda")
    images = load_dataset("mnist").test_images[:64]
    x = images.clone().requires_grad_(True)
    wrapped(x).sum().backward()
    assert x.grad is not None and x.grad.device.type == "cpu"
    classifier = art_classifier(wrapped, images)  # ART moves "its" model to the CPU
    assert next(wrapped.inner.parameters()).device.type == "cuda"
    with torch.no_grad():
        assert torch.allclose(wrapped(images), model(images), atol=1e-4)
    assert classifier.predict(images.numpy()).shape == (64, 10)


def test_knockoffs_thief_trains_on_the_gpu(victims, mnist) -> None:
    """On a GPU run the victim reaches the attack wrapped, and Knockoff's thief trains on the
    GPU (not on one CPU thread); it steals about as much as the CPU-trained thief."""
    from paraeval import registry
    from paraeval.api import Oracle
    from paraeval.core.devices import OnDevice
    from paraeval.datasets.idx import MNIST

    model = victims["vm"][0]
    images = MNIST.as_float(mnist.test_images)
    (entry,) = registry.configured_attacks("knockoff:budgets=1000,epochs=2")
    thieves = []
    steal = type(entry.obj)._steal

    def recording(self, *args, **kwargs):
        thief, queried = steal(self, *args, **kwargs)
        thieves.append(thief)
        return thief, queried

    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(entry.obj), "_steal", recording)
        for device in ("cpu", "cuda"):
            victim = model if device == "cpu" else OnDevice(model, device)
            oracle = Oracle(model, granularity="probabilities")
            results[device] = entry.obj.extract(
                victim, oracle, images, seed=0, labels=mnist.test_labels
            )
    assert next(thieves[-1].parameters()).device.type == "cuda"
    cpu, gpu = (results[d].metrics["fidelity_victim"] for d in ("cpu", "cuda"))
    assert abs(cpu - gpu) < 5.0, (cpu, gpu)  # percentage points: other arithmetic, same thief


def test_prada_classifies_queries_on_the_gpu(victims, mnist) -> None:
    from paraeval import registry
    from paraeval.api import RunContext, float64_copy
    from paraeval.core.metrics import predict
    from paraeval.datasets.idx import MNIST

    (entry,) = registry.configured_defenses("prada:streams=10,stream=120")
    context = RunContext(MNIST.as_float(mnist.train_images), device="cuda")
    (detector,) = entry.obj.bind(context).protect(victims["vm"][0], seed=0).monitors
    assert next(detector.model.parameters()).device.type == "cuda"
    images = MNIST.as_float(mnist.test_images[:500]).double()
    on_gpu = predict(detector.model, images)
    on_cpu = predict(float64_copy(victims["vm"][0]), images)
    assert (on_gpu == on_cpu).float().mean() > 0.99  # float64 on both: near-ties at most


def test_table1_on_the_gpu_agrees_with_the_cpu(victims, tmp_path) -> None:
    """Same victims on both sides: the CPU-trained ones are copied under their GPU keys into
    the GPU run's own model cache. So the intervals compare what the GPU computes (parasites
    trained in banks, the cells), not two victims trained apart: the first device run
    (reports/gpu-h200/) gave each device its own victims, and the one interval it found apart
    could come from either the victims or the GPU."""
    from paraeval.run.lookup import victim_config
    from paraeval.training.victims import victim_path

    gpu_cache = tmp_path / "gpu-cache"
    for name in ("vm", "vm-batch"):
        on_cpu = victim_path(victim_config(name))
        on_gpu = victim_path(victim_config(name, device="cuda"))
        target = gpu_cache / "victims" / on_gpu.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(on_cpu, target)
    summaries = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        env = {"PARAEVAL_CACHE_DIR": str(gpu_cache)} if device == "cuda" else None
        done = run_cli(
            "run",
            "--victims",
            "vm,vm-batch",
            "--defenses",
            "table1",
            "--attacks",
            "fgsm",
            "--seeds",
            "5",
            "--device",
            device,
            "--executor",
            "local",
            "--out",
            str(out),
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "training victim" not in done.stderr  # the copied victims, not new ones
        summaries[device] = pd.read_csv(out / "summary.csv").set_index(["victim", "defense"])
    cpu, gpu = summaries["cpu"], summaries["cuda"]
    assert len(cpu) == len(gpu) == 12
    assert (cpu["victim_accuracy"] == gpu["victim_accuracy"]).all()
    for metric in ("accuracy", "m_adv"):
        overlap = (gpu[f"{metric}_ci_low"] <= cpu[f"{metric}_ci_high"]) & (
            cpu[f"{metric}_ci_low"] <= gpu[f"{metric}_ci_high"]
        )
        assert overlap.all(), pd.concat([cpu[f"{metric}_mean"], gpu[f"{metric}_mean"]], axis=1)
