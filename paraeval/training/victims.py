"""Deterministic training of the victims that have a recipe, cached as safetensors by config
hash (:mod:`paraeval.training.parasite_cache` caches the parasites the same way).

A victim's config is its recipe, its dataset and what names it; its hash (with the training
code's version) names the cache file, so any change trains a new model and a stale file is
never reused. A pretrained victim (``recipe = None``) is loaded, never trained or cached.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paraeval.core.cache import cache_dir, config_key, entry_lock, load_or_none, save_weights
from paraeval.core.console import progress
from paraeval.core.metrics import accuracy
from paraeval.core.seeding import seeded, single_threaded
from paraeval.datasets import DatasetBase, Splits
from paraeval.datasets.builtin import mnist_splits
from paraeval.datasets.idx import MNIST
from paraeval.errors import UserError
from paraeval.models.victim_base import Recipe, VictimBase

#: Bump when a change to the training code changes the trained victims' weights
#: (2: victims are trained on one thread, so their weights do not depend on the core count).
TRAINING_VERSION = 2


@dataclass(frozen=True)
class VictimConfig:
    """How a victim is trained (its recipe) and what it is: the key of its cache entry and part
    of every cell key. The defaults train in ~1-2 min on 2 cores; the measured
    accuracies stand beside the paper's in reports/summary.csv (`victim_accuracy`)."""

    name: str
    seed: int = 0
    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    #: The dataset it classifies; keyed only when not MNIST, so the keys of every
    #: MNIST victim stored before datasets existed stay the same.
    dataset: str = "mnist"
    #: What names a pretrained or user-given model (its files' hash); keyed only when set.
    fingerprint: str = ""
    #: Where it is trained ("cpu" or "cuda", paraeval.core.devices); keyed only when not the CPU.
    device: str = "cpu"
    #: The victim and its dataset themselves (what builds, trains or loads the model; what it
    #: classifies), resolved once where the run starts; never keyed (their names, the recipe
    #: and the fingerprint are).
    victim_plugin: VictimBase | None = field(default=None, compare=False, repr=False)
    dataset_plugin: DatasetBase | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls, victim: VictimBase, dataset: DatasetBase, seed: int = 0, device: str = "cpu"
    ) -> VictimConfig:
        """The config of a victim on its `dataset`: its recipe scaled to the dataset's training
        split (a pretrained one: the defaults, unused), its fingerprint, and the device it is
        trained on (a pretrained victim is the same on any device: only the cells computed
        with it are keyed apart)."""
        recipe = (victim.recipe or Recipe()).scaled(dataset.train_size)
        return cls(
            victim.name,
            seed,
            recipe.epochs,
            recipe.batch_size,
            recipe.lr,
            victim.dataset,
            victim.fingerprint(),
            device,
            victim,
            dataset,
        )

    @property
    def model_source(self) -> VictimBase:
        """The victim that builds the model (a config made by :meth:`of` carries it)."""
        if self.victim_plugin is None:
            raise self._unresolved()
        return self.victim_plugin

    @property
    def dataset_source(self) -> DatasetBase:
        """The dataset the victim classifies (a config made by :meth:`of` carries it)."""
        if self.dataset_plugin is None:
            raise self._unresolved()
        return self.dataset_plugin

    def _unresolved(self) -> UserError:
        return UserError(
            f"victim config {self.name!r} was built by name alone: build it "
            "with VictimConfig.of(victim, dataset)"
        )

    def key_fields(self) -> dict[str, Any]:
        """The fields a key hashes: the dataset and fingerprint only where they are not the
        defaults (tests/test_key_stability.py pins the paper study's keys)."""
        fields = {
            name: value for name, value in self.__dict__.items() if not name.endswith("_plugin")
        }
        for name, default in (("dataset", "mnist"), ("fingerprint", ""), ("device", "cpu")):
            if fields[name] == default:
                del fields[name]
        return fields

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "victim", "version": TRAINING_VERSION, **self.key_fields()}


def victim_path(config: VictimConfig) -> Path:
    """The victim's cache entry (shipped to remote workers with the cells that need it)."""
    return cache_dir() / "victims" / f"{config.name}-{config_key(config.as_dict())}.safetensors"


def train_victim(config: VictimConfig, data: Splits | MNIST) -> tuple[nn.Module, dict[str, Any]]:
    """Adam with a one-cycle schedule, cross-entropy, on the whole training split.

    Trained on one thread: how a convolution's reductions split across threads changes the
    float sums (measured: 1 vs 2 threads differ by 5e-7 after one epoch and by 0.03 pp of
    test accuracy after six), so one thread gives the same victim for the same seed on any
    core count (same torch build and CPU instruction set). Measured cost on 2 cores: ~1.1x
    the two-thread time (LeNet's convolutions are too small to split well).
    """
    with single_threaded(), torch.enable_grad():  # also when called under torch.no_grad()
        return _train_victim(config, as_splits(data))


def as_splits(data: Splits | MNIST) -> Splits:
    """MNIST as the raw arrays of :mod:`paraeval.datasets.idx` (older callers) or any
    dataset's splits."""
    return data if isinstance(data, Splits) else mnist_splits(data)


def _train_victim(config: VictimConfig, data: Splits) -> tuple[nn.Module, dict[str, Any]]:
    victim = config.model_source
    if victim.recipe is None:
        raise UserError(f"victim {config.name!r} is pretrained: it has no training recipe")
    # On the CPU `.to` returns the same tensors: the CPU path is unchanged by the device.
    images, labels = data.train_images.to(config.device), data.train_labels.to(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    with seeded(config.seed):
        model: nn.Module = victim.build().to(config.device)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    model.train()
    with progress(f"training victim {config.name}", config.epochs) as bar:
        for _ in range(config.epochs):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), config.batch_size):
                batch = order[start : start + config.batch_size].to(config.device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(images[batch]), labels[batch])
                loss.backward()
                optimizer.step()
                schedule.step()
            bar.advance(status=f"loss {loss.item():.4f}")
    model.eval().cpu()
    info = {
        "config": config.as_dict(),
        "test_accuracy": accuracy(model, data.test_images, data.test_labels),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    return model, info


def _victim_from(config: VictimConfig, tensors: dict[str, torch.Tensor]) -> nn.Module:
    model = config.model_source.build()
    model.load_state_dict(tensors)
    return model.eval()


def load_or_train_victim(
    config: VictimConfig, data: Splits | MNIST
) -> tuple[nn.Module, dict[str, Any]]:
    """The victim for `config`: a pretrained one loaded, else the cached one, training (and
    caching) it on a miss."""
    victim = config.model_source
    if victim.recipe is None:
        model = victim.load()
        return model, {"config": config.as_dict(), "pretrained": True}
    cached = _cached_victim(config)
    if cached is not None:
        return cached
    with entry_lock(victim_path(config)):  # another run training this victim: wait for its file
        cached = _cached_victim(config)
        if cached is not None:
            return cached
        model, info = train_victim(config, data)
        save_weights(victim_path(config), model.state_dict(), info)
    return model, info


def _cached_victim(config: VictimConfig) -> tuple[nn.Module, dict[str, Any]] | None:
    return load_or_none(
        victim_path(config), lambda tensors, info: (_victim_from(config, tensors), info)
    )
