from __future__ import annotations

import pytest
import torch
from torch import nn

from paraeval.models.parasite import BIAS_BOUND, ParasiticCNN
from paraeval.training.parasite_cache import load_or_train_parasite
from paraeval.training.parasites import ParasiteConfig, parasite_fit, train_parasite


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("bias", ["none", "small"])
def test_architecture_is_the_papers(batch_norm: bool, bias: str) -> None:
    model = ParasiticCNN(batch_norm, bias)  # type: ignore[arg-type]
    convs = model.convolutions()
    assert [c.out_channels for c in convs] == [2, 2, 2, 1]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert sum(isinstance(m, nn.ReLU) for m in model.layers) == 4
    assert len(model.batch_norms()) == (4 if batch_norm else 0)
    weights = 2 * 25 + 2 * 2 * 25 + 2 * 2 * 25 + 2 * 25
    biases = 7 if bias == "small" else 0
    bn = 2 * 7 if batch_norm else 0
    assert sum(p.numel() for p in model.parameters()) == weights + biases + bn
    for side in (16, 28):
        assert model(torch.rand(3, 1, side, side)).shape == (3, 1, side, side)


def test_invalid_bias_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="bias"):
        ParasiticCNN(False, "large")  # type: ignore[arg-type]


def test_projection_keeps_beta_strictly_inside_the_ball() -> None:
    model = ParasiticCNN(True, "small", bias_scope="all")
    with torch.no_grad():
        for p in model.bias_parameters():
            p.fill_(3.0)
    model.project_bias()
    assert model.bias_norm() < BIAS_BOUND
    assert model.bias_norm() == pytest.approx(0.999 * BIAS_BOUND, rel=1e-5)


QUICK = {"n_train": 2000, "n_heldout": 500, "epochs": 3}


@pytest.mark.parametrize("batch_norm", [False, True])
def test_bias_bound_holds_after_training(batch_norm: bool) -> None:
    small = train_parasite(ParasiteConfig(batch_norm, "small", seed=1, **QUICK))  # type: ignore[arg-type]
    assert 0 < small.model.bias_norm() < BIAS_BOUND
    assert small.fit["bias_norm"] < BIAS_BOUND
    none = train_parasite(ParasiteConfig(batch_norm, "none", seed=1, **QUICK))  # type: ignore[arg-type]
    assert all(c.bias is None for c in none.model.convolutions())


def test_identity_start_parasite_beats_identity_at_its_objective() -> None:
    """Started at the identity (dirac) with lr 1e-2, the parasite ends closer to x + N than
    the plain identity x is (the default reading's framework recipe need not: not a failure)."""
    trained = train_parasite(ParasiteConfig(True, "small", seed=0, init="dirac", lr=1e-2))
    assert trained.fit["mse_to_target"] < trained.fit["identity_mse"]
    assert trained.fit["mse_to_target"] > trained.fit["relu_floor_mse"]


def test_noise_is_fixed_per_seed_and_changes_with_it() -> None:
    a = train_parasite(ParasiteConfig(False, "none", seed=3, **QUICK))
    b = train_parasite(ParasiteConfig(False, "none", seed=3, **QUICK))
    c = train_parasite(ParasiteConfig(False, "none", seed=4, **QUICK))
    assert torch.equal(a.noise, b.noise) and not torch.equal(a.noise, c.noise)
    assert a.noise.shape == (1, 1, 16, 16)
    assert float(a.noise.std()) == pytest.approx(0.2, rel=0.25)
    x = torch.rand(4, 1, 16, 16)
    assert torch.equal(a.model(x), b.model(x))


def test_parasite_fit_of_exact_identity() -> None:
    noise = torch.full((1, 1, 4, 4), 0.5)
    inputs = torch.rand(10, 1, 4, 4)
    fit = parasite_fit(nn.Identity(), noise, inputs)
    assert fit["mse_to_identity"] == 0.0
    assert fit["mse_to_target"] == pytest.approx(0.25)


