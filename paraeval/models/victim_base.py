"""Victims as plugins: the models a run protects and attacks.

A victim has a name, the dataset it classifies, ``build()`` (a fresh, untrained model) and
either a training :class:`Recipe` - trained on the dataset's training split, cached by config
hash like every trained artifact - or ``load()`` of pretrained weights (``recipe = None``;
``fingerprint()`` then names the weights, so new weights make new cells). The paper's ``vm``,
``vm-batch`` and the ``mlp`` are built-in victim plugins (:mod:`paraeval.models.victims`).

Two ways in without writing a plugin: a model file (``paraeval run --model net.py:Net
--weights net.safetensors --dataset digits``, :class:`ModelFileVictim`) and, from Python, a
module object (:func:`paraeval.evaluate`, :class:`ModuleVictim`). Both belong to their run
only: it resolves them beside the registered victims (``RunConfig.own_victims``, ``--model``)
and nothing is registered in the process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from paraeval.errors import UserError
from paraeval.plugin.base import Plugin

if TYPE_CHECKING:
    from paraeval.datasets import DatasetBase


@dataclass(frozen=True)
class Recipe:
    """How a victim is trained: Adam with a one-cycle schedule, cross-entropy (training.py)."""

    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    #: Give a small training set as many optimiser steps as MNIST's (:meth:`scaled`).
    scale_to_dataset: bool = False

    def scaled(self, train_size: int | None) -> Recipe:
        """This recipe with at least as many optimiser steps as it takes on MNIST's 60,000
        training images (6 epochs of 469 batches): on a small training set (scikit-learn's
        1,297 digits) 6 epochs are 66 steps, too few to train a classifier."""
        if not train_size or not self.scale_to_dataset:
            return self
        steps_per_epoch = -(-train_size // self.batch_size)
        wanted = self.epochs * -(-MNIST_TRAIN_IMAGES // self.batch_size)
        return replace(self, epochs=max(self.epochs, -(-wanted // steps_per_epoch)))


#: MNIST's training split: the size the default recipe was made for.
MNIST_TRAIN_IMAGES = 60_000


class VictimBase(Plugin):
    """A victim (subclass it: override ``build``, and ``load`` for pretrained weights).

    dataset         the registered dataset it classifies (``paraeval list datasets``)
    recipe          how to train it; None: it is pretrained, ``load()`` returns it
    paper_accuracy  a published test accuracy (%) to show beside the measured one, or None
    """

    dataset: str = "mnist"
    recipe: Recipe | None = Recipe()
    paper_accuracy: float | None = None

    def build(self) -> nn.Module:
        """A fresh model (initialised under the seed the caller set)."""
        raise NotImplementedError

    def load(self) -> nn.Module:
        """The pretrained model, in eval mode (only when ``recipe`` is None)."""
        raise NotImplementedError(f"victim {self.name!r} has no pretrained weights")

    def fingerprint(self) -> str:
        """What identifies the model beyond its name (hashed into every cell key); "" for a
        victim defined by its name and recipe alone."""
        return ""


# ------------------------------------------------------------------------- a model file


def _sha(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def import_model_class(spec: str) -> type[nn.Module]:
    """`FILE.py:Class` -> the class (a UserError, one line, for anything wrong)."""
    file, sep, class_name = spec.rpartition(":")
    if not sep or not file or not class_name:
        raise UserError(f"--model takes FILE.py:Class, got {spec!r}")
    path = Path(file).expanduser()
    if not path.is_file():
        raise UserError(f"--model: no such file {file}")
    module_name = f"paraeval_user_model_{_sha(path)}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UserError(f"--model: cannot import {file} (not a Python file?)")
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(f"--model: importing {file} failed: {type(exc).__name__}: {exc}") from None
    found = getattr(module, class_name, None)
    if not (inspect.isclass(found) and issubclass(found, nn.Module)):
        classes = [
            name
            for name, value in vars(module).items()
            if inspect.isclass(value)
            and issubclass(value, nn.Module)
            and value.__module__ == module_name
        ]
        raise UserError(
            f"--model: {file} defines no nn.Module class {class_name!r}; "
            f"it defines: {', '.join(classes) or 'none'}"
        )
    return found


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file read with ``weights_only=True``."""
    if not path.is_file():
        raise UserError(f"--weights: no such file {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"--weights: cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(loaded, dict) and all(isinstance(v, torch.Tensor) for v in loaded.values())):
        raise UserError(f"--weights: {path} does not hold a state dict (name -> tensor)")
    return loaded


