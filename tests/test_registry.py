from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from paraeval import hookimpl
from paraeval.errors import SelectionError
from paraeval.plugin.manager import load_plugins, pm
from paraeval.registry import attacks, configured_attacks, defenses, split_selection

from .conftest import run_cli


def names(spec: str) -> list[str]:
    return [entry.name for entry in defenses().select(spec)]


def test_all_selects_every_defense() -> None:
    selected = names("all")
    assert "none" in selected and "dynamic-parasite" in selected
    # none, paper rows, dynamic, mlp parasites, ART's five output defenses, two detectors,
    # the generic parasite
    assert len(selected) == 1 + 12 * 3 + 1 + 12 + 5 + 2 + 1
    assert len(names("mlp")) == 12
    assert set(names("art")) == {
        "reverse-sigmoid",
        "high-confidence",
        "rounded",
        "gaussian-noise",
        "class-labels",
    }
    assert set(names("detector")) == {"prada", "atli-ood"}


def test_tags_select_the_tables() -> None:
    assert len(names("table1")) == 12
    assert len(names("table2")) == 12
    assert len(names("table3")) == 12
    assert set(names("table1,table2")) == set(names("t1-*")) | set(names("t2-*"))


def test_glob_and_exact_names() -> None:
    assert names("t1-vm-*") == [
        "t1-vm-after-nobn-small",
        "t1-vm-after-nobn-none",
        "t1-vm-after-bn-small",
        "t1-vm-after-bn-none",
    ]
    assert names("none,none") == ["none"]


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(SelectionError) as info:
        names("t1-vm-after-bn-smal")
    assert "t1-vm-after-bn-small" in str(info.value) and "Valid:" in str(info.value)
    with pytest.raises(SelectionError, match="no defense matches"):
        names("zzz-*")


def test_cli_unknown_name_exits_2_with_suggestion(tmp_path) -> None:
    result = run_cli("run", "--defenses", "tabel1", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "Did you mean 'table1'" in result.stderr and "Traceback" not in result.stderr


def test_selection_options_attach_to_the_preceding_attack() -> None:
    assert split_selection("fgsm:backend=torchattacks,eps_step=0.1,none") == [
        ("fgsm", {"backend": "torchattacks", "eps_step": "0.1"}),
        ("none", {}),
    ]
    with pytest.raises(SelectionError):
        split_selection("eps=0.1")
    with pytest.raises(SelectionError):
        split_selection(" , ")


@given(st.lists(st.from_regex(r"[a-z][a-z0-9\-]{0,8}", fullmatch=True), min_size=1, max_size=5))
def test_split_selection_round_trips_plain_names(items: list[str]) -> None:
    assert [name for name, _ in split_selection(",".join(items))] == items


def test_attack_options_are_validated() -> None:
    [fgsm] = configured_attacks("fgsm:eps_step=0.1")
    assert fgsm.obj.options.eps_step == 0.1
    assert fgsm.obj.epsilons()[:2] == [0.1, 0.2] and fgsm.obj.epsilons()[-1] == 1.0
    with pytest.raises(Exception, match="valid: backend"):
        configured_attacks("fgsm:steps=3")
    with pytest.raises(Exception, match=r"one of art\|torchattacks"):
        configured_attacks("fgsm:backend=cleverhans")


class Negate:
    name = "test-negated-logits"
    description = "<b>test</b> defense: negates the logits"
    tags = ("testing",)

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return nn.Sequential(copy.deepcopy(model), _Neg()).eval()


class _Neg(nn.Module):
    def forward(self, x):
        return -x


class ThrowawayPlugin:
    __name__ = "throwaway"

    @hookimpl
    def register_defenses(self, register):
        register(Negate())


def test_a_registered_plugin_is_listed_and_runs(victims, tmp_path) -> None:
    from typer.testing import CliRunner

    from paraeval.cli.main import app

    load_plugins()
    plugin = ThrowawayPlugin()
    pm.register(plugin, name="throwaway")
    try:
        runner = CliRunner()
        listed = runner.invoke(app, ["list", "defenses"], env={"COLUMNS": "250"})
        assert listed.exit_code == 0 and "test-negated-logits" in listed.output
        assert "(registered in code)" in listed.output
        out = tmp_path / "run"
        ran = runner.invoke(
            app,
            [
                "run",
                "--victims",
                "vm",
                "--defenses",
                "testing",
                "--n-images",
                "20",
                "--out",
                str(out),
            ],
        )
        assert ran.exit_code == 0, ran.output
        import pandas as pd

        row = pd.read_csv(out / "results.csv").iloc[0]
        assert row["defense"] == "test-negated-logits" and row["status"] == "ok"
        assert row["accuracy"] < 5  # negated logits pick the least likely class
    finally:
        pm.unregister(plugin)
    assert "test-negated-logits" not in names("all")


def test_duplicate_names_name_both_plugins() -> None:
    load_plugins()

    class Twin:
        __name__ = "twin-plugin"

        @hookimpl
        def register_defenses(self, register):
            from paraeval.defenses.none import NoDefense

            register(NoDefense())

    twin = Twin()
    pm.register(twin, name="twin-plugin")
    try:
        with pytest.raises(SelectionError) as info:
            defenses()
        assert "duplicate defense name 'none'" in str(info.value)
        assert "built-in" in str(info.value) and "twin-plugin" in str(info.value)
    finally:
        pm.unregister(twin)


def test_an_option_value_may_contain_a_colon() -> None:
    assert split_selection("parasite:layer=conv2,neurons=first:256,none") == [
        ("parasite", {"layer": "conv2", "neurons": "first:256"}),
        ("none", {}),
    ]


def test_no_tag_shadows_a_name() -> None:
    """A name wins over a tag in a selection: a tag equal to a name would select one plugin
    where the user meant the group (it happened once: the tag `parasite`)."""
    for registry in (defenses(), attacks()):
        assert not set(registry.entries) & registry.tags()
