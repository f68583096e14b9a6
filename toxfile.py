"""tox's inline plugin (tox loads ``toxfile.py`` from the project root).

An interpreter environment whose Python has no CPU build of the pinned torch among the local
wheels is skipped with a line saying so. On machines that keep torch's CPU wheels in a local
directory (pip's find-links, passed to uv as UV_FIND_LINKS), the package index's torch for any
other interpreter is the CUDA build: a multi-GB download that tox would otherwise start for
py312 or py313. Where the find-links hold no torch wheel at all (a machine that installs torch
from the index as usual), nothing is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename
from packaging.version import Version
from tox.plugin import impl
from tox.tox_env.errors import Skip

ROOT = Path(__file__).resolve().parent


def pinned_torch(constraints: Path = ROOT / "constraints.txt") -> str | None:
    """The torch version constraints.txt pins (`torch==X`), or None."""
    for line in constraints.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if requirement.name == "torch" and pins:
            return pins[0]
    return None


def local_torch_tags(version: str, directories: list[Path]) -> set[str]:
    """The interpreter tags (cp311, ...) of the local wheels of torch VERSION (any local
    label, e.g. 2.13.0+cpu)."""
    tags = set()
    for directory in directories:
        if not directory.is_dir():
            continue
        for wheel in directory.glob("torch-*.whl"):
            _name, found, _build, wheel_tags = parse_wheel_filename(wheel.name)
            if found.public == Version(version).public:
                tags |= {tag.interpreter for tag in wheel_tags}
    return tags


def missing_torch_wheel(python_tag: str, find_links: str) -> str | None:
    """Why an environment for PYTHON_TAG (e.g. cp312) cannot get the pinned CPU torch here, or
    None when it can (or when this machine keeps no local torch wheels)."""
    version = pinned_torch()
    directories = [Path(entry) for entry in find_links.split() if entry]
    tags = local_torch_tags(version, directories) if version else set()
    if not tags or python_tag in tags:
        return None
    return (
        f"no CPU wheel of torch=={version} for {python_tag} in {' '.join(find_links.split())} "
        f"(local wheels: {', '.join(sorted(tags))}); the index's torch is a multi-GB CUDA build"
    )


@impl
def tox_on_install(tox_env: Any, arguments: Any, section: str, of_type: str) -> None:
    """Before an environment installs anything: skip it when its Python has no CPU torch."""
    info = getattr(tox_env, "base_python", None)
    if info is None:  # not a Python environment
        return
    version = info.version_info
    set_env = tox_env.conf["set_env"]
    find_links = (
        set_env.load("UV_FIND_LINKS")
        if "UV_FIND_LINKS" in set_env
        else os.environ.get("UV_FIND_LINKS", "")
    )
    reason = missing_torch_wheel(f"cp{version.major}{version.minor}", find_links)
    if reason:
        raise Skip(reason)
