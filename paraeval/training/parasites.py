"""The parasite (paper Sec. 6.1) and how one is trained: MSE to x + N on random inputs, Adam,
a cosine schedule, the bias projected after every step; its fit on held-out inputs.

:mod:`paraeval.training.parasite_cache` caches what is trained here;
:mod:`paraeval.training.bank` trains many of these at once on a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import torch
from torch import nn

from paraeval.core.seeding import derive_seed, seeded, single_threaded
from paraeval.datasets.idx import random_square_inputs
from paraeval.models.parasite import PADDING, BiasMode, BiasScope, ParasiteInit, ParasiticCNN

Optimiser = Literal["adam", "sgd"]
Schedule = Literal["cosine", "constant"]
#: How long a parasite trains when `epochs` is not given: the same pixel budget at every side
#: (10 epochs at 16x16, 4 at 28x28) or the same step count (10 epochs at every side).
Budget = Literal["pixels", "steps"]
#: Train for the budget, or until the held-out fit stops improving (at most PLATEAU_CAP x it).
Until = Literal["budget", "plateau"]

#: Recipe fields added after parasites were first cached, with the value every parasite had
#: before: a config at these values keeps its cache key (and the cells built on it theirs).
LATER_FIELDS: dict[str, object] = {
    "optimizer": "adam", "schedule": "cosine", "budget": "pixels", "until": "budget",
    "bn_affine": True,
}  # fmt: skip
#: `until=plateau`: stop after this many epochs without a held-out improvement ...
PLATEAU_PATIENCE = 2
#: ... of at least this fraction of the best held-out MSE so far ...
PLATEAU_MIN_GAIN = 0.01
#: ... and after at most this many times the budget's epochs.
PLATEAU_CAP = 5

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
    The training recipe (initialisation, optimiser, lr, schedule, epochs, batch size) is not
    in the paper. This config's defaults are the framework's (PyTorch's initialisation,
    Adam's lr), so a config built by hand states its recipe; the defaults a run uses are the
    reading options'
    (:class:`~paraeval.defenses.parasite_reading.ParasiteReading`, chosen by the rule
    of docs/readings.md), and ``paraeval readings`` measures the alternatives.
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
    optimizer: Optimiser = "adam"
    schedule: Schedule = "cosine"
    budget: Budget = "pixels"
    until: Until = "budget"
    #: Whether its BN layers learn a scale and shift (PyTorch's default) or only normalise.
    bn_affine: bool = True
    #: Where it is trained: "cpu" (one at a time, one thread) or "cuda" (in a bank).
    device: str = "cpu"

    @property
    def epoch_count(self) -> int:
        """`epochs`, or by default 10 epochs at 16x16 and, under ``budget=pixels``, the same
        pixel budget at other sides (``budget=steps``: 10 epochs at every side).

        A 28x28 parasite sees ~3x more pixels per input, so 4 epochs give it about as many
        pixel-level training signals as 10 epochs at 16x16, for the same wall time; that rule
        is the project's, not the paper's, so ``budget=steps`` is measured beside it.
        """
        if self.epochs is not None:
            return self.epochs
        if self.budget == "steps":
            return 10
        return max(1, math.ceil(10 * 16 * 16 / (self.side * self.side)))

    @property
    def max_epochs(self) -> int:
        """The epochs training may take: the budget, or under ``until=plateau`` its cap."""
        return self.epoch_count * (PLATEAU_CAP if self.until == "plateau" else 1)

    def as_dict(self) -> dict[str, Any]:
        """What the cache key hashes: every field, `device` only when not the CPU (a parasite
        trained on a GPU is another artifact, paraeval.core.devices; CPU keys stay as they were),
        the recipe fields added later only when they differ from what they were before."""
        fields = dict(self.__dict__)
        if fields["device"] == "cpu":
            del fields["device"]
        for name, before in LATER_FIELDS.items():
            if fields[name] == before:
                del fields[name]
        return {"kind": "parasite", "version": PARASITE_TRAINING_VERSION, **fields}

    @property
    def label(self) -> str:
        return (
            f"{'BN' if self.batch_norm else 'no BN'}, bias {self.bias}, sigma {self.sigma}, "
            f"{self.side}x{self.side}"
        )


def parasite_model(config: ParasiteConfig) -> ParasiticCNN:
    """An untrained parasite of `config`'s architecture."""
    return ParasiticCNN(config.batch_norm, config.bias, config.bias_scope, config.bn_affine)


