"""MNIST from the original IDX files, verified by the sha256 of their decompressed bytes.

Where the files are looked for, in order: ``--data-dir`` (``data_dir=``), ``PARAEVAL_DATA_DIR``,
``<cache>/mnist``; if none holds them, they are downloaded from the canonical public mirrors
into ``<cache>/mnist`` (and verified) unless downloading is disabled. An explicitly named
directory that lacks the files is an error, never silently replaced by a download.

The checksum is taken on the *decompressed* bytes because the same IDX content may be
distributed under different gzip compressions (../shared/data/mnist/README.md).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from paraeval.core.cache import cache_dir
from paraeval.errors import DataError

DATA_ENV = "PARAEVAL_DATA_DIR"

#: sha256 of each decompressed IDX file.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Canonical public mirrors, tried in order (the original site first).
MIRRORS = (
    "https://yann.lecun.com/exdb/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


@dataclass(frozen=True)
class MNIST:
    """The four MNIST arrays: images uint8 [N, 28, 28], labels int64 [N]."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path

    @staticmethod
    def as_float(images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28] in [0, 1]: the victims' input domain."""
        return images.unsqueeze(1).float().div_(255.0)


def parse_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (LeCun's format): magic 0x00 0x00 <dtype> <ndim>, big-endian dims."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise ValueError(
            f"IDX size mismatch: header says {dims}, body has {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def read_verified(path: Path, stem: str) -> np.ndarray:
    """Decompress (if .gz), verify the sha256 of the IDX bytes, parse."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"corrupt MNIST file {path}: cannot decompress ({exc})") from None
    actual = hashlib.sha256(raw).hexdigest()
    if actual != SHA256[stem]:
        raise DataError(
            f"corrupt MNIST file {path}: sha256 of the decompressed bytes is {actual}, "
            f"expected {SHA256[stem]}"
        )
    return parse_idx(raw)


def _has_all(directory: Path) -> bool:
    return all(_find_file(directory, stem) for stem in SHA256)


def download(directory: Path) -> None:
    """Download the four files from the first mirror that answers, verifying each."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem in SHA256:
        if _find_file(directory, stem):
            continue
        errors = []
        for mirror in MIRRORS:
            target = directory / f"{stem}.gz"
            tmp = target.with_suffix(".gz.part")
            try:
                with urllib.request.urlopen(f"{mirror}{stem}.gz", timeout=60) as response:
                    tmp.write_bytes(response.read())
                read_verified(tmp.rename(target), stem)
                break
            except (OSError, DataError) as exc:
                errors.append(f"{mirror}: {exc}")
                for leftover in (tmp, target):
                    leftover.unlink(missing_ok=True)
        else:
            raise DataError(f"could not download {stem}: " + "; ".join(errors))


def resolve_data_dir(data_dir: Path | str | None = None, *, allow_download: bool = True) -> Path:
    """Return the directory holding all four files, downloading into the cache if needed."""
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if not _has_all(directory):
            raise DataError(
                f"MNIST not found in --data-dir {directory} (need the four *-ubyte[.gz] files)"
            )
        return directory
    looked = []
    env_dir = os.environ.get(DATA_ENV)
    if env_dir:
        if _has_all(Path(env_dir)):
            return Path(env_dir)
        looked.append(f"{env_dir} ({DATA_ENV})")
    cached = cache_dir() / "mnist"
    if _has_all(cached):
        return cached
    looked.append(f"{cached} (cache)")
    if not allow_download:
        raise DataError(
            f"MNIST not found; looked in {', '.join(looked)}. "
            f"Pass --data-dir DIR or set {DATA_ENV}=DIR to a folder with the four IDX files."
        )
    try:
        download(cached)
    except DataError as exc:
        raise DataError(
            f"MNIST not found in {', '.join(looked)} and the download failed ({exc}). "
            f"Pass --data-dir DIR or set {DATA_ENV}=DIR to a folder with the four IDX files."
        ) from None
    return cached


@lru_cache(maxsize=4)
def _load(directory: Path) -> MNIST:
    arrays = {}
    for stem in SHA256:
        path = _find_file(directory, stem)
        assert path is not None
        arrays[stem] = torch.from_numpy(read_verified(path, stem).copy())
    return MNIST(
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"].long(),
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"].long(),
        source=directory,
    )


def load_mnist(data_dir: Path | str | None = None, *, allow_download: bool = True) -> MNIST:
    """Load (and verify) MNIST; results are memoised per directory within a process."""
    return _load(resolve_data_dir(data_dir, allow_download=allow_download).resolve())


def random_square_inputs(count: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """`count` inputs uniform in [0, 1]^(side x side), shape [count, 1, side, side].

    The parasite's training set (paper Sec. 6.1: 10,000 random inputs of size 16x16).
    """
    return torch.rand(count, 1, side, side, generator=generator)
