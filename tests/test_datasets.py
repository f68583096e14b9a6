"""Datasets as plugins: the bundled digits, and the readers of published files (IDX and
CIFAR-10 binary) checked on small files built here - verified by checksum, never downloaded in
a test, never unpickled."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from paraeval.datasets import DatasetBase, Splits, check_splits
from paraeval.datasets.builtin import IDX_STEMS, Cifar10, IdxDataset
from paraeval.errors import DataError
from paraeval.run.lookup import load_dataset


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_digits_is_split_by_position_and_scaled_to_the_unit_interval() -> None:
    digits = load_dataset("digits")
    assert digits.train_images.shape == (1297, 1, 8, 8) and digits.test_images.shape == (
        500,
        1,
        8,
        8,
    )
    assert float(digits.train_images.min()) == 0.0 and float(digits.train_images.max()) == 1.0
    assert set(digits.test_labels.tolist()) == set(range(10))


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


@pytest.fixture
def idx_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (6, 28, 28)),
        rng.integers(0, 10, 6),
        rng.integers(0, 256, (4, 28, 28)),
        rng.integers(0, 10, 4),
    ]
    md5 = {}
    for stem, array in zip(IDX_STEMS, arrays, strict=True):
        path = tmp_path / f"{stem}.gz"
        path.write_bytes(_idx(array))
        md5[stem] = _md5(path)
    return tmp_path, md5


def test_an_idx_dataset_reads_the_published_files_checked_by_md5(idx_folder) -> None:
    folder, md5 = idx_folder
    toy = IdxDataset("toy", "a toy IDX dataset", md5, ("https://example.invalid/",))
    splits = check_splits(toy, toy.load(folder, allow_download=False))
    assert splits.train_images.shape == (6, 1, 28, 28) and splits.test_labels.shape == (4,)
    raw = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    first_pixel = raw[16]  # after the 16-byte header
    assert float(splits.test_images[0, 0, 0, 0]) == pytest.approx(first_pixel / 255.0, abs=1e-7)


def test_a_file_that_does_not_match_its_checksum_is_refused(idx_folder) -> None:
    folder, md5 = idx_folder
    toy = IdxDataset("toy", "a toy IDX dataset", {**md5, IDX_STEMS[0]: "0" * 32}, ())
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte\.gz: md5 .* the publisher's is 0+"
    ):
        toy.load(folder, allow_download=False)


def test_missing_files_without_downloading_say_where_to_put_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"fashion-mnist not found in .*fashion-mnist; put "):
        load_dataset("fashion-mnist", allow_download=False)
    with pytest.raises(DataError, match="kmnist not found in --data-dir"):
        load_dataset("kmnist", tmp_path, allow_download=False)


def test_cifar10_reads_the_binary_records_from_the_archive(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def batch(count: int) -> bytes:
        records = np.zeros((count, 3073), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, count)
        records[:, 1:] = rng.integers(0, 256, (count, 3072))
        return records.tobytes()

    members = {name: batch(2) for name in (*Cifar10.TRAIN_MEMBERS, *Cifar10.TEST_MEMBERS)}
    archive = tmp_path / Cifar10.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cifar = Cifar10()
    cifar.MD5 = _md5(archive)
    splits = check_splits(cifar, cifar.load(tmp_path, allow_download=False))
    assert splits.train_images.shape == (10, 3, 32, 32) and splits.test_images.shape == (
        2,
        3,
        32,
        32,
    )
    test = np.frombuffer(members[Cifar10.TEST_MEMBERS[0]], dtype=np.uint8).reshape(2, 3073)
    assert int(splits.test_labels[1]) == int(test[1, 0])
    red, green = test[1, 1:1025].reshape(32, 32), test[1, 1025:2049].reshape(32, 32)
    for plane, pixels in ((0, red), (1, green)):  # R, G, B planes, row-major
        assert torch.equal(
            splits.test_images[1, plane], torch.from_numpy(pixels.astype(np.float32)) / 255.0
        )


class _Broken(DatasetBase):
    name = "broken"
    description = "labels outside its classes"
    input_shape = (1, 2, 2)
    classes = 3

    def load(self, data_dir=None, *, allow_download=True) -> Splits:
        images = torch.zeros(4, 1, 2, 2)
        return Splits(images, torch.tensor([0, 1, 2, 3]), images, torch.tensor([0, 1, 2, 2]), "-")


def test_splits_that_break_the_declaration_are_a_data_error() -> None:
    with pytest.raises(DataError, match=r"'broken', train split: labels outside 0\.\.2"):
        check_splits(_Broken(), _Broken().load())
