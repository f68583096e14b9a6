"""Resume after SIGKILL, failure isolation, input validation, determinism, sanity warnings."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from paraeval.attacks.fgsm import FGSMSweep
from paraeval.errors import UserError

from .conftest import kill_after_first_cell, run_cli, stored_cells

GRID_DEFENSES = "none,t1-vm-after-nobn-small,t1-vm-after-nobn-none,t1-vm-after-bn-small"
GRID = ["--victims", "vm", "--seeds", "2", "--n-images", "20", "--defenses", GRID_DEFENSES]
GRID_CELLS = 8


def _csv(directory: Path, name: str = "results.csv") -> pd.DataFrame:
    return pd.read_csv(directory / name).drop(columns=["seconds"], errors="ignore")


def test_sigkill_mid_grid_then_resume_equals_uninterrupted_run(victims, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert run_cli("run", *GRID, "--out", str(reference)).returncode == 0

    resumed = tmp_path / "resumed"
    stored_at_kill = kill_after_first_cell(["run", *GRID, "--out", str(resumed)], resumed)
    assert 1 <= stored_at_kill < GRID_CELLS, "the kill must land mid-grid"

    again = run_cli("run", *GRID, "--out", str(resumed))
    assert again.returncode == 0, again.stderr
    assert f"{stored_at_kill} of {GRID_CELLS} cell(s) already stored" in again.stderr
    pd.testing.assert_frame_equal(_csv(resumed), _csv(reference))
    pd.testing.assert_frame_equal(
        _csv(resumed, "prediction_change.csv"), _csv(reference, "prediction_change.csv")
    )
    results = _csv(resumed)
    assert not results.duplicated(["victim", "defense", "attack", "seed"]).any()
    assert stored_cells(resumed) == GRID_CELLS


def test_dynamic_parasite_is_deterministic_given_the_seed(victims, tmp_path: Path) -> None:
    args = ["run", "--victims", "vm", "--defenses", "dynamic-parasite:epochs=1", "--n-images", "20"]
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_cli(*args, "--out", str(first)).returncode == 0
    assert run_cli(*args, "--out", str(second)).returncode == 0
    pd.testing.assert_frame_equal(_csv(first), _csv(second))
    assert _csv(first)["warnings"].isna().all()  # randomness is declared: no warning


def _write_plugin(site: Path, body: str) -> None:
    """A throwaway installed distribution `brokenplug` with a `paraeval` entry point."""
    dist = site / "brokenplug-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[paraeval]\nbrokenplug = brokenplug\n")
    (site / "brokenplug.py").write_text(textwrap.dedent(body))


PLUGIN = """
    import copy, os
    import torch
    from torch import nn
    from paraeval import hookimpl

    class Raises:
        name = "plugin-raises"
        description = "protect() raises unless PLUGIN_OK is set"
        def protect(self, model, *, seed):
            if not os.environ.get("PLUGIN_OK"):
                raise RuntimeError("deliberate failure in protect")
            return copy.deepcopy(model)

    class WrongShape:
        name = "plugin-wrong-shape"
        description = "returns 5 logits"
        def protect(self, model, *, seed):
            return nn.Sequential(copy.deepcopy(model), nn.Linear(10, 5))

    class Mutates(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 10) + x.mul_(0.5).sum()

    class MutatesInput:
        name = "plugin-mutates-input"
        description = "modifies its input in place"
        def protect(self, model, *, seed):
            return Mutates()

    class NaNs:
        name = "plugin-nan"
        description = "returns NaN logits"
        def protect(self, model, *, seed):
            return nn.Sequential(copy.deepcopy(model), nn.Dropout(p=1.0).eval(), _Nan())

    class _Nan(nn.Module):
        def forward(self, x):
            return x * float("nan")

    @hookimpl
    def register_defenses(register):
        for defense in (Raises(), WrongShape(), MutatesInput(), NaNs()):
            register(defense)