def test_cache_round_trip_gives_the_same_parasite(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    config = ParasiteConfig(True, "small", seed=5, **QUICK)  # type: ignore[arg-type]
    first = load_or_train_parasite(config)
    files = list((tmp_path / "parasites").glob("*.safetensors"))
    assert len(files) == 1
    second = load_or_train_parasite(config)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(first.model(x), second.model(x))
    assert second.fit == pytest.approx(first.fit)


def test_recalibrated_batch_norms_normalise_the_victims_activations(victims, mnist) -> None:
    """Sec. 6.1: the parasite's BNs 'normalize their input, ensuring a mean of 0 and std 1'."""
    from paraeval.defenses.parasite_reading import ParasiteReading
    from paraeval.defenses.parasites import calibration_images, protect_with
    from paraeval.study.paper import ROWS_BY_NAME

    victim = victims["vm-batch"][0]
    specs = ROWS_BY_NAME["t1-vmbatch-before-bn-small"].parasites
    # one candidate: with a selection, the BN statistics could also change which one is kept
    recalibrated = protect_with(
        victim, specs, seed=0, stream="table1", reading=ParasiteReading(select=1)
    ).model
    training = protect_with(
        victim,
        specs,
        seed=0,
        stream="table1",
        reading=ParasiteReading(bn_stats="training", select=1),
    ).model
    parasite = next(m for m in recalibrated.modules() if isinstance(m, ParasiticCNN))
    original = next(m for m in training.modules() if isinstance(m, ParasiticCNN))
    first_bn, original_bn = parasite.batch_norms()[0], original.batch_norms()[0]
    inputs: list[torch.Tensor] = []
    handle = first_bn.register_forward_hook(lambda _m, i, _o: inputs.append(i[0]))
    with torch.no_grad():
        recalibrated(calibration_images())
    handle.remove()
    seen = torch.cat(inputs)
    assert torch.allclose(first_bn.running_mean, seen.mean(dim=(0, 2, 3)), rtol=1e-3, atol=1e-4)
    assert not torch.allclose(original_bn.running_mean, first_bn.running_mean)
    assert torch.equal(parasite.convolutions()[0].weight, original.convolutions()[0].weight)
    assert not first_bn.training and not parasite.training
    x = mnist.as_float(mnist.test_images[:8])
    assert torch.equal(recalibrated(x), recalibrated(x))  # eval mode: deterministic


def test_defense_options_select_the_bn_statistics(victims, tmp_path) -> None:
    import pandas as pd

    from .conftest import run_cli

    out = tmp_path / "run"
    defenses = "t1-vm-after-bn-small,t1-vm-after-bn-small:bn_stats=training"
    result = run_cli(
        "run", "--victims", "vm", "--defenses", defenses, "--n-images", "10", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["defense"]) == [
        "t1-vm-after-bn-small",
        "t1-vm-after-bn-small:bn_stats=training",
    ]
    bad = run_cli("run", "--defenses", "t1-vm-after-bn-small:bn_stats=batch", "--out", str(out))
    assert bad.returncode == 2 and "bn_stats='batch' must be one of recalibrated|training" in (
        bad.stderr
    )


def test_parallel_pretraining_gives_the_inline_weights(tmp_path, monkeypatch) -> None:
    """Two worker processes train the same bits as inline training (one thread each)."""
    from paraeval.training.parasite_cache import is_cached, pretrain_parasites

    monkeypatch.setenv("PARAEVAL_CACHE_DIR", str(tmp_path))
    configs = [ParasiteConfig(bn, "small", seed=7, **QUICK) for bn in (False, True)]  # type: ignore[arg-type]
    assert pretrain_parasites(configs + configs[:1], workers=2) == 2
    assert all(is_cached(c) for c in configs)
    assert pretrain_parasites(configs, workers=2) == 0  # all cached now
    x = torch.rand(3, 1, 16, 16)
    for config in configs:
        cached, inline = load_or_train_parasite(config), train_parasite(config)
        assert torch.equal(cached.model(x), inline.model(x))


def test_training_failure_names_each_way_a_parasite_fails_to_train() -> None:
    from paraeval.training.parasites import training_failure

    good = {"mse_to_target": 0.05, "initial_mse_to_target": 0.3, "zero_output_fraction": 0.0}
    assert training_failure(good) is None
    assert training_failure({**good, "mse_to_target": float("nan")}) == "NaN loss"
    assert training_failure({**good, "zero_output_fraction": 1.0}) == "all-zero output"
    assert training_failure({**good, "mse_to_target": 0.3}) == "loss did not decrease"
    # an identity start that stays as close to x + N as the identity is has not failed ...
    stayed = {**good, "mse_to_target": 0.0401, "initial_mse_to_target": 0.04}
    assert training_failure({**stayed, "identity_mse": 0.0402}) is None
    assert training_failure({**stayed, "identity_mse": 0.03}) == "loss did not decrease"
    # fitting x + N worse than the identity map is not a failure (the paper's Eq. 12)
    assert training_failure({**good, "mse_to_target": 0.2, "identity_mse": 0.04}) is None


def test_a_dead_parasite_is_recorded_as_all_zero_output() -> None:
    from paraeval.training.parasites import training_failure

    model = ParasiticCNN(False, "none")
    with torch.no_grad():
        for conv in model.convolutions():
            conv.weight.fill_(-1.0)  # every pre-activation negative on inputs in [0, 1]
    fit = parasite_fit(model, torch.zeros(1, 1, 16, 16), torch.rand(20, 1, 16, 16))
    assert fit["zero_output_fraction"] == 1.0
    assert training_failure({**fit, "initial_mse_to_target": 1.0}) == "all-zero output"


@pytest.mark.parametrize("init", ["torch", "dirac", "kaiming", "glorot"])
def test_no_bn_parasite_fit_per_init(init: str) -> None:
    """What a no-BN, no-bias parasite learns, per initialisation (short training).

    Every init trains (held-out loss falls, no failure; a random start's by > 10 %, the
    identity start's only a little since it starts near x + N). The identity start stays at the
    identity: its output is 30x closer to x than N is, and what it adds correlates with N. The
    random starts end far from the identity (farther from x than N is): the readings study
    measures what that does to accuracy and M_adv.
    """
    from paraeval.training.parasites import _parasite_data, training_failure

    config = ParasiteConfig(False, "none", seed=0, init=init, **QUICK)  # type: ignore[arg-type]
    trained = train_parasite(config)
    fit = trained.fit
    assert training_failure(fit) is None  # includes: the held-out loss fell
    if init == "dirac":
        assert fit["mse_to_identity"] < fit["identity_mse"] / 30
        noise, _train, heldout = _parasite_data(config)
        with torch.no_grad():
            added = (trained.model(heldout) - heldout).mean(0).flatten()
        assert float(torch.corrcoef(torch.stack([added, noise.flatten()]))[0, 1]) > 0.05
    else:
        assert fit["mse_to_target"] < 0.9 * fit["initial_mse_to_target"]
        assert fit["mse_to_identity"] > fit["identity_mse"]
