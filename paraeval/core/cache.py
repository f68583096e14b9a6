"""The cache directory and atomic, pickle-free weight files.

Weights are stored only as safetensors (never unpickled, so a cache file cannot execute code),
written to a temporary file and renamed into place so that a killed training never leaves a
half-written file that a later run would trust. A file that is damaged anyway (a full disk, a
bad copy) is reported in one line, moved aside as ``*.corrupt`` and retrained
(:func:`load_or_none`); `paraeval cache list|verify|clear` shows and checks the entries.
Two runs sharing the cache never train the same entry twice: whoever trains a missing entry
holds its lock (:func:`entry_lock`), and the other waits for the file.

Where: ``PARAEVAL_CACHE_DIR``, else the platform's user cache folder (``$XDG_CACHE_HOME/paraeval``
or ``~/.cache/paraeval`` on Linux, via platformdirs).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import filelock
import platformdirs
import torch
from safetensors.torch import load_file, safe_open, save_file

T = TypeVar("T")
#: The kinds of entries, one folder each.
KINDS = ("victims", "parasites")

CACHE_ENV = "PARAEVAL_CACHE_DIR"


def cache_dir() -> Path:
    """`PARAEVAL_CACHE_DIR`, else the user cache folder (honours `XDG_CACHE_HOME`)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("paraeval", appauthor=False))


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable config (sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


#: The metadata key of an entry's tensor digest (entries written before it have none).
DIGEST_KEY = "__tensor_sha256__"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: a flipped bit
    anywhere in the weights changes it (safetensors' own header check does not see that)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.reshape(-1)  # a 0-d tensor (a BN's batch count) cannot be viewed as bytes
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write `tensors` atomically with their digest; `metadata` values are stored as JSON
    strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {key: json.dumps(value) for key, value in metadata.items()}
    meta[DIGEST_KEY] = json.dumps(tensor_digest(tensors))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def install_entry(path: Path, data: bytes) -> None:
    """Put a cache file that another machine trained (an executor's worker) at `path`,
    atomically; an entry already there is kept (same key, same content)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def entry_lock(path: Path) -> filelock.BaseFileLock:
    """The lock a run holds while it trains the entry `path` (``<path>.lock``, beside it).

    Two runs on one cache (two terminals, a local run beside a Dask one, two CI jobs) would
    otherwise both train a missing parasite or victim: minutes of identical work each. The
    second waits on the lock and then reads the first's file. It is an OS lock (``flock``, or
    ``LockFileEx`` on Windows, through filelock), so a killed run frees it at once and the
    waiting run then trains the entry itself. Lock files are empty and stay (deleting one
    another run holds would let a third run in).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(f"{path}.lock")


def claim(path: Path, held: ExitStack) -> bool:
    """Take `path`'s lock without waiting, held until `held` closes; False when another run
    holds it (it is training that entry)."""
    lock = entry_lock(path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return False
    held.callback(lock.release)
    return True


def held_elsewhere(path: Path) -> bool:
    """Whether another run holds `path`'s lock now: a hint for ordering work, not a claim."""
    with ExitStack() as probe:
        return not claim(path, probe)


class DigestMismatch(ValueError):
    """An entry's tensors are not the ones it was written with."""


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors and metadata written by :func:`save_weights`, checking the tensors against
    their recorded digest (a DigestMismatch when they differ; entries written before digests
    existed have none to check)."""
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    meta = {key: json.loads(value) for key, value in raw.items()}
    tensors = load_file(str(path))
    recorded = meta.pop(DIGEST_KEY, None)
    if recorded is not None and tensor_digest(tensors) != recorded:
        raise DigestMismatch("its tensors do not match the digest recorded when it was written")
    return tensors, meta


def load_or_none(
    path: Path, build: Callable[[dict[str, torch.Tensor], dict[str, Any]], T]
) -> T | None:
    """`build(tensors, metadata)` from the entry at `path`; None when there is none, or when it
    cannot be read or built (then it is reported, moved aside and the caller retrains)."""
    if not path.exists():
        return None
    try:
        return build(*load_weights(path))
    except Exception as exc:  # any damage: truncated header, missing tensor, wrong shape
        aside = set_aside(path)
        print(
            f"warning: cached {path.parent.name[:-1]} {path.name} is unreadable "
            f"({type(exc).__name__}: {str(exc)[:120]}); moved to {aside.name}, retraining",
            file=sys.stderr,
        )
        return None


def set_aside(path: Path) -> Path:
    """Rename a damaged entry to ``*.corrupt`` (kept for inspection, never loaded)."""
    aside = path.with_suffix(".corrupt")
    os.replace(path, aside)
    return aside


@dataclass(frozen=True)
class Entry:
    """One cached file: its kind, path, size and what it is (from its metadata)."""

    kind: str
    path: Path
    size: int
    what: str


def entries(root: Path | None = None) -> Iterator[Entry]:
    """Every cached weight file, victims first."""
    root = root or cache_dir()
    for kind in KINDS:
        for path in sorted((root / kind).glob("*.safetensors")):
            yield Entry(kind, path, path.stat().st_size, _describe(path))


def _describe(path: Path) -> str:
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception as exc:
        return f"unreadable: {type(exc).__name__}"
    config = json.loads(meta.get("config", "{}"))
    shown = ("name", "seed", "batch_norm", "bias", "sigma", "side", "init", "lr")
    return ", ".join(f"{k}={config[k]}" for k in shown if k in config) or "(no config)"


def verify(path: Path) -> str | None:
    """None if the entry loads completely, else why not."""
    try:
        load_weights(path)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return None
