"""Insert parasites into a victim: which layer, where relative to BN and activation, which neurons.

Vocabulary (paper Sec. 4 and 6.3, Tables 1-3):

* ``layer``: the victim's convolution after which the parasite acts (1 or 2).
* ``position``:
  - ``before``: on the convolution's raw output, i.e. before BN and activation
    (conv -> parasite -> BN -> ReLU);
  - ``after``: after BN and activation (conv -> BN -> ReLU -> parasite); for `vm`, which has
    no BN, this is "after activation".
* ``pool`` (reading option, only for ``after``): ``before`` (default) - max-pooling is *not*
  part of the layer: the parasite acts before the layer's max-pool, on the full
  convolutional map (16x10x10 = 1600 neurons for layer 2). The paper sets pooling aside ("we
  also put ourselves in the context where pooling layers are not considered", Sec. 1.1) and
  speaks of the neurons "of the second convolutional layer", which are the convolution's
  outputs, not the pooled ones. ``after``: the parasite reads the pooled map (16x5x5 = 400
  neurons for layer 2, 6 maps of 14x14 for layer 1), as a Keras ``Sequential`` whose conv
  block ends with its pooling would place it.
* ``neurons``:
  - ``first`` / ``last``: the first or last n neurons of the layer in flattened (C, H, W)
    order (reading option ``order=hwc``: channels-last (H, W, C), Keras' flatten), n a
    square (16x16 in the paper), reshaped to one n-side map (Sec. 6.1: "we select
    the n input neurons as the first or the last ones from the previous layer");
  - ``whole``: every neuron of the layer (Table 2). A LeNet layer has C x H x W neurons, not
    a square (6x28x28 = 4704), so each channel's H x W map is given to the parasite as its
    own square input (the same parasite for every channel). This is the only reading under
    which the text's "this is only possible if the first hidden layer has a number of
    neurons which is a square" holds for a multi-channel conv layer: the per-channel maps
    are square.

Several parasites at the same site are applied in the order given; "when there are two
parasitic CNNs at the same location, the first is applied to the first neurons and the second
is applied to the last neurons" (Sec. 6.3) is expressed by the placements themselves.
Every parasite writes its output back in place of the neurons it read.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

Position = Literal["before", "after"]
Neurons = Literal["first", "last", "whole"]
PoolSide = Literal["before", "after"]
NeuronOrder = Literal["chw", "hwc"]

PAPER_NEURON_COUNT = 16 * 16


@dataclass(frozen=True)
class Placement:
    """Where one parasite acts. See the module docstring for the meaning of each field."""

    layer: int
    position: Position
    neurons: Neurons
    count: int = PAPER_NEURON_COUNT
    pool: PoolSide = "before"
    order: NeuronOrder = "chw"
    #: A module of the victim by name (dotted path, ``paraeval inspect`` lists them): the
    #: parasite rewrites its output; `layer`, `position` and `pool` then play no part. Left
    #: out of the repr, which the paper rows' cell keys hash: their keys stay as they were.
    module: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.position not in ("before", "after"):
            raise ValueError(f"position must be 'before' or 'after', not {self.position!r}")
        if self.neurons not in ("first", "last", "whole"):
            raise ValueError(f"neurons must be first, last or whole, not {self.neurons!r}")
        if self.neurons != "whole" and math.isqrt(self.count) ** 2 != self.count:
            raise ValueError(f"neuron count {self.count} is not a perfect square")
        if self.pool not in ("before", "after"):
            raise ValueError(f"pool must be 'before' or 'after', not {self.pool!r}")
        if self.pool == "after" and self.position == "before":
            raise ValueError("a parasite before BN and activation cannot sit after the max-pool")
        if self.order not in ("chw", "hwc"):
            raise ValueError(f"order must be 'chw' or 'hwc', not {self.order!r}")

    @property
    def label(self) -> str:
        what = "whole layer" if self.neurons == "whole" else f"{self.neurons} {self.count}"
        if self.module is not None:
            return f"{self.module} output, {what}" + (" (HWC order)" if self.order == "hwc" else "")
        where = f"{self.position} BN+act" + (", after pool" if self.pool == "after" else "")
        order = " (HWC order)" if self.order == "hwc" and self.neurons != "whole" else ""
        return f"conv{self.layer} {where}, {what}{order}"

    def site(self, model: nn.Module) -> str:
        """The attribute of `model` whose output this parasite rewrites.

        ``before``: ``conv{layer}`` (``fc{layer}`` in an MLP), its raw output; ``after``:
        ``act{layer}``, or ``pool{layer}`` when ``pool == "after"``; `module` when given.
        """
        if self.module is not None:
            return self.module
        if self.position == "before":
            return f"conv{self.layer}" if hasattr(model, f"conv{self.layer}") else f"fc{self.layer}"
        return f"{'pool' if self.pool == 'after' else 'act'}{self.layer}"


def apply_at(parasite: nn.Module, activations: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Run `parasite` on the neurons `placement` selects; HWC order reads channels-last."""
    if placement.order == "hwc" and activations.dim() == 4 and placement.neurons != "whole":
        channels_last = activations.permute(0, 2, 3, 1)
        out = apply_to_neurons(parasite, channels_last, placement.neurons, placement.count)
        return out.permute(0, 3, 1, 2)
    return apply_to_neurons(parasite, activations, placement.neurons, placement.count)


