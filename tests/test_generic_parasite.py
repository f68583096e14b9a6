"""The generic `parasite` defense: any layer by name, checked against the victim, and
`paraeval inspect` listing what fits where."""

from __future__ import annotations

import pytest
import torch

from paraeval import registry
from paraeval.api import RunContext
from paraeval.datasets.idx import MNIST
from paraeval.errors import UserError

from .conftest import run_cli

#: One epoch per parasite: these tests check placement and errors, not fit.
QUICK = "epochs=1"


def _parasite(spec: str, mnist):
    (entry,) = registry.configured_defenses(f"parasite:{spec},{QUICK}")
    context = RunContext(MNIST.as_float(mnist.train_images), train_labels=mnist.train_labels)
    return entry.obj.bind(context)


def test_the_parasite_rewrites_only_the_neurons_it_reads(victims, mnist) -> None:
    victim = victims["vm"][0]
    protected = _parasite("layer=act2,neurons=first:256,sigma=0.3", mnist).protect(victim, seed=0)
    captured = {}
    victim.act2.register_forward_hook(lambda _m, _i, out: captured.__setitem__("victim", out))
    protected.model.act2.register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("ours", out)
    )
    images = MNIST.as_float(mnist.test_images[:8])
    with torch.no_grad():
        victim(images), protected.model(images)
    before, after = captured["victim"].flatten(1), captured["ours"].flatten(1)
    assert not torch.allclose(before[:, :256], after[:, :256])  # the parasite's output
    assert torch.equal(before[:, 256:], after[:, 256:])  # every other neuron untouched
    assert protected.parasite_fits[0]["parasite"].startswith("act2 output, first 256")


def test_whole_layer_per_channel_map(victims, mnist) -> None:
    victim = victims["vm"][0]
    defense = _parasite("layer=conv1,neurons=whole,bn=yes,bias=small", mnist)
    configs = defense.parasite_configs(victim, seed=0)  # the default's candidates
    assert len(configs) == defense.options.select
    for config in configs:
        assert (config.side, config.batch_norm, config.bias) == (28, True, "small")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("layer=conv9", "has no layer 'conv9'; layers: conv1, bn1"),
        (
            "layer=fc1,neurons=whole",
            "needs square maps (or a square neuron count); fc1 outputs 120",
        ),
        ("layer=pool2,neurons=first:441", "pool2 has 400 neurons (16x5x5), fewer than"),
    ],
)
def test_a_layer_the_victim_cannot_take_is_a_user_error(spec, message, victims, mnist) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _parasite(spec, mnist).parasite_configs(victims["vm"][0], seed=0)


def test_options_are_in_the_key_except_the_paper_rows_placements() -> None:
    (a,) = registry.configured_defenses("parasite:layer=conv2")
    (b,) = registry.configured_defenses("parasite:layer=act2")
    assert a.obj.key_options() != b.obj.key_options()
    assert "pool" not in a.obj.key_options() and "row12" not in a.obj.key_options()
    with pytest.raises(Exception, match="N a square"):
        registry.configured_defenses("parasite:neurons=first:250")


def test_cli_inspect_and_a_bad_layer_exit_codes(tmp_path) -> None:
    listed = run_cli("inspect", "vm", "--format", "csv")
    assert listed.returncode == 0
    assert 'conv2,Conv2d,16x10x10,1600,"whole (16 maps of 10x10)' in listed.stdout
    bad = run_cli(
        "run", "--victims", "vm", "--defenses", "parasite:layer=conv9", "--out", str(tmp_path)
    )
    assert bad.returncode == 2 and "vm has no layer 'conv9' (paraeval inspect vm)" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert run_cli("inspect", "nope").returncode == 2


def test_a_parasite_run_end_to_end(victims, tmp_path) -> None:
    from paraeval.run.runner import RunConfig, run

    config = RunConfig(
        victims=["vm"],
        defenses=f"parasite:layer=act2,{QUICK}",
        attacks="fgsm",
        n_images=20,
        out=tmp_path,
    )
    (row,) = run(config).rows
    assert row["status"] == "ok" and row["m_adv"] is not None and row["accuracy"] > 90


def test_all_on_a_victim_without_the_layer_skips_it_with_a_note() -> None:
    from paraeval.run.runner import RunConfig, plan, validate

    config = RunConfig(victims=["mlp"], defenses="all", attacks="fgsm")
    cells, notes = plan(config, validate(config))
    assert cells and not any(cell.defense.name == "parasite" for cell in cells)
    assert "skipped parasite on mlp: mlp has no layer 'conv2' (paraeval inspect mlp)" in notes


def test_list_victims_shows_dataset_parameters_and_cached_accuracy(victims) -> None:
    from paraeval.cli.listing import victim_rows

    columns, rows = victim_rows()
    by_name = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    vm = by_name["vm"]
    assert vm["dataset"] == "mnist" and vm["parameters"] == 61706  # LeNet-5 on 28x28
    assert float(vm["cached accuracy (%)"]) == pytest.approx(
        victims["vm"][1]["test_accuracy"], abs=0.01
    )
