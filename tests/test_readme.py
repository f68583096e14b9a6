"""The README a newcomer reads: short, every command in it runs, its plugin example works."""

from __future__ import annotations

import re
import shlex
import types
from pathlib import Path

import pandas as pd
import pytest

from .conftest import ROOT, run_cli

README = ROOT / "README.md"


def code_blocks(language: str, text: str | None = None) -> list[str]:
    text = README.read_text() if text is None else text
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def commands() -> list[list[str]]:
    return [
        shlex.split(line)
        for block in code_blocks("bash")
        for line in block.splitlines()
        if line.strip()
    ]


def test_the_readme_is_short() -> None:
    assert len(README.read_text()) <= 10_000


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/install.sh" in ci and ".venv/bin/tox" in ci
    found = {" ".join(c) for c in commands()}
    assert {"bash scripts/install.sh", ".venv/bin/tox"} <= found


def _paraeval_commands() -> list[list[str]]:
    return [c[1:] for c in commands() if c[0] == ".venv/bin/paraeval"]


def test_the_readme_names_its_paraeval_commands() -> None:
    names = [c[0] for c in _paraeval_commands()]
    assert names.count("run") == 4 and {"reproduce", "list", "readings", "inspect"} <= set(names)


@pytest.mark.parametrize("args", _paraeval_commands(), ids=lambda a: " ".join(a))
def test_every_readme_command_is_valid(args: list[str], victims, tmp_path) -> None:
    """The quick start runs for real; the long studies are checked and planned (--dry-run)."""
    if args[0] == "list":
        done = run_cli(*args)
        assert done.returncode == 0 and "init" in done.stdout, done.stderr
        return
    if args[0] == "inspect":
        done = run_cli(*args)
        assert done.returncode == 0 and "conv2" in done.stdout, done.stderr
        return
    quick_start = args == ["run", "--defenses", "none", "--attacks", "fgsm"]
    out = ["--out", str(tmp_path / "run")] if args[0] == "run" and "--out" not in args else []
    extra = [] if quick_start else ["--dry-run"]
    done = run_cli(*args, *out, *extra)
    assert done.returncode == 0, done.stderr
    if quick_start:
        summary = pd.read_csv(tmp_path / "run" / "summary.csv")
        assert set(summary["victim"]) == {"vm", "vm-batch"}
        assert (summary["m_adv_mean"] == 0).all()  # `none` recovers nothing, by definition
    else:
        assert "cell(s) planned" in done.stdout and int(done.stdout.split()[0]) > 0


def test_the_readme_plugin_example_runs(victims, tmp_path) -> None:
    """The 15-line plugin of the README, registered as a plugin, protects and is measured."""
    from paraeval.plugin.manager import load_plugins, pm
    from paraeval.report.outputs import write_outputs
    from paraeval.run.runner import RunConfig, run

    (source,) = code_blocks("python")
    assert len(source.strip().splitlines()) <= 20
    module = types.ModuleType("readme_plugin")
    exec(compile(source, "README.md", "exec"), module.__dict__)
    load_plugins()
    pm.register(module, name="readme_plugin")
    try:
        result = run(
            RunConfig(victims=["vm"], defenses="none,logit-noise", n_images=20, out=tmp_path)
        )
        write_outputs(tmp_path, result.keys)
    finally:
        pm.unregister(module)
    rows = pd.read_csv(tmp_path / "results.csv").set_index("defense")
    assert rows.loc["logit-noise", "status"] == "ok"
    assert rows.loc["logit-noise", "accuracy"] > 90  # small noise on confident logits


def test_the_typed_options_example_of_the_plugin_docs_works() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    source = next(b for b in code_blocks("python", text) if "NoiseOptions" in b)
    namespace: dict[str, object] = {}
    exec(compile(source, "docs/plugins.md", "exec"), namespace)
    defense = namespace["TypedLogitNoise"]()
    assert defense.configure(std="0.3").options.std == 0.3
    with pytest.raises(Exception, match=">= 0"):
        defense.configure(std="-1")


def test_generated_docs_are_current() -> None:
    from paraeval.run.results_page import outputs_page, registered_metric_docs
    from paraeval.study.notes import notes_page

    assert (ROOT / "docs" / "outputs.md").read_text() == outputs_page(registered_metric_docs())
    assert (ROOT / "docs" / "reproduction-notes.md").read_text() == notes_page()


def test_the_installed_venv_has_the_pip_the_readme_tells_users_to_run() -> None:
    """scripts/install.sh seeds pip into the venv it makes: `pip install 'paraeval[dask]'` and a
    plugin's `pip install -e` work in it as written (tox's own environments have none)."""
    import os
    import subprocess

    venv = Path(os.environ.get("PARAEVAL_VENV", ROOT / ".venv"))
    if not (venv / "bin" / "python").exists():
        pytest.skip(f"no venv made by scripts/install.sh at {venv}")
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    assert "--seed" in (ROOT / "scripts" / "install.sh").read_text()


def test_each_reading_option_is_noted_once() -> None:
    from paraeval.study.notes import reading_notes

    questions = [note.question for note in reading_notes()]
    assert len(questions) == len(set(questions))
    assert any("(option whole_site)" in q for q in questions)
