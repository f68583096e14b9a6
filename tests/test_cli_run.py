"""End-to-end `paraeval run` on the real MNIST files, in a subprocess like a user would."""

from __future__ import annotations

import pandas as pd
import pytest

from .conftest import run_cli

REQUIRED = ["victim", "dataset", "defense", "attack", "seed", "victim_seed", "status", "accuracy",
            "victim_accuracy", "m_adv", "n_attacked", "n_adversarial", "paper_accuracy",
            "paper_m_adv", "seconds"]  # fmt: skip


def test_none_fgsm_end_to_end(victims, tmp_path) -> None:
    out = tmp_path / "run"
    result = run_cli(
        "run",
        "--victims",
        "vm,vm-batch",
        "--defenses",
        "none",
        "--attacks",
        "fgsm",
        "--seeds",
        "1",
        "--n-images",
        "30",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns[: len(REQUIRED)]) == REQUIRED
    assert list(results["victim"]) == ["vm", "vm-batch"]
    assert (results["status"] == "ok").all()
    assert (results["m_adv"] == 0.0).all()
    assert (results["accuracy"] == results["victim_accuracy"]).all()
    assert results["paper_accuracy"].isna().all()
    assert (results["n_attacked"] + results["n_misclassified"] == 30).all()
    changes = pd.read_csv(out / "prediction_change.csv")
    assert list(changes.columns) == [
        "victim",
        "defense",
        "attack",
        "seed",
        "original_pred",
        "protected_pred",
        "count",
    ]
    per_victim = changes.groupby("victim")["count"].sum()
    assert per_victim.to_dict() == dict(
        zip(results["victim"], results["n_adversarial"], strict=True)
    )
    off_diagonal = changes[changes["original_pred"] != changes["protected_pred"]]["count"]
    assert off_diagonal.sum() == 0  # `none` never changes a prediction


def test_parasite_row_end_to_end_with_paper_values_and_skip_note(victims, mnist, tmp_path) -> None:
    out = tmp_path / "run"
    defenses = "t1-vm-after-bn-small,t2-bn-none-sigma0.1"
    result = run_cli(
        "run", "--victims", "vm", "--defenses", defenses, "--n-images", "30", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "skipped t2-bn-none-sigma0.1 on vm" in result.stderr
    results = pd.read_csv(out / "results.csv")
    assert list(results["defense"]) == ["t1-vm-after-bn-small"]
    row = results.iloc[0]
    assert row["paper_accuracy"] == 98.50 and row["paper_m_adv"] == 28.0
    expected_accuracy, expected_m_adv = _recomputed(victims["vm"][0], mnist, 30)
    assert row["accuracy"] == pytest.approx(expected_accuracy, abs=1e-4)
    assert row["m_adv"] == pytest.approx(expected_m_adv, abs=1e-4)
    summary = pd.read_csv(out / "summary.csv")
    assert summary.iloc[0]["accuracy_mean"] == row["accuracy"]


def _recomputed(victim, mnist, n_images: int) -> tuple[float, float]:
    """Accuracy and M_adv of t1-vm-after-bn-small (seed 0), recomputed through the Python API
    from the definitions (paper Sec. 6.2), independently of the runner."""
    from paraeval import registry
    from paraeval.api import Protected
    from paraeval.attacks.fgsm import FGSMSweep
    from paraeval.core.metrics import accuracy, predict

    (defense,) = registry.configured_defenses("t1-vm-after-bn-small")
    protected = Protected.of(defense.obj.protect(victim, seed=0)).model
    test_images = mnist.as_float(mnist.test_images)
    protected_accuracy = accuracy(protected, test_images, mnist.test_labels)
    images, labels = test_images[:n_images], mnist.test_labels[:n_images]
    batch = FGSMSweep().generate(victim, images, labels, seed=0)
    victim_fooled = predict(victim, batch.adversarial) != labels
    counted = (predict(victim, images) == labels) & batch.success & victim_fooled
    recovered = predict(protected, batch.adversarial)[counted] == labels[counted]
    return protected_accuracy, 100.0 * float(recovered.double().mean())


@pytest.mark.reproduction
def test_small_reproduction_of_the_three_tables(victims, tmp_path) -> None:
    """CI's small configuration of the full reproduction: one seed, 40 images, every row, its
    parasites trained for one epoch (each placement still selects among its candidates)."""
    out = tmp_path / "run"
    defenses = "table1:epochs=1,table2:epochs=1,table3:epochs=1"
    result = run_cli(
        "run",
        "--victims",
        "vm,vm-batch",
        "--defenses",
        defenses,
        "--n-images",
        "40",
        "--seeds",
        "1",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 36 and (results["status"] == "ok").all()
    from paraeval.study.paper import ROWS_BY_NAME

    for _, row in results.iterrows():
        paper = ROWS_BY_NAME[row["defense"].split(":")[0]]
        assert (row["victim"], row["paper_accuracy"], row["paper_m_adv"]) == (
            paper.victim,
            paper.accuracy,
            paper.m_adv,
        )
        assert row["m_adv"] == pytest.approx(100 * row["n_recovered"] / row["n_adversarial"])
    for _victim, group in results.groupby("victim"):
        # the examples are crafted once on the victim and replayed on every protected model
        assert group["n_adversarial"].nunique() == 1 and group["victim_accuracy"].nunique() == 1
        assert (group["n_attacked"] + group["n_misclassified"] == 40).all()
    changes = pd.read_csv(out / "prediction_change.csv")
    per_row = changes.groupby("defense")["count"].sum().to_dict()
    assert per_row == dict(zip(results["defense"], results["n_adversarial"], strict=True))


def test_data_dir_option_reaches_the_batchnorm_calibration(victims, tmp_path) -> None:
    """The parasites' BN statistics are re-estimated on MNIST training images: from the same
    --data-dir as the run, not from the environment (which is empty here)."""
    from .conftest import SHARED_MNIST

    out = tmp_path / "run"
    result = run_cli(
        "run",
        "--victims",
        "vm",
        "--defenses",
        "t1-vm-after-bn-small",
        "--data-dir",
        str(SHARED_MNIST),
        "--no-download",
        "--n-images",
        "10",
        "--out",
        str(out),
        env={"PARAEVAL_DATA_DIR": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (pd.read_csv(out / "results.csv")["status"] == "ok").all()