def apply_to_neurons(
    parasite: nn.Module, activations: torch.Tensor, neurons: Neurons, count: int
) -> torch.Tensor:
    """Run `parasite` on the selected neurons of [N, C, H, W] `activations`; return a new tensor.

    A fully-connected layer's [N, F] activations (the `mlp` victim) are one flat vector: "whole"
    reshapes all F neurons to one square map (F must be a square), first/last as below.
    """
    if activations.dim() == 2:
        features = activations.shape[1]
        if neurons == "whole":
            count = features
            if math.isqrt(features) ** 2 != features:
                raise ValueError(f"whole-layer insertion needs a square count, not {features}")
        selection: Neurons = "first" if neurons == "whole" else neurons
        flat_map = activations.reshape(-1, 1, 1, features)
        return apply_to_neurons(parasite, flat_map, selection, count).reshape(-1, features)
    batch, channels, height, width = activations.shape
    if neurons == "whole":
        if height != width:
            raise ValueError(f"whole-layer insertion needs square maps, got {height}x{width}")
        maps = activations.reshape(batch * channels, 1, height, width)
        return parasite(maps).reshape(batch, channels, height, width)
    flat = activations.flatten(1)
    total = flat.shape[1]
    if count > total:
        raise ValueError(f"cannot select {count} neurons from a layer of {total}")
    side = math.isqrt(count)
    if neurons == "first":
        head = parasite(flat[:, :count].reshape(batch, 1, side, side)).flatten(1)
        out = torch.cat([head, flat[:, count:]], dim=1)
    else:
        tail = parasite(flat[:, total - count :].reshape(batch, 1, side, side)).flatten(1)
        out = torch.cat([flat[:, : total - count], tail], dim=1)
    return out.reshape(batch, channels, height, width)


class ParasiteSite(nn.Module):
    """The parasites acting at one (layer, position) of a victim, applied in order."""

    def __init__(self, entries: list[tuple[Placement, nn.Module]]) -> None:
        super().__init__()
        self.placements = [placement for placement, _ in entries]
        self.parasites = nn.ModuleList([parasite for _, parasite in entries])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for placement, parasite in zip(self.placements, self.parasites, strict=True):
            x = apply_at(parasite, x, placement)
        return x


def insert_parasites(victim: nn.Module, entries: list[tuple[Placement, nn.Module]]) -> nn.Module:
    """A deep copy of `victim` (a LeNet) with the parasites inserted; the victim is untouched.

    Each parasite wraps the module :meth:`Placement.site` names. The result is in eval mode.
    """
    protected = copy.deepcopy(victim)
    sites: dict[str, list[tuple[Placement, nn.Module]]] = {}
    for placement, parasite in entries:
        sites.setdefault(placement.site(protected), []).append((placement, parasite))
    for path, site_entries in sites.items():
        original = submodule(protected, path)
        parent, _, name = path.rpartition(".")
        wrapped = nn.Sequential(original, ParasiteSite(site_entries))
        setattr(protected.get_submodule(parent) if parent else protected, name, wrapped)
    return protected.eval()


def submodule(model: nn.Module, path: str) -> nn.Module:
    """The module of `model` at the dotted `path`; a ValueError naming the valid paths."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = ", ".join(name for name, _ in model.named_modules() if name)
        raise ValueError(f"{type(model).__name__} has no layer {path!r}; layers: {names}") from None
