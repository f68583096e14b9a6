"""scripts/check_floors.py: tox's lowest environment fails when a direct dependency is not
installed at the floor pyproject.toml declares."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_floors", ROOT / "scripts/check_floors.py")
assert _spec and _spec.loader
check_floors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_floors)


def test_floors_read_the_dependencies_and_the_chosen_extras_only(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "demo"\ndependencies = ["numpy>=1.26", "dask[distributed]>=2024.1",'
        ' "rich"]\n[project.optional-dependencies]\ntest = ["pytest>=8", "demo[extra]"]\n'
        'lint = ["ruff>=0.6"]\n'
    )
    assert check_floors.floors(pyproject, ["test"]) == {
        "numpy": Version("1.26"),
        "dask": Version("2024.1"),
        "pytest": Version("8"),
    }


def test_a_dependency_above_its_floor_is_named_and_torch_is_exempt() -> None:
    installed = Version(metadata.version("pytest"))
    assert check_floors.mismatches({"pytest": installed, "torch": Version("0.1")}) == []
    assert check_floors.mismatches({"pytest": Version("1.0")}) == [
        f"pytest: installed {installed}, declared floor 1.0"
    ]
    assert check_floors.mismatches({"no-such-package-here": Version("1")}) == [
        "no-such-package-here: not installed (floor 1)"
    ]


def test_every_declared_floor_is_a_lower_bound_the_parser_reads() -> None:
    """Each of paraeval's dependencies carries a `>=` floor (so the lowest env tests it)."""
    declared = check_floors.floors(ROOT / "pyproject.toml", ["test"])
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {Requirement(text).name.lower() for text in project["dependencies"]}
    assert names <= set(declared), names - set(declared)
