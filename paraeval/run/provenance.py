"""What produced the numbers: versions, platform, device and commit, stored with every run."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from paraeval.version import __version__


def versions() -> dict[str, str]:
    """Versions of what produced the numbers (stored with every run). Read from the installed
    distributions' metadata, not by importing them (ART's import alone takes ~7 s)."""
    found = {
        "paraeval": __version__,
        "torch": torch.__version__,
        "art": _distribution_version("adversarial-robustness-toolbox"),
        "numpy": _distribution_version("numpy"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torchattacks": _distribution_version("torchattacks"),
    }
    found["device"] = f"cpu ({torch.get_num_threads()} threads, {cpu_model()})"
    if torch.cuda.is_available():  # the GPU a `--device auto|cuda` run computes on
        found["gpu"] = f"cuda ({torch.cuda.get_device_name(0)})"
    found["git_commit"] = _git_commit()
    return found


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    """The commit of the paraeval checkout, when it is one (empty otherwise)."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo's "model name"; platform.processor() is
    empty there), or the architecture when neither says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"
