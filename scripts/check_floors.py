"""Check that an environment built with uv's `--resolution lowest-direct` installed every direct
dependency at exactly the floor pyproject.toml declares (tox -e py311-lowest runs it first), so
that a floor the matrix does not test cannot stand in pyproject.toml unnoticed.

    python scripts/check_floors.py [--extra test]

torch is exempt: every environment takes the machine's one CPU wheel (constraints.txt).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: Pinned by constraints.txt in every environment, whatever the floor says.
EXEMPT = {"torch"}


def floors(pyproject: Path, extras: list[str]) -> dict[str, Version]:
    """Each direct dependency's declared floor (`name>=X`), the chosen extras' included."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    found = {}
    for text in requirements:
        requirement = Requirement(text)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if lower and requirement.name != project["name"]:
            found[canonicalize_name(requirement.name)] = Version(lower[0])
    return found


def mismatches(declared: dict[str, Version]) -> list[str]:
    """One line per dependency installed at another version than its floor."""
    lines = []
    for name, floor in sorted(declared.items()):
        if name in EXEMPT:
            continue
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            lines.append(f"{name}: not installed (floor {floor})")
            continue
        if Version(installed.base_version) != floor:
            lines.append(f"{name}: installed {installed}, declared floor {floor}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", action="append", default=[], help="an extra to include")
    args = parser.parse_args()
    declared = floors(ROOT / "pyproject.toml", args.extra)
    wrong = mismatches(declared)
    for line in wrong:
        print(f"error: {line}", file=sys.stderr)
    if not wrong:
        print(f"{len(declared) - len(EXEMPT & set(declared))} direct dependencies at their floors")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
