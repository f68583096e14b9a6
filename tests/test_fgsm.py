from __future__ import annotations

import pytest
import torch

from paraeval.attacks.fgsm import FGSMSweep
from paraeval.errors import UserError
from paraeval.models.lenet import LeNet


def test_art_and_torchattacks_backends_agree_exactly(mnist, victims) -> None:
    model = victims["vm"][0]
    images = mnist.as_float(mnist.test_images[:50])
    labels = mnist.test_labels[:50]
    art = FGSMSweep(backend="art").generate(model, images, labels, seed=0)
    ta = FGSMSweep(backend="torchattacks").generate(model, images, labels, seed=0)
    assert torch.equal(art.success, ta.success)
    assert torch.equal(art.epsilon.nan_to_num(-1), ta.epsilon.nan_to_num(-1))
    assert torch.allclose(art.adversarial, ta.adversarial, atol=1e-6)


def test_sweep_stops_at_the_first_adversarial_epsilon(mnist, victims) -> None:
    model = victims["vm"][0]
    images = mnist.as_float(mnist.test_images[:40])
    labels = mnist.test_labels[:40]
    batch = FGSMSweep().generate(model, images, labels, seed=0)
    assert batch.success.float().mean() > 0.9
    images.requires_grad_(True)
    torch.nn.functional.cross_entropy(model(images), labels, reduction="sum").backward()
    direction = images.grad.sign()
    images = images.detach()
    checked = 0
    for i in torch.nonzero(batch.success).flatten().tolist():
        eps = float(batch.epsilon[i])
        assert float((batch.adversarial[i] - images[i]).abs().max()) <= eps + 1e-6
        with torch.no_grad():
            assert model(batch.adversarial[i : i + 1]).argmax() != labels[i]
            if eps > 0.05 + 1e-9:  # one step less was not yet adversarial
                previous = (images[i] + (eps - 0.05) * direction[i]).clamp(0, 1)
                assert model(previous.unsqueeze(0)).argmax() == labels[i]
                checked += 1
    assert checked > 0


def test_examples_stay_in_the_unit_box() -> None:
    torch.manual_seed(0)
    model = LeNet().eval()
    images = torch.rand(10, 1, 28, 28)
    batch = FGSMSweep(eps_step=0.5).generate(
        model, images, torch.zeros(10, dtype=torch.long), seed=0
    )
    assert batch.adversarial.min() >= 0 and batch.adversarial.max() <= 1


def test_invalid_options_fail_before_any_work() -> None:
    with pytest.raises(UserError, match="max_eps must be >= eps_step"):
        FGSMSweep(eps_step=0.5, max_eps=0.1)
    with pytest.raises(UserError, match=r"in \(0, 1\]"):
        FGSMSweep(eps_step=1.5)
    assert "eps_step=0.05" in repr(FGSMSweep())
