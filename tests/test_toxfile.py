"""toxfile.py: an interpreter environment without a local CPU torch wheel is skipped with a
line; machines without local torch wheels skip nothing."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toxfile(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """toxfile.py loaded by path, with tox's two names stubbed (tox itself is not a test
    dependency: the dependency-range environments would otherwise test tox's floors)."""
    plugin = types.ModuleType("tox.plugin")
    plugin.impl = lambda function: function
    errors = types.ModuleType("tox.tox_env.errors")
    errors.Skip = type("Skip", (Exception,), {})
    for name, module in {
        "tox": types.ModuleType("tox"),
        "tox.plugin": plugin,
        "tox.tox_env": types.ModuleType("tox.tox_env"),
        "tox.tox_env.errors": errors,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("toxfile_under_test", ROOT / "toxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pinned_torch_is_read_from_the_constraints(toxfile, tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# a comment\nnumpy<3\ntorch==2.13.0  # the CPU wheel\n")
    assert toxfile.pinned_torch(constraints) == "2.13.0"
    constraints.write_text("numpy<3\n")
    assert toxfile.pinned_torch(constraints) is None


def test_an_interpreter_without_a_local_cpu_wheel_is_skipped_with_the_reason(
    toxfile, tmp_path: Path
) -> None:
    version = toxfile.pinned_torch()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / f"torch-{version}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    (wheels / "torch-1.0.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl").touch()  # other version
    assert toxfile.missing_torch_wheel("cp311", str(wheels)) is None
    reason = toxfile.missing_torch_wheel("cp312", f" {wheels}  ")
    assert reason is not None and "cp312" in reason and f"torch=={version}" in reason
    assert "local wheels: cp311)" in reason


def test_a_machine_without_local_torch_wheels_skips_nothing(toxfile, tmp_path: Path) -> None:
    assert toxfile.missing_torch_wheel("cp313", "") is None
    assert toxfile.missing_torch_wheel("cp313", str(tmp_path)) is None
