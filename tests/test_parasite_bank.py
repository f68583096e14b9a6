"""The parasite bank: K parasites trained as one grouped-convolution network end where
each would have ended trained alone (up to the order of float sums), checked on the CPU."""

from __future__ import annotations

import pytest
import torch

from paraeval.training.bank import Bank, banks, train_bank
from paraeval.training.parasites import ParasiteConfig, train_parasite


def _configs(**recipe: object) -> list[ParasiteConfig]:
    small = {"side": 8, "n_train": 400, "n_heldout": 100, "epochs": 2, **recipe}
    return [
        ParasiteConfig(seed=seed, sigma=sigma, **small)  # type: ignore[arg-type]
        for seed, sigma in ((0, 0.2), (1, 0.1), (7, 0.3))
    ]


def test_a_bank_trains_each_parasite_as_it_would_train_alone() -> None:
    configs = _configs(batch_norm=False, bias="small")
    together = train_bank(configs)
    probe = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    for config, banked in zip(configs, together, strict=True):
        alone = train_parasite(config)
        assert torch.equal(banked.noise, alone.noise)
        with torch.no_grad():
            gap = (banked.model(probe) - alone.model(probe)).abs().max()
        assert float(gap) < 1e-4, config
        assert banked.fit["mse_to_target"] == pytest.approx(alone.fit["mse_to_target"], rel=1e-4)
        assert banked.fit["bias_norm"] < 0.05


@pytest.mark.parametrize("scope", ["conv", "all"])
def test_with_batch_norm_only_the_biases_feeding_a_batch_norm_differ(scope) -> None:
    """A convolution bias in front of a BatchNorm has a gradient of exactly 0 in exact
    arithmetic (BN removes it); its float residue differs between the grouped and the single
    convolution, and Adam turns any residue into a step of ~lr (and, with bias_scope=all, the
    projection of beta couples the BN shifts to them). Every parameter outside beta agrees
    after a step; after training, the fits agree to a few percent."""
    one_step = _configs(batch_norm=True, bias="small", bias_scope=scope, n_train=100, epochs=1)
    for config, banked in zip(one_step, train_bank(one_step), strict=True):
        alone = train_parasite(config).model.state_dict()
        for name, value in banked.model.state_dict().items():
            is_conv = name.split(".")[1] in ("0", "3", "6", "9")
            if name.endswith("bias") and (is_conv or scope == "all"):
                continue  # beta: the convolutions' biases (each feeding a BN), the BN shifts
            assert torch.allclose(value.float(), alone[name].float(), atol=1e-5), name
    trained = _configs(batch_norm=True, bias="small", bias_scope=scope)
    for config, banked in zip(trained, train_bank(trained), strict=True):
        alone = train_parasite(config)
        assert banked.fit["mse_to_target"] == pytest.approx(alone.fit["mse_to_target"], rel=0.05)
        assert banked.fit["bias_norm"] < 0.05


def test_the_bank_is_the_parasites_side_by_side() -> None:
    """Before training, channel k of the bank computes exactly parasite k."""
    from paraeval.models.parasite import ParasiticCNN

    torch.manual_seed(0)
    parasites = [ParasiticCNN(True, "small").eval() for _ in range(3)]
    bank = Bank(parasites).eval()
    x = torch.rand(5, 3, 8, 8)
    with torch.no_grad():
        together = bank(x)
        for k, parasite in enumerate(parasites):
            assert torch.allclose(together[:, k : k + 1], parasite(x[:, k : k + 1]), atol=1e-6)


def test_parasites_of_different_recipes_go_to_different_banks() -> None:
    configs = [*_configs(batch_norm=False, bias="none"), *_configs(batch_norm=True, bias="none")]
    assert [len(bank) for bank in banks(configs)] == [3, 3]
    with pytest.raises(ValueError, match="one shape and recipe"):
        train_bank(configs)
