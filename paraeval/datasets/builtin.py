"""The built-in datasets, registered through the same hook as a third-party plugin's.

* ``mnist``: the paper's (Sec. 6.1), from the IDX files of :mod:`paraeval.datasets.idx`.
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, values 0-16 scaled
  to [0, 1]); offline, so the tests run a second dataset without downloading anything. Split by
  position: the first 1,297 images train, the last 500 test (the images are stored roughly by
  writer, so the test digits come mostly from writers the training split never saw).
* ``fashion-mnist`` and ``kmnist``: the same IDX format as MNIST, as published (.gz files,
  verified by the MD5 their publishers give).
* ``cifar10``: the binary version (``cifar-10-binary.tar.gz``, verified by its published MD5);
  the six ``.bin`` members are read from the archive, nothing is extracted or unpickled.
"""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from paraeval.datasets import DatasetBase, Splits
from paraeval.datasets.files import locate
from paraeval.datasets.idx import MNIST, load_mnist, parse_idx
from paraeval.errors import DataError
from paraeval.hookspecs import hookimpl

#: The IDX file stems, in the order train images, train labels, test images, test labels.
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip


class Mnist(DatasetBase):
    name = "mnist"
    description = "MNIST handwritten digits (LeCun et al.), 60,000 train / 10,000 test: the paper's"
    #: The customary ``Normalize((0.1307,), (0.3081,))`` (the training pixels' std, rounded).
    pixel_std = 0.3081

    def load(self, data_dir: Path | None = None, *, allow_download: bool = True) -> Splits:
        return mnist_splits(load_mnist(data_dir, allow_download=allow_download))


def mnist_splits(mnist: MNIST) -> Splits:
    """MNIST's raw arrays (:mod:`paraeval.datasets.idx`) as a dataset's splits."""
    train, test = MNIST.as_float(mnist.train_images), MNIST.as_float(mnist.test_images)
    return Splits(train, mnist.train_labels, test, mnist.test_labels, str(mnist.source))


class Digits(DatasetBase):
    name = "digits"
    description = "scikit-learn's bundled 8x8 digits, 1,297 train / 500 test (offline)"
    input_shape = (1, 8, 8)
    #: The first TRAIN images train, the rest test.
    TRAIN = 1_297
    train_size = TRAIN

    def load(self, data_dir: Path | None = None, *, allow_download: bool = True) -> Splits:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]

        bunch = load_digits()
        images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
        labels = torch.from_numpy(bunch.target.astype(np.int64))
        cut = self.TRAIN
        return Splits(
            images[:cut].contiguous(),
            labels[:cut].contiguous(),
            images[cut:].contiguous(),
            labels[cut:].contiguous(),
            "scikit-learn (bundled)",
        )


class IdxDataset(DatasetBase):
    """A dataset published as MNIST's four gzipped IDX files (28x28 grey, 10 classes)."""

    def __init__(
        self, name: str, description: str, md5: dict[str, str], mirrors: tuple[str, ...]
    ) -> None:
        self.name, self.description, self.md5, self.mirrors = name, description, md5, mirrors

    def load(self, data_dir: Path | None = None, *, allow_download: bool = True) -> Splits:
        files = {f"{stem}.gz": self.md5[stem] for stem in IDX_STEMS}
        folder = locate(self.name, files, self.mirrors, data_dir, allow_download)
        arrays = [torch.from_numpy(_idx(folder / f"{stem}.gz").copy()) for stem in IDX_STEMS]
        train_images, train_labels, test_images, test_labels = arrays
        return Splits(
            MNIST.as_float(train_images),
            train_labels.long(),
            MNIST.as_float(test_images),
            test_labels.long(),
            str(folder),
        )


def _idx(path: Path) -> np.ndarray:
    try:
        return parse_idx(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


FASHION_MNIST = IdxDataset(
    "fashion-mnist",
    "Fashion-MNIST (Zalando), 28x28 grey clothing images, 60,000 / 10,000",
    {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
     "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
     "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
     "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)  # fmt: skip

KMNIST = IdxDataset(
    "kmnist",
    "Kuzushiji-MNIST (ROIS-CODH), 28x28 grey cursive Japanese characters, 60,000 / 10,000",
    {"train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
     "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
     "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
     "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134"},
    ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
)  # fmt: skip


class Cifar10(DatasetBase):
    """CIFAR-10, binary version: records of 1 label byte + 3,072 pixel bytes (R, G, B planes)."""

    name = "cifar10"
    description = "CIFAR-10 (Krizhevsky), 32x32 colour, 50,000 / 10,000 (binary version)"
    input_shape = (3, 32, 32)
    ARCHIVE = "cifar-10-binary.tar.gz"
    MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
    MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
    TRAIN_MEMBERS = tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6))
    TEST_MEMBERS = ("cifar-10-batches-bin/test_batch.bin",)

    def load(self, data_dir: Path | None = None, *, allow_download: bool = True) -> Splits:
        folder = locate(self.name, {self.ARCHIVE: self.MD5}, self.MIRRORS, data_dir, allow_download)
        archive = folder / self.ARCHIVE
        with tarfile.open(archive, "r:gz") as tar:
            read = _member_reader(tar, archive)
            train = _records([read(member) for member in self.TRAIN_MEMBERS])
            test = _records([read(member) for member in self.TEST_MEMBERS])
        return Splits(*train, *test, str(archive))


RECORD = 1 + 3 * 32 * 32


def _member_reader(tar: tarfile.TarFile, archive: Path) -> Callable[[str], bytes]:
    def read(member: str) -> bytes:
        try:
            handle = tar.extractfile(member)
        except KeyError:
            handle = None
        if handle is None:
            raise DataError(f"{archive} has no regular file {member}")
        return handle.read()

    return read


def _records(chunks: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    raw = b"".join(chunks)
    if len(raw) % RECORD:
        raise DataError(f"CIFAR-10 batch of {len(raw)} bytes is not a whole number of records")
    table = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    images = torch.from_numpy(table[:, 1:].reshape(-1, 3, 32, 32).copy()).float().div_(255.0)
    return images, torch.from_numpy(table[:, 0].astype(np.int64))


@hookimpl
def register_datasets(register: Callable[[DatasetBase], None]) -> None:
    for dataset in (Mnist(), Digits(), FASHION_MNIST, KMNIST, Cifar10()):
        register(dataset)