def load_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """`model` with `state` loaded strictly; a mismatch is one line naming what differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = [
        f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", reshaped))
        if items
    ]
    if problems:
        raise UserError(f"{where} do not match {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state)
    return model.eval()


class ModelFileVictim(VictimBase):
    """A user's model class from a Python file, with pretrained weights or trained here."""

    def __init__(self, model: str, dataset: str, weights: Path | None = None) -> None:
        self.spec, self.dataset = model, dataset
        self.weights = Path(weights).expanduser() if weights else None
        self.model_class = import_model_class(model)
        self.name = self.model_class.__name__
        self.description = f"{model}" + (f" with {weights}" if weights else " (trained here)")
        self.recipe = None if self.weights else Recipe(scale_to_dataset=True)
        self.source = Path(model.rpartition(":")[0]).expanduser()

    def build(self) -> nn.Module:
        try:
            return self.model_class()
        except Exception as exc:
            raise UserError(f"--model: {self.name}() failed: {type(exc).__name__}: {exc}") from None

    def load(self) -> nn.Module:
        assert self.weights is not None
        return load_state(self.build(), read_weights(self.weights), f"--weights {self.weights}")

    def fingerprint(self) -> str:
        return _sha(self.source, *([self.weights] if self.weights else []))


@dataclass(frozen=True)
class ModelFile:
    """A run's ``--model FILE.py:Class`` (its absolute source path and the class name), its
    dataset and ``--weights`` ("" for none), as plain values a worker process receives, and
    how a worker on another machine, where those paths do not exist, gets the same files: the
    run ships their bytes with each task (:meth:`shipped`, installed into the worker's cache
    under ``models/<digest>/``) and the worker imports the copy (:meth:`victim`). Same bytes,
    same fingerprint, same cell keys. The model must be one file (a model spread over modules
    must be installed on the workers, e.g. as a victim plugin)."""

    source: str
    class_name: str
    dataset: str
    weights: str = ""
    #: The files' content hash: the folder the copies go to.
    digest: str = ""

    @staticmethod
    def of(spec: str, dataset: str, weights: Path | str | None) -> ModelFile:
        file, _, class_name = spec.rpartition(":")
        source = Path(file).expanduser().resolve()
        weights_path = Path(weights).expanduser().resolve() if weights else None
        model = ModelFile(str(source), class_name, dataset, str(weights_path or ""))
        if all(path.is_file() for path in model.files()):  # else: the import says what is wrong
            model = replace(model, digest=_sha(*model.files()))
        return model

    def files(self) -> list[Path]:
        """The source file, then the weights file if any."""
        return [Path(self.source), *([Path(self.weights)] if self.weights else [])]

    def shipped(self) -> list[tuple[str, bytes]]:
        """The files as (path in a cache, bytes), for a worker that lacks them."""
        return [(f"models/{self.digest}/{path.name}", path.read_bytes()) for path in self.files()]

    def victim(self, cache: Path) -> ModelFileVictim:
        """The victim from the run's files, or from the copies shipped into `cache` where this
        machine has not got them."""
        files = self.files()
        if not all(path.is_file() for path in files):
            files = [cache / "models" / self.digest / path.name for path in files]
        weights = files[1] if self.weights else None
        return ModelFileVictim(f"{files[0]}:{self.class_name}", self.dataset, weights)


class ModuleVictim(VictimBase):
    """A module object handed to :func:`paraeval.evaluate` (used as it is, never retrained)."""

    recipe = None

    def __init__(self, model: nn.Module, dataset: str, name: str | None = None) -> None:
        self.model, self.dataset = model, dataset
        self.name = name or type(model).__name__
        self.description = f"a {type(model).__name__} passed to paraeval.evaluate"

    def build(self) -> nn.Module:
        raise UserError(f"victim {self.name!r} is a module object: it cannot be rebuilt")

    def load(self) -> nn.Module:
        return self.model.eval()

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key, value in self.model.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def architecture(victim: VictimBase) -> nn.Module:
    """A model of the victim's architecture for looking at its layers (untrained where it has
    a recipe, the given model where it has only weights)."""
    return victim.build() if victim.recipe is not None else victim.load()


@torch.no_grad()
def check_victim_model(model: nn.Module, dataset: DatasetBase, where: str) -> None:
    """A UserError (one line) unless `model` maps one of `dataset`'s inputs to its logits."""
    probe = torch.zeros(2, *dataset.input_shape)
    try:
        output = model.eval()(probe)
    except Exception as exc:
        raise UserError(
            f"{where}: the model fails on {dataset.name}'s inputs "
            f"{list(probe.shape)}: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (2, dataset.classes):
        shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise UserError(
            f"{where}: the model maps {list(probe.shape)} to {shape}; "
            f"{dataset.name} needs logits [N, {dataset.classes}]"
        )
