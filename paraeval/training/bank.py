"""Many parasites trained at once as one grouped-convolution network.

K parasites that share a shape and a recipe (side, BN, bias mode and scope, training-set size,
batch size, epochs, learning rate) become one network whose every convolution has ``groups=K``:
channel block k holds parasite k, fed with parasite k's own batch, so nothing mixes between
them. Each parasite keeps everything the one-at-a-time path gives it
(:func:`paraeval.training.parasites.train_parasite`): its initial weights (built and
initialised under
its own seed, then copied in), its noise, training inputs and batch order, and its bias
projection (per parasite). The loss is the sum of the K per-parasite MSEs, so each
parasite's gradient is its own; Adam is elementwise. What differs is the order of float sums
inside a grouped convolution, so a bank-trained parasite is close to, not bit-identical with,
the one trained alone: without BN the outputs agree to 1e-4 after training; with BN, a
convolution bias that feeds a BN has an exactly-zero gradient whose float residue Adam turns
into steps of ~lr, so those biases (and, under bias_scope=all, the BN shifts projected with
them) differ while every other parameter agrees, and the fits agree to a few percent
(tests/test_parasite_bank.py). A bank-trained parasite is therefore a different artifact
from the one-at-a-time one: it must be keyed apart (see docs/performance.md).

On a GPU this is what makes parasites cheap (125 parasites measured in ~5 s on an H100);
on a CPU the grouped network is *slower* per parasite than separate ones, so the CPU keeps the
one-at-a-time path and this module is used where the device is a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paraeval.core.seeding import derive_seed, seeded
from paraeval.models.parasite import (
    BIAS_RADIUS,
    CHANNELS,
    KERNEL,
    PADDING,
    ParasiticCNN,
    beta,
    zeroed,
)
from paraeval.training.parasites import (
    ParasiteConfig,
    TrainedParasite,
    _parasite_data,
    initialise,
    optimiser_for,
    parasite_fit,
    parasite_model,
    train_parasite,
)


def bank_key(config: ParasiteConfig) -> tuple[object, ...]:
    """What parasites must share to train in one bank (everything but seed, sigma, init)."""
    return (
        config.device,
        config.side,
        config.batch_norm,
        config.bias,
        config.bias_scope,
        config.n_train,
        config.n_heldout,
        config.batch_size,
        config.epoch_count,
        config.lr,
        config.optimizer,
        config.schedule,
        config.until,
        config.bn_affine,
    )


def banks(configs: Sequence[ParasiteConfig]) -> list[list[ParasiteConfig]]:
    """`configs` grouped into banks (in first-appearance order)."""
    grouped: dict[tuple[object, ...], list[ParasiteConfig]] = {}
    for config in configs:
        grouped.setdefault(bank_key(config), []).append(config)
    return list(grouped.values())


class Bank(nn.Module):
    """K parasitic CNNs as one: [B, K, s, s] -> [B, K, s, s], channel k is parasite k."""

    def __init__(self, parasites: Sequence[ParasiticCNN]) -> None:
        super().__init__()
        first = parasites[0]
        self.count = len(parasites)
        self.batch_norm, self.bias_mode, self.bias_scope = (
            first.batch_norm,
            first.bias_mode,
            first.bias_scope,
        )
        self.bn_affine = first.bn_affine
        layers: list[nn.Module] = []
        in_channels = 1
        for index, out_channels in enumerate(CHANNELS):
            conv = nn.Conv2d(
                self.count * in_channels,
                self.count * out_channels,
                KERNEL,
                padding=PADDING,
                groups=self.count,
                bias=first.bias_mode != "none",
            )
            _stack_into(conv, [p.convolutions()[index] for p in parasites])
            layers.append(conv)
            if self.batch_norm:
                bn = nn.BatchNorm2d(self.count * out_channels, affine=first.bn_affine)
                _stack_into(bn, [p.batch_norms()[index] for p in parasites])
                layers.append(bn)
            layers.append(nn.ReLU())
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def _per_parasite(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """[K, n]: each parasite's slice of every tensor (each [K * c]), side by side."""
        return torch.cat([t.reshape(self.count, -1) for t in tensors], dim=1)

    def bias_parameters(self) -> list[torch.Tensor]:
        return beta(self.layers, self.bias_scope)

    @torch.no_grad()
    def project_bias(self) -> None:
        """Each parasite's beta onto the ball of radius BIAS_RADIUS (or kept 0), as
        :meth:`ParasiticCNN.project_bias` does for one."""
        params = self.bias_parameters()
        if zeroed(params, self.bias_mode):
            return
        norms = self._per_parasite([p.detach() for p in params]).norm(dim=1)
        scale = torch.where(norms > BIAS_RADIUS, BIAS_RADIUS / norms, torch.ones_like(norms))
        for p in params:
            p.mul_(scale.repeat_interleave(p.numel() // self.count))

    def unbank(self, parasites: Sequence[ParasiticCNN]) -> None:
        """Copy each parasite's trained slice (weights, BN statistics) back into it."""
        convs = [m for m in self.layers if isinstance(m, nn.Conv2d)]
        norms = [m for m in self.layers if isinstance(m, nn.BatchNorm2d)]
        for k, parasite in enumerate(parasites):
            for bank_conv, conv in zip(convs, parasite.convolutions(), strict=True):
                _slice_into(conv, bank_conv, k, self.count)
            for bank_bn, bn in zip(norms, parasite.batch_norms(), strict=True):
                _slice_into(bn, bank_bn, k, self.count)


@torch.no_grad()
def _stack_into(target: nn.Module, sources: list[nn.Module]) -> None:
    """target's parameters and buffers = the sources', concatenated along dimension 0."""
    for name, tensor in [*target.named_parameters(), *target.named_buffers()]:
        if tensor.dim() == 0:  # num_batches_tracked
            tensor.copy_(getattr(sources[0], name))
            continue
        tensor.copy_(torch.cat([getattr(source, name) for source in sources]))
        if isinstance(tensor, nn.Parameter):
            tensor.requires_grad_(getattr(sources[0], name).requires_grad)


@torch.no_grad()
def _slice_into(target: nn.Module, bank: nn.Module, k: int, count: int) -> None:
    for name, tensor in [*target.named_parameters(), *target.named_buffers()]:
        source = getattr(bank, name)
        if tensor.dim() == 0:
            tensor.copy_(source)
            continue
        size = source.shape[0] // count
        tensor.copy_(source[k * size : (k + 1) * size])


def train_bank(configs: Sequence[ParasiteConfig]) -> list[TrainedParasite]:
    """Train the parasites of one bank (see :func:`banks`) together on their device; returns
    them on the CPU, each with its own noise and fit, in the order of `configs`."""
    if len({bank_key(c) for c in configs}) != 1:
        raise ValueError("a bank trains parasites of one shape and recipe only")
    if configs[0].until == "plateau":  # each parasite stops at its own epoch: one at a time
        return [train_parasite(config) for config in configs]
    device = configs[0].device
    data = [_parasite_data(config) for config in configs]
    parasites = []
    for config in configs:
        with seeded(derive_seed("parasite-init", config.seed)):
            model = parasite_model(config)
            initialise(model, config.init)
        parasites.append(model)
    initial = [
        parasite_fit(p, noise, heldout)["mse_to_target"]
        for p, (noise, _train, heldout) in zip(parasites, data, strict=True)
    ]
    bank = Bank(parasites).to(device)
    with torch.enable_grad():
        _fit(bank, configs, data, device)
    bank.cpu().eval().unbank(parasites)
    trained = []
    for parasite, (noise, _train, heldout), start in zip(parasites, data, initial, strict=True):
        fit = parasite_fit(parasite.eval(), noise, heldout)
        fit["initial_mse_to_target"] = start
        fit["bias_norm"] = parasite.bias_norm()
        fit["bn_shift_norm"] = parasite.bn_shift_norm()
        trained.append(TrainedParasite(model=parasite, noise=noise, fit=fit))
    return trained


def _fit(
    bank: Bank,
    configs: Sequence[ParasiteConfig],
    data: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    device: str,
) -> None:
    """The recipe's optimiser and schedule on the sum of the per-parasite MSEs, each parasite
    on its own batches in its own order (the one-at-a-time recipe, K at a time)."""
    config = configs[0]
    train = torch.stack([inputs[:, 0] for _noise, inputs, _heldout in data], dim=1).to(device)
    targets = train + torch.cat([noise for noise, _inputs, _heldout in data], dim=1).to(device)
    orders = [torch.Generator().manual_seed(derive_seed("parasite-order", c.seed)) for c in configs]
    optimizer, schedule = optimiser_for([p for p in bank.parameters() if p.requires_grad], config)
    columns = torch.arange(len(configs), device=device)
    bank.train()
    for _ in range(config.epoch_count):
        order = torch.stack([torch.randperm(config.n_train, generator=g) for g in orders], 1)
        order = order.to(device)
        for start in range(0, config.n_train, config.batch_size):
            rows = order[start : start + config.batch_size]  # [B, K]: parasite k's batch
            optimizer.zero_grad(set_to_none=True)
            error = bank(train[rows, columns]) - targets[rows, columns]
            loss = (error**2).mean(dim=(0, 2, 3)).sum()
            loss.backward()
            optimizer.step()
            schedule.step()
            bank.project_bias()
