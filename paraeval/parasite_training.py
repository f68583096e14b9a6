"""The parasite (paper Sec. 6.1) and how one is trained: MSE to x + N on random inputs, Adam,
a cosine schedule, the bias projected after every step; its fit on held-out inputs.

:mod:`paraeval.training` caches what is trained here (and re-exports it);
:mod:`paraeval.parasite_bank` trains many of these at once on a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .data import random_square_inputs
from .models.parasite import PADDING, BiasMode, BiasScope, ParasiteInit, ParasiticCNN
from .seeding import derive_seed, seeded, single_threaded

#: Bump when a change to the training code changes the trained parasites' weights
#: (2: parasites are trained on one thread, so their weights do not depend on the core count;
#: 3: default reading init=torch, lr=1e-3, Glorot init, training-failure record in the fit).
PARASITE_TRAINING_VERSION = 3


@dataclass(frozen=True)
class ParasiteConfig:
    """One parasite (paper Sec. 6.1): architecture, noise level, training-set size and recipe.

    `side` is the side of the square it is trained on: 16 for the first/last 16x16 neurons;
    the side of a channel map for whole-layer insertion (Table 2: "the same number of layers
    and parameters. The only difference is the model's input and output sizes").
    The training recipe (initialisation, Adam, lr, epochs, batch size) is not in the paper;
    its defaults (framework defaults where the paper is silent) are the defaults of the
    reading options (:class:`~paraeval.defenses.reading.ParasiteReading` declares them from
    these fields), and ``paraeval readings`` measures the alternatives.
    """

    batch_norm: bool
    bias: BiasMode
    sigma: float = 0.2
    side: int = 16
    seed: int = 0
    bias_scope: BiasScope = "conv"
    n_train: int = 10_000
    n_heldout: int = 2_000
    init: ParasiteInit = "torch"
    epochs: int | None = None
    batch_size: int = 100
    lr: float = 1e-3
    #: Where it is trained: "cpu" (one at a time, one thread) or "cuda" (in a bank).
    device: str = "cpu"

    @property
    def epoch_count(self) -> int:
        """`epochs`, or by default 10 epochs at 16x16 and the same pixel budget at other sides.

        A 28x28 parasite sees ~3x more pixels per input, so 4 epochs give it about as many
        pixel-level training signals as 10 epochs at 16x16, for the same wall time.
        """
        if self.epochs is not None:
            return self.epochs
        return max(1, math.ceil(10 * 16 * 16 / (self.side * self.side)))

    def as_dict(self) -> dict[str, Any]:
        """What the cache key hashes: every field, `device` only when not the CPU (a parasite
        trained on a GPU is another artifact, paraeval.devices; CPU keys stay as they were)."""
        fields = dict(self.__dict__)
        if fields["device"] == "cpu":
            del fields["device"]
        return {"kind": "parasite", "version": PARASITE_TRAINING_VERSION, **fields}

    @property
    def label(self) -> str:
        return (
            f"{'BN' if self.batch_norm else 'no BN'}, bias {self.bias}, sigma {self.sigma}, "
            f"{self.side}x{self.side}"
        )


@dataclass
class TrainedParasite:
    """A trained parasite, its fixed noise N and its fit on held-out random inputs."""

    model: ParasiticCNN
    noise: torch.Tensor
    fit: dict[str, float] = field(default_factory=dict)


def _parasite_data(config: ParasiteConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise N ~ N(0, sigma^2) of shape side x side drawn once, train and held-out inputs."""
    generator = torch.Generator().manual_seed(derive_seed("parasite-data", config.seed))
    noise = config.sigma * torch.randn(1, 1, config.side, config.side, generator=generator)
    train = random_square_inputs(config.n_train, config.side, generator)
    heldout = random_square_inputs(config.n_heldout, config.side, generator)
    return noise, train, heldout


@torch.no_grad()
def parasite_fit(model: nn.Module, noise: torch.Tensor, inputs: torch.Tensor) -> dict[str, float]:
    """How well the parasite approximates x + N, compared with the trivial answers.

    mse_to_target    mean (f(x) - (x + N))^2  - what training minimises
    mse_to_identity  mean (f(x) - x)^2        - small means it drifted toward plain identity
    identity_mse     mean N^2                 - the target MSE of the exact identity
    relu_floor_mse   mean min(x + N, 0)^2     - the best any ReLU-output network can reach
    zero_output_fraction  share of inputs whose whole output is 0 (dead ReLUs)
    """
    output = model.eval()(inputs)
    target = inputs + noise
    return {
        "mse_to_target": float(((output - target) ** 2).mean()),
        "mse_to_identity": float(((output - inputs) ** 2).mean()),
        "identity_mse": float((noise**2).mean()),
        "relu_floor_mse": float((target.clamp(max=0) ** 2).mean()),
        "zero_output_fraction": float((output.flatten(1) == 0).all(dim=1).double().mean()),
    }


def training_failure(fit: dict[str, float]) -> str | None:
    """Why a parasite failed to train, or None: the readings rule's test of a default.

    A failure is a NaN fit, a held-out loss that did not decrease from the initial model's,
    or an all-zero output. Fitting x + N worse than the identity map is *not* a failure: the
    paper's Eq. 12 expects a perturbation N'(x) that differs from N.
    """
    final = fit["mse_to_target"]
    if math.isnan(final):
        return "NaN loss"
    if fit.get("zero_output_fraction", 0.0) >= 1.0:
        return "all-zero output"
    initial = fit.get("initial_mse_to_target")
    if initial is not None and not final < initial:
        return "loss did not decrease"
    return None


def initialise(model: ParasiticCNN, init: ParasiteInit) -> None:
    """Initialise the convolution weights (biases start at 0 or are projected).

    ``dirac``: channel 0 of every layer passes its input's channel 0 through (a centred 1 in the
    5x5 filter), all other weights N(0, 0.01^2); the network starts as the identity on
    non-negative inputs (Zhang et al. 2019, paper Sec. 3) and training moves it toward x + N.
    ``kaiming``: He normal (fan-in, ReLU gain). ``glorot``: Glorot uniform, Keras' default.
    ``torch``: PyTorch's default (kaiming uniform, a = sqrt(5); uniform biases, then projected).
    """
    if init == "torch":
        model.project_bias()
        return
    with torch.no_grad():
        for conv in model.convolutions():
            if init == "kaiming":
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            elif init == "glorot":
                nn.init.xavier_uniform_(conv.weight)
            elif init == "dirac":
                weight = 0.01 * torch.randn_like(conv.weight)
                weight[0, 0, PADDING, PADDING] += 1.0
                conv.weight.copy_(weight)
            else:
                raise ValueError(f"unknown parasite init {init!r}")
            if conv.bias is not None:
                conv.bias.zero_()


def train_parasite(config: ParasiteConfig) -> TrainedParasite:
    """MSE to x + N with Adam and a cosine schedule; beta projected after every step."""
    with single_threaded(), torch.enable_grad():  # also when protect() runs under no_grad
        return _train_parasite(config)


def _train_parasite(config: ParasiteConfig) -> TrainedParasite:
    noise, train, heldout = _parasite_data(config)
    with seeded(derive_seed("parasite-init", config.seed)):
        model = ParasiticCNN(config.batch_norm, config.bias, config.bias_scope)
        initialise(model, config.init)
    initial_mse = parasite_fit(model, noise, heldout)["mse_to_target"]
    generator = torch.Generator().manual_seed(derive_seed("parasite-order", config.seed))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    steps = config.epoch_count * math.ceil(config.n_train / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    targets = train + noise
    model.train()
    for _ in range(config.epoch_count):
        order = torch.randperm(config.n_train, generator=generator)
        for start in range(0, config.n_train, config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = ((model(train[batch]) - targets[batch]) ** 2).mean()
            loss.backward()
            optimizer.step()
            schedule.step()
            model.project_bias()
    model.eval()
    fit = parasite_fit(model, noise, heldout)
    fit["initial_mse_to_target"] = initial_mse
    fit["bias_norm"] = model.bias_norm()
    fit["bn_shift_norm"] = model.bn_shift_norm()
    return TrainedParasite(model=model, noise=noise, fit=fit)
