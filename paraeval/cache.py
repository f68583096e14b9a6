"""The cache directory and atomic, pickle-free weight files.

Weights are stored only as safetensors (never unpickled, so a cache file cannot execute code),
written to a temporary file and renamed into place so that a killed training never leaves a
half-written file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

CACHE_ENV = "PARAEVAL_CACHE_DIR"


def cache_dir() -> Path:
    """`PARAEVAL_CACHE_DIR`, else `~/.cache/paraeval`."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "paraeval"


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable config (sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write `tensors` atomically; `metadata` values are stored as JSON strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {key: json.dumps(value) for key, value in metadata.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors and metadata written by :func:`save_weights`."""
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    return load_file(str(path)), {key: json.loads(value) for key, value in raw.items()}
