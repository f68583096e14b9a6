"""The readings that arrange parasites differently: one per channel map, inputs rescaled into
[0, 1], BNs without a learned scale and shift, the Table 2 parasite after the BN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paraeval import registry
from paraeval.api import RunContext
from paraeval.defenses.parasite_reading import ParasiteReading
from paraeval.defenses.parasites import candidate_configs, neuron_range, read_spec
from paraeval.models.insertion import Placement, apply_to_neurons, insert_parasites
from paraeval.models.lenet import LeNet
from paraeval.models.parasite import ParasiticCNN
from paraeval.models.wrappers import PerChannel, Rescaled
from paraeval.study.paper import ROWS_BY_NAME
from paraeval.training.parasites import ParasiteConfig

TABLE2_ROW = ROWS_BY_NAME["t2-bn-small-sigma0.2"]


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _victim() -> LeNet:
    torch.manual_seed(0)
    victim = LeNet(batch_norm=True).train()
    with torch.no_grad():
        victim(torch.rand(64, 1, 28, 28))  # non-trivial BN statistics
    return victim.eval()


def test_per_channel_parasites_each_rewrite_their_own_channel() -> None:
    activations = torch.rand(5, 3, 4, 4)
    arranged = PerChannel([_Scale(1.0), _Scale(2.0), _Scale(3.0)])
    out = apply_to_neurons(arranged, activations, "whole", 0)
    expected = activations * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    assert torch.allclose(out, expected)


def test_rescaled_parasite_sees_unit_inputs_and_its_noise_scales_with_the_range() -> None:
    x = torch.linspace(-2.0, 4.6, 12).view(1, 1, 3, 4)
    seen: list[torch.Tensor] = []

    class Shift(nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            seen.append(inputs)
            return inputs + 0.1

    out = Rescaled(Shift(), -2.0, 4.6)(x)
    assert float(seen[0].min()) == pytest.approx(0.0) and float(seen[0].max()) == pytest.approx(1)
    assert torch.allclose(out, x + 0.1 * 6.6)
    assert torch.allclose(Rescaled(nn.Identity(), -2.0, 4.6)(x), x)


def test_neuron_range_is_the_range_of_what_the_parasite_reads() -> None:
    victim = _victim()
    images = torch.rand(40, 1, 28, 28)
    context = RunContext(images)
    placement = Placement(1, "after", "whole")
    assert neuron_range(victim, [], placement, ParasiteReading(), context) is None
    low, high = neuron_range(victim, [], placement, ParasiteReading(rescale="unit"), context)
    with torch.no_grad():
        acts = victim.act1(victim.bn1(victim.conv1(images)))
    assert low == pytest.approx(float(acts.min())) and high == pytest.approx(float(acts.max()))
    after_bn = read_spec(TABLE2_ROW.parasites[0], ParasiteReading(whole_site="after-bn"))
    low_bn, _ = neuron_range(
        victim, [], after_bn.placement, ParasiteReading(rescale="unit"), context
    )
    assert low_bn < 0 == low  # before the ReLU the BN output goes negative


def test_whole_site_after_bn_reads_the_bn_output_before_the_relu() -> None:
    victim = _victim()
    spec = read_spec(TABLE2_ROW.parasites[0], ParasiteReading(whole_site="after-bn"))
    assert spec.placement.site(victim) == "bn1"
    assert read_spec(TABLE2_ROW.parasites[0], ParasiteReading()).placement.site(victim) == "act1"
    x = torch.rand(4, 1, 28, 28)
    negate = insert_parasites(victim, [(spec.placement, _Scale(-1.0))])
    with torch.no_grad():  # negating before the ReLU zeroes what was positive: not the victim
        assert not torch.allclose(negate(x), victim(x))
        expected = victim.act1(-victim.bn1(victim.conv1(x)))
        assert torch.allclose(negate.act1(negate.bn1(negate.conv1(x))), expected)


def test_per_channel_and_16x16_readings_change_what_is_trained() -> None:
    victim = _victim()
    spec = TABLE2_ROW.parasites[0]

    def configs(**options: object) -> list[list[ParasiteConfig]]:
        reading = ParasiteReading(select=1, **options)  # type: ignore[arg-type]
        return candidate_configs(read_spec(spec, reading), victim, 0, "table2", 0, reading, None)

    (shared,) = configs()
    (per_channel,) = configs(whole_parasites="per-channel")
    (small,) = configs(whole_side="16")
    assert len(shared) == 1 and shared[0].side == 28
    assert len(per_channel) == 6 and per_channel[0] == shared[0]  # channel 0: the shared one
    assert len({c.seed for c in per_channel}) == 6
    assert small[0].side == 16
    (plain,) = configs(bn_scale_shift="none")
    assert plain[0].bn_affine is False and "bn_affine" in plain[0].as_dict()
    assert "bn_affine" not in shared[0].as_dict()  # the default keeps cached keys


def test_bn_without_scale_and_shift_only_normalises() -> None:
    parasite = ParasiticCNN(batch_norm=True, bias="none", bias_scope="all", bn_affine=False)
    assert all(bn.weight is None and bn.bias is None for bn in parasite.batch_norms())
    assert parasite.bias_norm() == 0.0 and parasite.bn_shift_norm() == 0.0
    names = {name for name, _ in parasite.named_parameters()}
    assert names == {f"layers.{i}.weight" for i in (0, 3, 6, 9)}  # convolutions only


def test_a_per_channel_table2_row_inserts_one_parasite_per_map(victims) -> None:
    (row,) = registry.configured_defenses(
        "t2-nobn-none-sigma0.1:epochs=1,select=1,whole_parasites=per-channel,rescale=unit"
    )
    protected = row.obj.protect(victims["vm-batch"][0], seed=0)
    arranged = [m for m in protected.model.modules() if isinstance(m, Rescaled)]
    assert len(arranged) == 1 and isinstance(arranged[0].parasite, PerChannel)
    assert len(protected.parasite_fits) == 6
    assert protected.parasite_fits[5]["parasite"].endswith("channel 5")
