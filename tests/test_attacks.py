"""PGD and DeepFool: both backends, agreement within a stated tolerance, option validation."""

from __future__ import annotations

import pytest
import torch

from paraeval.attacks.deepfool import DeepFoolAttack
from paraeval.attacks.pgd import PGDSweep
from paraeval.errors import UserError
from paraeval.registry import attacks

#: Success rates of the two backends may differ by at most this (fraction of images): the
#: libraries differ in float details (ART clips and projects in numpy, torchattacks in torch).
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def batch(mnist):
    return mnist.as_float(mnist.test_images[:60]), mnist.test_labels[:60]


def test_all_evasion_attacks_are_registered() -> None:
    names = set(attacks().names())
    assert {"fgsm", "pgd", "deepfool"} <= names


def test_pgd_backends_agree(victims, batch) -> None:
    model = victims["vm"][0]
    images, labels = batch
    kwargs = {"eps_step": "0.05", "max_eps": "0.3", "steps": "10"}
    art = PGDSweep(backend="art", **kwargs).generate(model, images, labels, seed=0)
    ta = PGDSweep(backend="torchattacks", **kwargs).generate(model, images, labels, seed=0)
    assert abs(float(art.success.float().mean() - ta.success.float().mean())) <= TOLERANCE
    assert float(art.success.float().mean()) > 0.5
    for result in (art, ta):
        delta = (result.adversarial - images).flatten(1).abs().max(1).values
        assert bool((delta[result.success] <= result.epsilon[result.success] + 1e-5).all())
        with torch.no_grad():
            fooled = model(result.adversarial).argmax(1) != labels
        assert torch.equal(fooled, result.success)


def test_pgd_is_at_least_as_strong_as_fgsm(victims, batch) -> None:
    from paraeval.attacks.fgsm import FGSMSweep

    model = victims["vm"][0]
    images, labels = batch
    fgsm = FGSMSweep(max_eps="0.3").generate(model, images, labels, seed=0)
    pgd = PGDSweep(max_eps="0.3", steps="10").generate(model, images, labels, seed=0)
    assert pgd.success.sum() >= fgsm.success.sum()
    both = fgsm.success & pgd.success
    assert bool((pgd.epsilon[both] <= fgsm.epsilon[both]).all())


def test_deepfool_backends_agree_where_both_succeed(victims, batch) -> None:
    """The backends do NOT agree on success rate, and this documents why.

    torchattacks 3.5.1 applies the overshoot to each step's delta and clamps to [0, 1] after
    every step, so on MNIST (many pixels at 0 or 1) it stalls at the box; ART accumulates the
    perturbation and applies the overshoot to the total. Measured on the first 60 test images
    of the default `vm`: ART fools 100 %, torchattacks 43 %. Where both succeed they find
    perturbations of the same size (median L2 within a factor 1.5).
    """
    model = victims["vm"][0]
    images, labels = batch
    art = DeepFoolAttack(backend="art").generate(model, images, labels, seed=0)
    ta = DeepFoolAttack(backend="torchattacks").generate(model, images, labels, seed=0)
    assert float(art.success.float().mean()) > 0.9
    assert float(ta.success.float().mean()) <= float(art.success.float().mean())
    both = art.success & ta.success
    assert int(both.sum()) >= 10
    ratio = art.epsilon[both].median() / ta.epsilon[both].median()
    assert 1 / 1.5 < float(ratio) < 1.5
    assert float(art.epsilon[art.success].median()) < 3.0  # minimal: a small L2 on [0, 1]^784


def test_attack_options_are_rejected_with_the_valid_ones() -> None:
    with pytest.raises(UserError, match="valid: backend"):
        PGDSweep(epsilon="0.1")
    with pytest.raises(UserError, match=r"in \[1, 1000\]"):
        PGDSweep(steps="0")
    with pytest.raises(UserError, match="must be true or false"):
        PGDSweep(random_init="maybe")
    with pytest.raises(UserError, match=r"in \[0, 1\]"):
        DeepFoolAttack(overshoot="2")
    assert PGDSweep(random_init="true").options.random_init is True


def test_transfer_and_adaptive_modes_are_never_mixed(victims, tmp_path) -> None:
    import pandas as pd

    from .conftest import run_cli

    out = tmp_path / "run"
    attacks = "fgsm,fgsm:mode=adaptive,deepfool"
    result = run_cli(
        "run",
        "--victims",
        "vm",
        "--defenses",
        "none",
        "--n-images",
        "20",
        "--attacks",
        attacks,
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(out / "results.csv")
    transfer = rows[rows["mode"] == "transfer"]
    adaptive = rows[rows["mode"] == "adaptive"]
    assert len(transfer) == 2 and len(adaptive) == 1
    assert transfer["m_adv"].notna().all() and transfer["robust_accuracy"].isna().all()
    assert adaptive["m_adv"].isna().all()
    assert float(adaptive["robust_accuracy"].iloc[0]) < 10  # FGSM up to eps 1 breaks LeNet
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["mode"]) == ["adaptive", "transfer", "transfer"]
    changes = pd.read_csv(out / "prediction_change.csv")
    assert set(changes["attack"]) == {"fgsm", "deepfool"} and len(changes) == 200


def test_unknown_mode_exits_2(tmp_path) -> None:
    from .conftest import run_cli

    result = run_cli("run", "--attacks", "fgsm:mode=whitebox", "--out", str(tmp_path))
    assert result.returncode == 2 and "valid: transfer, adaptive" in result.stderr


def test_an_iterative_attack_weaker_than_fgsm_is_flagged(victims, tmp_path) -> None:
    import pandas as pd

    from .conftest import run_cli

    out = tmp_path / "run"
    weak = "pgd:steps=1,step_factor=0.1,max_eps=0.3"  # one tiny step per eps: weaker than FGSM
    attacks = f"{weak},pgd:max_eps=0.3,steps=10"
    result = run_cli(
        "run",
        "--victims",
        "vm",
        "--defenses",
        "none",
        "--n-images",
        "20",
        "--attacks",
        attacks,
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["attack"]) == [weak, "pgd:max_eps=0.3,steps=10"]  # configs kept apart
    assert "fgsm on" in rows.iloc[0]["warnings"]
    assert pd.isna(rows.iloc[1]["warnings"])