"""


def test_failing_plugins_fail_their_cells_only(victims, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _write_plugin(site, PLUGIN)
    env = {"PYTHONPATH": str(site), "PARAEVAL_DISABLE_PLUGIN_AUTOLOAD": ""}
    out = tmp_path / "run"
    defenses = "none,plugin-raises,plugin-wrong-shape,plugin-mutates-input,plugin-nan"
    args = ["run", "--victims", "vm", "--defenses", defenses, "--n-images", "10", "--out", str(out)]
    result = run_cli(*args, env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    named = [line for line in result.stderr.splitlines() if "failed: vm · plugin-raises" in line]
    assert len(named) == 1 and "deliberate failure in protect" in named[0]  # which, and why
    rows = pd.read_csv(out / "results.csv").set_index("defense")
    assert rows.loc["none", "status"] == "ok"
    assert "deliberate failure in protect" in rows.loc["plugin-raises", "error"]
    assert "'plugin-wrong-shape'" in rows.loc["plugin-wrong-shape", "error"]
    assert "(16, 5)" in rows.loc["plugin-wrong-shape", "error"]
    assert "modifies its input" in rows.loc["plugin-mutates-input", "error"]
    assert "NaN" in rows.loc["plugin-nan", "error"]

    kept = run_cli(*args, env={**env, "PLUGIN_OK": "1"})
    assert "5 of 5 cell(s) already stored" in kept.stderr
    assert (
        pd.read_csv(out / "results.csv").set_index("defense").loc["plugin-raises", "status"]
        == "failed"
    )
    retried = run_cli(*args, "--retry-failed", env={**env, "PLUGIN_OK": "1"})
    rows = pd.read_csv(out / "results.csv").set_index("defense")
    assert rows.loc["plugin-raises", "status"] == "ok"
    assert rows.loc["plugin-wrong-shape", "status"] == "failed"
    assert retried.returncode == 1


def test_plugin_that_fails_to_import_is_listed_and_skipped(victims, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _write_plugin(site, "raise ImportError('missing dependency xyz')\n")
    env = {"PYTHONPATH": str(site), "PARAEVAL_DISABLE_PLUGIN_AUTOLOAD": "", "COLUMNS": "250"}
    listed = run_cli("list", "plugins", env=env)
    assert listed.returncode == 0
    assert "brokenplug" in listed.stdout and "missing dependency xyz" in listed.stdout
    out = tmp_path / "run"
    ran = run_cli("run", "--victims", "vm", "--n-images", "10", "--out", str(out), env=env)
    assert ran.returncode == 0 and "plugin brokenplug failed to import" in ran.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "seeds must be"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--attacks", "fgsm:eps_step=1.5"], "must be in (0, 1]"),
        (["--attacks", "fgsm:max_eps=-0.1"], "must be in (0, 1]"),
        (["--attacks", "fgsm:epsilon=0.1"], "unknown option(s) epsilon"),
        (["--victims", "resnet"], "unknown victim(s) resnet"),
        (["--n-images", "0"], "--n-images"),
        (["--out", "/proc/paraeval-cannot-write"], "cannot write to --out"),
    ],
)
def test_bad_cli_values_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    full = ["run", "--out", str(tmp_path / "out"), *args]
    result = run_cli(*full)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_fgsm_accepts_exactly_the_epsilons_in_the_unit_interval(eps: float) -> None:
    valid = 0 < eps <= 1
    try:
        FGSMSweep(eps_step=str(eps), max_eps="1.0")
    except UserError:
        assert not valid
    else:
        assert valid


class _ZeroGradient(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x))  # round has zero gradient almost everywhere


def test_sanity_warnings_flag_masked_gradients_and_undeclared_randomness(victims) -> None:
    from paraeval.plugin.checks import sanity_warnings

    model = victims["vm"][0]
    probe = torch.rand(8, 1, 28, 28)
    labels = torch.zeros(8, dtype=torch.long)
    assert sanity_warnings(copy.deepcopy(model), (), probe, labels) == []
    masked = sanity_warnings(_ZeroGradient(copy.deepcopy(model)), (), probe, labels)
    assert any("zero input gradients" in w for w in masked)
    noisy = nn.Sequential(copy.deepcopy(model), nn.Dropout(0.5).train())
    assert any("not tagged" in w for w in sanity_warnings(noisy, (), probe, labels))
    assert not any(
        "not tagged" in w for w in sanity_warnings(noisy, ("randomized",), probe, labels)
    )