class ParasiteFit(TypedDict, total=False):
    """How one trained parasite fits x + N (:func:`parasite_fit` gives the first six; training
    adds the rest). Stored with every transfer cell of the defense that inserted it, under
    ``parasite`` (which placement; set at insertion): the report's fit table and the readings'
    fit rule read it (:func:`paraeval.run.results.parasite_fits`)."""

    parasite: str
    mse_to_target: float
    mse_to_identity: float
    identity_mse: float
    relu_floor_mse: float
    constant_mse: float
    zero_output_fraction: float
    initial_mse_to_target: float
    bias_norm: float
    bn_shift_norm: float
    #: Under ``until=plateau``: the epochs trained and the one whose weights were kept.
    epochs_trained: float
    best_epoch: float


@dataclass
class TrainedParasite:
    """A trained parasite, its fixed noise N and its fit on held-out random inputs."""

    model: ParasiticCNN
    noise: torch.Tensor
    fit: ParasiteFit = field(default_factory=lambda: ParasiteFit())


def _parasite_data(config: ParasiteConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise N ~ N(0, sigma^2) of shape side x side drawn once, train and held-out inputs."""
    generator = torch.Generator().manual_seed(derive_seed("parasite-data", config.seed))
    noise = config.sigma * torch.randn(1, 1, config.side, config.side, generator=generator)
    train = random_square_inputs(config.n_train, config.side, generator)
    heldout = random_square_inputs(config.n_heldout, config.side, generator)
    return noise, train, heldout


@torch.no_grad()
def parasite_fit(model: nn.Module, noise: torch.Tensor, inputs: torch.Tensor) -> ParasiteFit:
    """How well the parasite approximates x + N, compared with the trivial answers.

    mse_to_target    mean (f(x) - (x + N))^2  - what training minimises
    mse_to_identity  mean (f(x) - x)^2        - small means it drifted toward plain identity
    identity_mse     mean N^2                 - the target MSE of the exact identity
    relu_floor_mse   mean min(x + N, 0)^2     - the best any ReLU-output network can reach
    constant_mse     mean (E[x] + N - (x + N))^2 - the best output that ignores its input
    zero_output_fraction  share of inputs whose whole output is 0 (dead ReLUs)

    A parasite that approximates the identity "very accurately" (paper Sec. 3) and adds N has
    ``mse_to_target`` below ``identity_mse`` (:func:`fit_ratio` < 1): it is closer to x + N
    than returning x unchanged; above ``constant_mse`` it is worse than ignoring its input.
    """
    output = model.eval()(inputs)
    target = inputs + noise
    return ParasiteFit(
        mse_to_target=float(((output - target) ** 2).mean()),
        mse_to_identity=float(((output - inputs) ** 2).mean()),
        identity_mse=float((noise**2).mean()),
        relu_floor_mse=float((target.clamp(max=0) ** 2).mean()),
        constant_mse=float(((target - target.mean(dim=0, keepdim=True)) ** 2).mean()),
        zero_output_fraction=float((output.flatten(1) == 0).all(dim=1).double().mean()),
    )


def fit_ratio(fit: ParasiteFit) -> float:
    """mse_to_target / identity_mse: below 1 the parasite fits x + N better than the identity
    map does (every stored fit has both numbers)."""
    return fit["mse_to_target"] / fit["identity_mse"] if fit["identity_mse"] > 0 else math.nan


def constant_ratio(fit: ParasiteFit) -> float:
    """mse_to_target / constant_mse: below 1 the parasite beats the best input-free output;
    NaN for fits recorded before constant_mse was."""
    constant = fit.get("constant_mse")
    return fit["mse_to_target"] / constant if constant else math.nan


def training_failure(fit: ParasiteFit) -> str | None:
    """Why a parasite failed to train, or None: the readings rule's test of a default.

    A failure is a NaN fit, an all-zero output, or a held-out loss that did not decrease from
    the initial model's while fitting x + N worse than the identity map does: a parasite that
    starts at the identity (``init=dirac``) and ends there has the property Sec. 3 states,
    so staying near its start is not a failure to train. Fitting x + N worse than the
    identity map is judged on a reading, not on one parasite (:mod:`paraeval.study.fit_rule`;
    readings.csv's median_fit_ratio): a reading whose parasites as a rule fit worse than the
    identity does not train the paper's parasite (Sec. 3: they "approximate the identity very
    accurately").
    """
    final = fit["mse_to_target"]
    if math.isnan(final):
        return "NaN loss"
    if fit.get("zero_output_fraction", 0.0) >= 1.0:
        return "all-zero output"
    initial = fit.get("initial_mse_to_target")
    at_identity = final <= fit.get("identity_mse", -math.inf)
    if initial is not None and not final < initial and not at_identity:
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


def optimiser_for(
    params: list[torch.Tensor], config: ParasiteConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The recipe's optimiser (Adam, or plain SGD: torch's defaults besides the lr) and its
    schedule: cosine-annealed over every step training may take, or constant."""
    optimizer: torch.optim.Optimizer = (
        torch.optim.Adam(params, lr=config.lr)
        if config.optimizer == "adam"
        else torch.optim.SGD(params, lr=config.lr)
    )
    steps = config.max_epochs * math.ceil(config.n_train / config.batch_size)
    schedule: torch.optim.lr_scheduler.LRScheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        if config.schedule == "cosine"
        else torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    )
    return optimizer, schedule


def _train_parasite(config: ParasiteConfig) -> TrainedParasite:
    noise, train, heldout = _parasite_data(config)
    with seeded(derive_seed("parasite-init", config.seed)):
        model = parasite_model(config)
        initialise(model, config.init)
    initial_mse = parasite_fit(model, noise, heldout)["mse_to_target"]
    generator = torch.Generator().manual_seed(derive_seed("parasite-order", config.seed))
    optimizer, schedule = optimiser_for([p for p in model.parameters() if p.requires_grad], config)
    targets = train + noise
    plateau = Plateau() if config.until == "plateau" else None
    for _ in range(config.max_epochs):
        model.train()
        order = torch.randperm(config.n_train, generator=generator)
        for start in range(0, config.n_train, config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = ((model(train[batch]) - targets[batch]) ** 2).mean()
            loss.backward()
            optimizer.step()
            schedule.step()
            model.project_bias()
        if plateau is not None and plateau.done(model, noise, heldout):
            break
    if plateau is not None:
        plateau.restore(model)
    model.eval()
    fit = parasite_fit(model, noise, heldout)
    fit["initial_mse_to_target"] = initial_mse
    fit["bias_norm"] = model.bias_norm()
    fit["bn_shift_norm"] = model.bn_shift_norm()
    if plateau is not None:
        fit["epochs_trained"] = float(plateau.epoch)
        fit["best_epoch"] = float(plateau.best_epoch)
    return TrainedParasite(model=model, noise=noise, fit=fit)


class Plateau:
    """Early stopping on the held-out fit (``until=plateau``): training stops once
    PLATEAU_PATIENCE epochs in a row did not lower the held-out MSE by PLATEAU_MIN_GAIN of
    the best so far, and the parasite keeps the weights of its best epoch."""

    def __init__(self) -> None:
        self.best = math.inf
        self.best_epoch = 0
        self.epoch = 0
        self.state: dict[str, torch.Tensor] = {}

    def done(self, model: ParasiticCNN, noise: torch.Tensor, heldout: torch.Tensor) -> bool:
        self.epoch += 1
        mse = parasite_fit(model, noise, heldout)["mse_to_target"]
        if mse < self.best * (1 - PLATEAU_MIN_GAIN):
            self.best, self.best_epoch = mse, self.epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return self.epoch - self.best_epoch >= PLATEAU_PATIENCE

    def restore(self, model: ParasiticCNN) -> None:
        if self.state:
            model.load_state_dict(self.state)
