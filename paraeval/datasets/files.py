"""Published dataset files: find them, verify them against the publisher's checksum, download
them (for users; tests never do) from the mirrors in order.

The checksums are the ones the publishers print beside their downloads (MD5 of each
compressed file for Fashion-MNIST, KMNIST and CIFAR-10), so a file is verified as it was
distributed; a folder of decompressed files cannot be checked against them and is not
accepted (MNIST, whose own reader predates this module, checks its decompressed bytes:
:mod:`paraeval.datasets.idx`).
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from paraeval.core.cache import cache_dir
from paraeval.errors import DataError


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, md5: str) -> Path:
    """`path` if its MD5 is the published one, else a DataError naming both."""
    actual = md5_of(path)
    if actual != md5:
        raise DataError(f"corrupt file {path}: md5 {actual}, the publisher's is {md5}")
    return path


def download(url: str, target: Path, md5: str) -> None:
    """Fetch `url` into `target` (through a .part file), verified before it is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            part.write_bytes(response.read())
        verified(part, md5).rename(target)
    except (OSError, DataError):
        part.unlink(missing_ok=True)
        raise


def locate(
    name: str,
    files: dict[str, str],
    mirrors: Sequence[str],
    data_dir: Path | None,
    allow_download: bool,
) -> Path:
    """The folder holding every file of `files` (file name -> md5), verified.

    Looked for in `data_dir` when given (an error if it lacks them: never silently replaced by
    a download), else in ``<cache>/<name>``, downloading the missing files there when allowed.
    """
    if data_dir is not None:
        missing = [file for file in files if not (data_dir / file).is_file()]
        if missing:
            raise DataError(
                f"{name} not found in --data-dir {data_dir} (missing {', '.join(missing)})"
            )
        return _verify_all(data_dir, files)
    folder = cache_dir() / name
    missing = [file for file in files if not (folder / file).is_file()]
    if missing and not allow_download:
        raise DataError(
            f"{name} not found in {folder}; put {', '.join(missing)} there, or pass "
            "--data-dir DIR, or allow downloading"
        )
    for file in missing:
        errors = []
        for mirror in mirrors:
            try:
                download(mirror + file, folder / file, files[file])
                break
            except (OSError, DataError) as exc:
                errors.append(f"{mirror}: {exc}")
        else:
            raise DataError(f"could not download {name}'s {file}: " + "; ".join(errors))
    return _verify_all(folder, files)


def _verify_all(folder: Path, files: dict[str, str]) -> Path:
    for file, md5 in files.items():
        verified(folder / file, md5)
    return folder
