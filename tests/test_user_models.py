"""A user's own model and data: a model file and weights, a module object through
`paraeval.evaluate`, datasets and victims as plugins, the paper rows as parasite presets, and
one line with exit code 2 for every mistake a user can make."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from paraeval import registry
from paraeval.errors import UserError
from paraeval.run.lookup import load_dataset

from .conftest import ROOT, run_cli

NET = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        """A user's CNN for 8x8 digits, written without paraeval in mind."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.act1 = nn.ReLU()
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.act2 = nn.ReLU()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, 10))

        def forward(self, x):
            return self.head(self.act2(self.conv2(self.act1(self.conv1(x)))))
''')


def _train(model: nn.Module, steps: int = 300) -> nn.Module:
    """A few hundred Adam steps on the digits training split (the user's own training)."""
    data = load_dataset("digits")
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(steps):
        batch = torch.randint(0, len(data.train_images), (64,), generator=generator)
        loss = nn.functional.cross_entropy(
            model(data.train_images[batch]), data.train_labels[batch]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def user_model(tmp_path_factory) -> tuple[Path, Path, nn.Module]:
    """net.py and net.safetensors as a user would have them, and the trained module."""
    folder = tmp_path_factory.mktemp("user")
    source = folder / "net.py"
    source.write_text(NET)
    namespace: dict = {}
    exec(compile(NET, str(source), "exec"), namespace)
    torch.manual_seed(0)
    model = _train(namespace["Net"]())
    weights = folder / "net.safetensors"
    save_file(model.state_dict(), str(weights))
    return source, weights, model


def test_a_model_file_with_weights_is_protected_by_layer_name_and_attacked(user_model, tmp_path):
    source, weights, model = user_model
    out = tmp_path / "run"
    result = run_cli(
        "run",
        "--model",
        f"{source}:Net",
        "--weights",
        str(weights),
        "--dataset",
        "digits",
        "--defenses",
        "none,parasite:layer=conv2,neurons=first:256",
        "--attacks",
        "fgsm,critical-points",
        "--n-images",
        "100",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and (results["status"] == "ok").all(), results["error"].tolist()
    assert set(results["victim"]) == {"Net"} and set(results["dataset"]) == {"digits"}
    assert "<td>Net</td><td>digits</td>" in (out / "report.html").read_text()
    # the weights were used as given: the victim's accuracy is the trained model's
    data = load_dataset("digits")
    with torch.no_grad():
        expected = 100.0 * float(
            (model(data.test_images).argmax(1) == data.test_labels).double().mean()
        )
    assert results["victim_accuracy"].iloc[0] == pytest.approx(expected, abs=1e-3)
    fgsm = results[results["attack"] == "fgsm"].set_index("defense")
    assert fgsm.loc["none", "m_adv"] == 0.0  # the unprotected model recovers nothing
    assert fgsm.loc["parasite:layer=conv2,neurons=first:256", "n_adversarial"] > 0
    points = results[results["attack"] == "critical-points"].set_index("defense")
    # the first layer is found without the model declaring it: the undefended model's
    # critical points lie on conv1's hyperplanes more often than the protected model's
    assert points.loc["none", "cp_points_per_line"] > 0
    assert (
        points.loc["none", "cp_precision"]
        > points.loc["parasite:layer=conv2,neurons=first:256", "cp_precision"]
    )


def test_the_python_api_takes_a_module_object(user_model, tmp_path) -> None:
    from paraeval import evaluate

    _source, _weights, model = user_model
    result = evaluate(
        model,
        dataset="digits",
        defenses="none,parasite:layer=act1,neurons=whole",
        attacks="fgsm",
        out=tmp_path / "api",
        n_images=50,
        name="mine",
    )
    frame = pd.read_csv(tmp_path / "api" / "results.csv")
    assert result.ok == 2 and set(frame["victim"]) == {"mine"}
    assert set(frame["dataset"]) == {"digits"}
    assert frame.set_index("defense").loc["parasite:layer=act1,neurons=whole", "accuracy"] > 50
    from paraeval.run.lookup import victims

    assert "mine" not in victims()  # the module belonged to its run: nothing left registered


def test_a_victim_config_built_by_name_alone_says_how_to_build_it() -> None:
    from paraeval.training.victims import VictimConfig, load_or_train_victim

    with pytest.raises(UserError, match=r"VictimConfig\.of\(victim, dataset\)"):
        load_or_train_victim(VictimConfig("vm"), None)  # type: ignore[arg-type]


def test_a_normalized_fgsm_step_on_digits_is_in_digits_units(user_model, tmp_path) -> None:
    """The run binds the attack to its dataset: eps_unit=normalized steps by the digits'
    training pixels' std (they declare none), not MNIST's 0.3081."""
    from paraeval import evaluate
    from paraeval.run.store import Store

    _source, _weights, model = user_model
    result = evaluate(
        model,
        dataset="digits",
        attacks="fgsm:eps_unit=normalized",
        out=tmp_path,
        n_images=50,
        write=False,
    )
    assert result.ok == 1
    unit = 0.05 * float(load_dataset("digits").train_images.double().std())
    assert abs(unit - 0.05 * 0.3081) > 0.002  # the test tells the two apart
    with Store(tmp_path) as store:
        (key,) = result.keys
        epsilons = [s["epsilon"] for s in store.samples(key) if s["epsilon"] is not None]
    steps = [eps / unit for eps in epsilons]
    assert steps and all(abs(step - round(step)) < 1e-6 for step in steps)


def test_a_remote_worker_gets_the_model_file_and_computes_the_same_cell(
    user_model, tmp_path, monkeypatch
) -> None:
    """A Dask worker on another machine has neither net.py nor its weights: the run ships
    them with each task; the worker imports the copy and computes what this process does."""
    from paraeval.run import groups
    from paraeval.run.dispatch import Dispatch
    from paraeval.run.executors import RunExecutor, parse_executor
    from paraeval.run.runner import RunConfig, _load_data, _setup, plan, validate

    source, weights, model = user_model
    folder = tmp_path / "user"
    folder.mkdir()
    for path in (source, weights):
        (folder / path.name).write_bytes(path.read_bytes())
    config = RunConfig(
        model=f"{folder / source.name}:Net",
        weights=folder / weights.name,
        dataset="digits",
        attacks="fgsm",
        n_images=20,
        out=tmp_path / "run",
        victims=[],
    )
    resolved = validate(config)
    cells, _ = plan(config, resolved)
    executor = RunExecutor(parse_executor("dask"), shares_cache=False)
    setup = _setup(config, _load_data(config, resolved), executor, resolved)
    worker = groups.Worker(
        setup, defenses=resolved.defenses, attacks=resolved.attacks, victims=resolved.victims
    )
    remote = Dispatch(setup, executor, {"Net": model}, worker)
    (task,) = remote.tasks({("Net", "none", 0): cells}, _NoClaims(), "me")
    shipped = {Path(path).name for path, _ in task.artifacts if path.startswith("models/")}
    assert shipped == {"net.py", "net.safetensors"}
    (expected,) = worker.run(task)

    folder.rename(tmp_path / "elsewhere")  # the worker's machine has no such folder
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path / "worker-cache"))
    monkeypatch.setattr(groups, "_worker", None)  # a fresh process: it resolves the model file
    (outcome,) = groups.run_task(task)
    assert outcome[0] == expected[0] and outcome[1]["status"] == "ok", outcome[1].get("error")
    assert {k: v for k, v in outcome[1].items() if k != "seconds"} == {
        k: v for k, v in expected[1].items() if k != "seconds"
    }
    assert outcome[2] == expected[2]


class _NoClaims:
    def claim(self, keys: list[str], owner: str) -> list[str]:
        return keys


def test_unsupported_plugins_are_skipped_with_one_note(user_model, tmp_path) -> None:
    source, weights, _model = user_model
    result = run_cli(
        "run",
        "--model",
        f"{source}:Net",
        "--weights",
        str(weights),
        "--dataset",
        "digits",
        "--defenses",
        "none,prada,atli-ood",
        "--attacks",
        "fgsm,knockoff,query-streams",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "need 1x28x28 inputs" in line]
    assert len(notes) == 1, result.stderr
    for name in ("knockoff", "query-streams", "prada", "atli-ood"):
        assert name in notes[0]
    assert "1 cell" in result.stdout + result.stderr  # none x fgsm only


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("syntax", "--model: importing"),
        ("class", "defines no nn.Module class 'Nett'; it defines: Net"),
        ("weights", "do not match Net: missing: conv1.weight"),
        ("layer", "has no layer 'conv9'"),
        ("shape", "head.1 has 10 neurons"),
        ("dataset", "the model fails on mnist's inputs [2, 1, 28, 28]"),
    ],
)
def test_each_user_mistake_is_one_line_and_exit_code_2(what, message, user_model, tmp_path):
    source, weights, _model = user_model
    model, dataset, defense = f"{source}:Net", "digits", "none"
    if what == "syntax":
        model = f"{_write(tmp_path, 'bad.py', 'class Net(:')}:Net"
    elif what == "class":
        model = f"{source}:Nett"
    elif what == "weights":
        other = tmp_path / "other.safetensors"
        save_file({"fc.weight": torch.zeros(10, 64)}, str(other))
        weights = other
    elif what == "layer":
        defense = "parasite:layer=conv9"
    elif what == "shape":
        defense = "parasite:layer=head.1,neurons=first:16"
    elif what == "dataset":
        dataset = "mnist"
    result = run_cli(
        "run",
        "--model",
        model,
        "--weights",
        str(weights),
        "--dataset",
        dataset,
        "--defenses",
        defense,
        "--attacks",
        "fgsm",
        "--n-images",
        "10",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_inspect_lists_a_model_files_layers_on_its_dataset(user_model) -> None:
    source, _weights, _model = user_model
    result = run_cli("inspect", f"{source}:Net", "--dataset", "digits", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = {line.split(",")[0]: line for line in result.stdout.splitlines()[1:]}
    assert rows["conv2"].split(",")[2] == "16x8x8" and rows["head.1"].split(",")[2] == "10"


def test_the_paper_rows_are_presets_of_the_generic_parasite(victims) -> None:
    """Each Table 1 row is the generic `parasite` at the row's layer (same class, same
    placement, same training configs once the seed stream is the table's)."""
    from paraeval.defenses.generic import GenericParasite

    victim = victims["vm"][0]
    rows = [entry.obj for entry in registry.configured_defenses("table1")]
    assert rows and all(isinstance(row, GenericParasite) for row in rows)
    for row in rows:
        if row.victims != ("vm",):
            continue
        (spec,) = row.specs
        placement = spec.placement
        neurons = (
            "whole" if placement.neurons == "whole" else f"{placement.neurons}:{placement.count}"
        )
        given = (
            f"parasite:layer={placement.site(victim)},neurons={neurons},"
            f"bn={'yes' if spec.batch_norm else 'no'},bias={spec.bias},sigma={spec.sigma}"
        )
        (generic,) = registry.configured_defenses(given)
        preset_configs = row.parasite_configs(victim, seed=3)
        generic_configs = generic.obj.parasite_configs(victim, seed=3)
        assert [c.__dict__ | {"seed": 0} for c in preset_configs] == [
            c.__dict__ | {"seed": 0} for c in generic_configs
        ], row.name
        assert generic.obj.placed(victim)[0].placement.site(victim) == placement.site(victim)


def test_after_activation_finds_the_activation_past_the_normalisation(victims) -> None:
    """`position=after-activation` on vm-batch's conv2 is act2 (past bn2): the paper's
    'after BN and activation' without naming the activation."""
    victim = victims["vm-batch"][0]
    (entry,) = registry.configured_defenses("parasite:layer=conv2,position=after-activation")
    (spec,) = entry.obj.placed(victim)
    assert spec.placement.module == "act2"
    (plain,) = registry.configured_defenses("parasite:layer=conv2")
    assert plain.obj.placed(victim)[0].placement.module == "conv2"
    assert "position" not in plain.obj.key_options()  # the default leaves keys as they were
    (last,) = registry.configured_defenses("parasite:layer=fc3,position=after-activation")
    with pytest.raises(UserError, match="no activation module runs after 'fc3'"):
        last.obj.placed(victim)


def test_missing_victims_train_side_by_side_and_equal_those_trained_inline(tmp_path) -> None:
    """Two missing victims (a registered one and a model file) train in two worker processes;
    each equals the victim this process trains for the same config."""
    from safetensors.torch import load_file

    from paraeval.models.victim_base import Recipe
    from paraeval.run.lookup import victim_config
    from paraeval.training.victims import train_victim, victim_path

    source = tmp_path / "net.py"
    source.write_text(NET)
    cache = tmp_path / "cache"
    done = run_cli(
        "run",
        "--victims",
        "mlp",
        "--model",
        f"{source}:Net",
        "--dataset",
        "digits",
        "--defenses",
        "none",
        "--attacks",
        "fgsm",
        "--seeds",
        "1",
        "--n-images",
        "20",
        "--out",
        str(tmp_path / "out"),
        env={"PARAEVAL_CACHE_DIR": str(cache)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = victim_config("mlp")
    # every epoch of both workers reached the run's bar (the model file's recipe is scaled)
    epochs = config.epochs + Recipe(scale_to_dataset=True).scaled(1_297).epochs
    assert f"training victims (2, epochs): {epochs}/{epochs}" in done.stderr
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 2
    stored = load_file(cache / "victims" / victim_path(config).name)
    inline, _ = train_victim(config, load_dataset("mnist"))
    for name, tensor in inline.state_dict().items():
        assert torch.equal(stored[name], tensor), name


def test_only_missing_cpu_victims_with_a_recipe_train_in_workers(tmp_path, monkeypatch) -> None:
    from paraeval.models.victim_base import ModuleVictim
    from paraeval.run.dispatch import _trains_in_a_worker, pretrain_victims
    from paraeval.run.groups import WorkerSetup
    from paraeval.run.lookup import victim_config
    from paraeval.training.victims import victim_path

    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    cpu = WorkerSetup("none", "fgsm", 1, 0, None, False)
    gpu = WorkerSetup("none", "fgsm", 1, 0, None, False, device="cuda")
    mlp = victim_config("mlp")
    given = victim_config("given", own=[ModuleVictim(nn.Linear(64, 10), "digits", name="given")])
    assert _trains_in_a_worker(cpu, mlp) and not _trains_in_a_worker(gpu, mlp)
    assert not _trains_in_a_worker(cpu, given)  # a module object: no recipe
    assert pretrain_victims(cpu, [mlp, given]) == 0  # one missing victim: no pool
    path = victim_path(mlp)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert not _trains_in_a_worker(cpu, mlp)  # cached: loaded where needed


def test_an_untrained_module_is_flagged_near_chance_not_silently_ok(tmp_path) -> None:
    """evaluate() of a module nobody trained: its cells are stored, each with a warning that
    the victim is near chance; a trained one carries none."""
    from paraeval import evaluate
    from paraeval.plugin.checks import weak_victim_warning

    namespace: dict = {}
    exec(compile(NET, "net.py", "exec"), namespace)
    torch.manual_seed(0)
    evaluate(namespace["Net"](), dataset="digits", attacks="fgsm", out=tmp_path, n_images=20)
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["victim_accuracy"].iloc[0] < 20
    assert "is near chance (10.0 % for 10 classes)" in frame["warnings"].iloc[0]
    labels = torch.arange(10).repeat(5)
    assert weak_victim_warning(95.0, labels) == [] and weak_victim_warning(19.9, labels)


def test_a_model_trained_here_on_a_small_set_gets_as_many_steps_as_on_mnist() -> None:
    """6 epochs on 1,297 digits are 66 optimiser steps, too few to train a classifier; a model
    file trained here gets MNIST's 6 x 469 steps (DigitsCNN: 96.2 %); the paper's victims and a
    model trained on MNIST keep their recipe and keys."""
    from paraeval.models.victim_base import MNIST_TRAIN_IMAGES, Recipe

    scaled = Recipe(scale_to_dataset=True).scaled(1_297)
    assert scaled.epochs * -(-1_297 // 128) >= 6 * -(-MNIST_TRAIN_IMAGES // 128)
    assert Recipe(scale_to_dataset=True).scaled(MNIST_TRAIN_IMAGES).epochs == 6
    assert Recipe().scaled(1_297).epochs == 6  # a plugin's own recipe is its own


def test_the_readme_example_model_trained_here_is_not_a_weak_victim(tmp_path) -> None:
    """The README's own-model example (the example plugin's DigitsCNN, trained here with the
    default recipe scaled to the 1,297 training digits) classifies the 500 test digits at least
    as well as 95 % (a 1-nearest-neighbour classifier on the pixels reaches 96 %)."""
    source = ROOT / "plugins" / "paraeval-digits-cnn" / "paraeval_digits_cnn" / "__init__.py"
    done = run_cli(
        "run",
        "--model",
        f"{source}:DigitsCNN",
        "--dataset",
        "digits",
        "--defenses",
        "none",
        "--attacks",
        "fgsm",
        "--n-images",
        "10",
        "--out",
        str(tmp_path),
        env={"PARAEVAL_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert pd.read_csv(tmp_path / "results.csv")["victim_accuracy"].iloc[0] >= 95.0
