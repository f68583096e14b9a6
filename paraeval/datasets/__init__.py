"""Datasets as plugins: what a dataset is, and the run's way of loading one.

A dataset has a name, the shape of one input ([C, H, W]), a number of classes, the range of
its input values and ``load(data_dir, allow_download=)``, which returns :class:`Splits`:
verified train and test tensors. Built-ins (:mod:`paraeval.datasets.builtin`) register through
the same ``register_datasets`` hook as a third-party plugin: ``mnist`` (the paper's), ``digits``
(scikit-learn's bundled 8x8 digits: offline, the small second dataset the tests use),
``fashion-mnist``, ``kmnist`` and ``cifar10`` (binary version; downloaded for users, checked
against the publishers' checksums, never unpickled).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from paraeval.errors import DataError
from paraeval.plugin.base import Plugin, shape_text


@dataclass(frozen=True)
class Splits:
    """A dataset's tensors: images float [N, C, H, W] in the value range, labels int64 [N]."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    #: Where the data came from (a folder, an archive, a package).
    source: str


class DatasetBase(Plugin):
    """A dataset (subclass it and override ``load``).

    input_shape  one input's shape [C, H, W]
    classes      the number of classes; labels are 0 .. classes - 1
    value_range  (low, high) of every input value
    train_size   how many training images it holds (None: unknown until loaded); a model
                 trained here gets enough optimiser steps on a small set (``Recipe.scaled``)
    pixel_std    the standard deviation of the dataset's usual input normalisation, one number
                 for every channel (MNIST's customary 0.3081); None: the run computes it from
                 the training split. The unit of attack steps given in normalised units
                 (``fgsm:eps_unit=normalized``)
    """

    input_shape: tuple[int, ...] = (1, 28, 28)
    classes: int = 10
    value_range: tuple[float, float] = (0.0, 1.0)
    pixel_std: float | None = None
    train_size: int | None = None

    def load(self, data_dir: Path | None = None, *, allow_download: bool = True) -> Splits:
        """The verified splits (from `data_dir` when given, else the cache; downloading there
        when allowed and the dataset has a download path)."""
        raise NotImplementedError

    @property
    def shape_text(self) -> str:
        return shape_text(self.input_shape)

    @property
    def summary(self) -> str:
        """'1x28x28, 10 classes': what `paraeval list datasets` and skip notes say."""
        return f"{self.shape_text}, {self.classes} classes"


def check_splits(dataset: DatasetBase, splits: Splits) -> Splits:
    """`splits` if they match what `dataset` declares, else a DataError naming the mismatch."""
    low, high = dataset.value_range
    for part in ("train", "test"):
        images: torch.Tensor = getattr(splits, f"{part}_images")
        labels: torch.Tensor = getattr(splits, f"{part}_labels")
        where = f"dataset {dataset.name!r}, {part} split"
        if images.dtype != torch.float32 or tuple(images.shape[1:]) != dataset.input_shape:
            expected = ", ".join(map(str, dataset.input_shape))
            raise DataError(
                f"{where}: images are {images.dtype} {tuple(images.shape)}, "
                f"expected float32 [N, {expected}]"
            )
        if labels.dtype != torch.int64 or labels.shape != (len(images),):
            raise DataError(
                f"{where}: labels are {labels.dtype} {tuple(labels.shape)}, "
                f"expected int64 [{len(images)}]"
            )
        if len(images) and (float(images.min()) < low or float(images.max()) > high):
            raise DataError(f"{where}: values outside the declared range [{low}, {high}]")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= dataset.classes):
            raise DataError(f"{where}: labels outside 0..{dataset.classes - 1}")
    return splits
