from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from paraeval.models.insertion import Placement, insert_parasites
from paraeval.models.lenet import LeNet


def _victim(batch_norm: bool) -> LeNet:
    torch.manual_seed(0)
    victim = LeNet(batch_norm)
    if batch_norm:  # non-trivial running statistics so BN is not an identity
        victim.train()
        with torch.no_grad():
            victim(torch.rand(64, 1, 28, 28))
    return victim.eval()


MODES = [
    Placement(layer, position, neurons)  # type: ignore[arg-type]
    for layer, position, neurons in itertools.product(
        (1, 2), ("before", "after"), ("first", "last", "whole")
    )
    if not (layer == 2 and neurons == "whole")  # conv2 maps are 10x10: allowed, tested below
] + [Placement(2, "after", "whole"), Placement(2, "before", "whole")]


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("placement", MODES, ids=lambda p: p.label)
def test_identity_parasite_leaves_logits_bit_identical(
    batch_norm: bool, placement: Placement
) -> None:
    victim = _victim(batch_norm)
    x = torch.rand(8, 1, 28, 28)
    protected = insert_parasites(victim, [(placement, nn.Identity())])
    assert torch.equal(protected(x), victim(x))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_several_identity_parasites_leave_logits_bit_identical(batch_norm: bool) -> None:
    victim = _victim(batch_norm)
    entries = [(placement, nn.Identity()) for placement in MODES]
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(insert_parasites(victim, entries)(x), victim(x))


class Recorder(nn.Module):
    """Records its input and replaces it with a constant, to see what was read and written."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.full_like(x, self.value)


def _conv2_output(victim: LeNet, x: torch.Tensor, position: str) -> torch.Tensor:
    out = victim.conv2(victim.pool1(victim.act1(victim.bn1(victim.conv1(x)))))
    return out if position == "before" else victim.act2(victim.bn2(out))


@pytest.mark.parametrize("position", ["before", "after"])
def test_first_and_last_n_read_and_write_the_right_neurons(position: str) -> None:
    victim = _victim(True)
    x = torch.rand(3, 1, 28, 28)
    first, last = Recorder(-7.0), Recorder(-9.0)
    protected = insert_parasites(
        victim, [(Placement(2, position, "first"), first), (Placement(2, position, "last"), last)]
    )
    written: list[torch.Tensor] = []
    target = protected.conv2 if position == "before" else protected.act2
    target.register_forward_hook(lambda _m, _i, out: written.append(out))
    protected(x)
    expected = _conv2_output(victim, x, position).flatten(1)
    assert first.seen[0].shape == (3, 1, 16, 16)
    assert torch.equal(first.seen[0].flatten(1), expected[:, :256])
    assert torch.equal(last.seen[0].flatten(1), expected[:, -256:])
    out = written[0].flatten(1)
    assert (out[:, :256] == -7.0).all() and (out[:, -256:] == -9.0).all()
    assert torch.equal(out[:, 256:-256], expected[:, 256:-256])


def test_whole_layer_gives_each_channel_map_as_a_square_input() -> None:
    victim = _victim(True)
    recorder = Recorder(0.0)
    insert_parasites(victim, [(Placement(1, "after", "whole"), recorder)])(torch.rand(2, 1, 28, 28))
    assert recorder.seen[0].shape == (2 * 6, 1, 28, 28)


def test_victim_is_not_modified_by_insertion() -> None:
    victim = _victim(False)
    before = {k: v.clone() for k, v in victim.state_dict().items()}
    insert_parasites(victim, [(Placement(2, "after", "first"), Recorder(0.0))])
    assert isinstance(victim.act2, nn.ReLU)
    assert all(torch.equal(before[k], v) for k, v in victim.state_dict().items())


def test_bad_placements_are_rejected() -> None:
    with pytest.raises(ValueError, match="square"):
        Placement(2, "after", "first", count=250)
    with pytest.raises(ValueError, match="position"):
        Placement(2, "middle", "first")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot select"):
        insert_parasites(
            _victim(False), [(Placement(2, "after", "first", count=2500), nn.Identity())]
        )(torch.rand(1, 1, 28, 28))


def test_pool_after_reads_and_writes_the_pooled_map() -> None:
    victim = _victim(True)
    x = torch.rand(3, 1, 28, 28)
    recorder = Recorder(-5.0)
    placement = Placement(2, "after", "first", pool="after")
    protected = insert_parasites(victim, [(placement, recorder)])
    written: list[torch.Tensor] = []
    protected.pool2.register_forward_hook(lambda _m, _i, out: written.append(out))
    protected(x)
    pooled = victim.pool2(_conv2_output(victim, x, "after")).flatten(1)  # 16 x 5 x 5 = 400
    assert torch.equal(recorder.seen[0].flatten(1), pooled[:, :256])
    out = written[0].flatten(1)
    assert (out[:, :256] == -5.0).all() and torch.equal(out[:, 256:], pooled[:, 256:])


def test_pool_after_whole_layer_gives_pooled_square_maps() -> None:
    recorder = Recorder(0.0)
    placement = Placement(1, "after", "whole", pool="after")
    insert_parasites(_victim(True), [(placement, recorder)])(torch.rand(2, 1, 28, 28))
    assert recorder.seen[0].shape == (2 * 6, 1, 14, 14)


def test_hwc_order_takes_the_first_neurons_channels_last() -> None:
    victim = _victim(True)
    x = torch.rand(3, 1, 28, 28)
    recorder = Recorder(-3.0)
    placement = Placement(2, "after", "first", order="hwc")
    protected = insert_parasites(victim, [(placement, recorder)])
    written: list[torch.Tensor] = []
    protected.act2.register_forward_hook(lambda _m, _i, out: written.append(out))
    protected(x)
    maps = _conv2_output(victim, x, "after")  # [3, 16, 10, 10]
    channels_last = maps.permute(0, 2, 3, 1).flatten(1)  # all 16 channels of pixel (0, 0) first
    assert torch.equal(recorder.seen[0].flatten(1), channels_last[:, :256])
    out = written[0].permute(0, 2, 3, 1).flatten(1)
    assert (out[:, :256] == -3.0).all() and torch.equal(out[:, 256:], channels_last[:, 256:])
    assert (written[0][:, :, 0, 0] == -3.0).all()  # every channel of the first pixel rows


def test_a_parasite_before_bn_cannot_sit_after_the_pool() -> None:
    with pytest.raises(ValueError, match="max-pool"):
        Placement(2, "before", "first", pool="after")
