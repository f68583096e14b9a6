from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from paraeval.datasets.idx import SHA256, load_mnist, parse_idx, read_verified, resolve_data_dir
from paraeval.errors import DataError

from .conftest import SHARED_MNIST, run_cli


def test_real_mnist_shapes_and_labels(mnist) -> None:
    assert tuple(mnist.train_images.shape) == (60_000, 28, 28)
    assert tuple(mnist.test_images.shape) == (10_000, 28, 28)
    assert sorted(mnist.test_labels.unique().tolist()) == list(range(10))
    assert mnist.test_labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first digits


def test_parse_idx_reads_header_and_rejects_bad_files() -> None:
    raw = bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6))
    assert parse_idx(raw).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="size mismatch"):
        parse_idx(raw[:-1])


def test_raw_and_gzipped_files_read_the_same(tmp_path: Path) -> None:
    stem = "t10k-labels-idx1-ubyte"
    (tmp_path / stem).write_bytes(gzip.decompress((SHARED_MNIST / f"{stem}.gz").read_bytes()))
    raw = read_verified(tmp_path / stem, stem)
    gz = read_verified(SHARED_MNIST / f"{stem}.gz", stem)
    assert (raw == gz).all()


def test_corrupt_file_names_file_and_both_checksums(tmp_path: Path) -> None:
    for path in SHARED_MNIST.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    stem = "t10k-labels-idx1-ubyte"
    data = bytearray(gzip.decompress((tmp_path / f"{stem}.gz").read_bytes()))
    data[100] ^= 0xFF
    (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, allow_download=False)
    message = str(info.value)
    assert f"{stem}.gz" in message and SHA256[stem] in message
    assert "sha256" in message and "expected" in message


def test_missing_data_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAEVAL_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        resolve_data_dir(None, allow_download=False)
    message = str(info.value)
    assert "nowhere" in message and str(tmp_path / "cache" / "mnist") in message
    assert "--data-dir" in message and "PARAEVAL_DATA_DIR" in message


def test_explicit_data_dir_wins_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARAEVAL_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(SHARED_MNIST, allow_download=False) == SHARED_MNIST
    with pytest.raises(DataError, match="--data-dir"):
        resolve_data_dir(tmp_path, allow_download=False)


def test_cli_missing_data_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "MNIST not found" in result.stderr and str(tmp_path) in result.stderr


def test_cli_corrupt_data_exits_2(tmp_path: Path) -> None:
    for path in SHARED_MNIST.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\x00\x00\x08\x01" + bytes(8))
    )
    result = run_cli("run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "corrupt MNIST file" in result.stderr
