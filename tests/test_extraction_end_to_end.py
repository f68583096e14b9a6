"""Extraction attacks on the real victims and through `paraeval run`."""

from __future__ import annotations

import pandas as pd
import pytest

from .conftest import run_cli


def test_critical_points_recover_first_layer_normals_of_the_unprotected_vm(victims, mnist):
    """On the unprotected vm, a majority of the first-layer critical points found
    get a recovered normal with |cos| > 0.99 to a true first-layer unit."""
    import torch

    from paraeval.api import Oracle
    from paraeval.attacks.critical_points import CriticalPointAttack, draw_line
    from paraeval.datasets.idx import MNIST
    from paraeval.extraction.scalar_oracle import ScalarOracle
    from paraeval.extraction.search import normal_at, search_line
    from paraeval.extraction.truth import MATCH_TOLERANCE, FirstLayer

    vm = victims["vm"][0]
    images = MNIST.as_float(mnist.test_images[:500])
    oracle, truth = ScalarOracle(Oracle(vm), seed=0), FirstLayer.of(vm)
    offset, direction, low, high = draw_line(
        "in-domain", torch.Generator().manual_seed(0), images, 1e3
    )
    search = search_line(oracle, offset, direction, low, high, budget=100_000)
    crossings = truth.crossings(offset, direction)
    on_first_layer = [
        p
        for p in search.points
        if float((crossings - p.t).abs().min()) <= MATCH_TOLERANCE * (high - low)
    ]
    assert len(on_first_layer) >= 10
    cosines = [
        truth.best_cosine(normal_at(oracle, offset, direction, p)) for p in on_first_layer[:10]
    ]
    assert sum(c > 0.99 for c in cosines) > len(cosines) / 2
    # the attack's own scoring on the same victim: LeNet has max-pool and deeper kinks too
    (row,) = (
        CriticalPointAttack(lines="in-domain", budget=3000, normals=0)
        .extract(vm, Oracle(vm), images, seed=0)
        .details
    )
    assert row["n_points"] > 20 and 0 < row["precision"] < 1
    assert row["max_pool_fraction"] > 0 and row["parasite_fraction"] == 0


def test_critical_points_through_the_cli(victims, tmp_path) -> None:
    out = tmp_path / "run"
    result = run_cli(
        "run",
        "--victims",
        "vm",
        "--defenses",
        "none,t1-vm-after-nobn-none",
        "--attacks",
        "critical-points:budget=600,normals=1",
        "--n-images",
        "20",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = pd.read_csv(out / "results.csv")
    assert list(results["mode"]) == ["extraction", "extraction"]
    assert results["m_adv"].isna().all() and (results["status"] == "ok").all()
    assert results["cp_queries"].between(600, 600 + 2 * 1570).all()
    assert results["cp_precision"].between(0, 1).all()
    extraction = pd.read_csv(out / "extraction.csv")
    assert len(extraction) == 4  # two cells x two kinds of line
    assert set(extraction["lines"]) == {"carlini", "in-domain"}
    assert extraction.groupby("defense")["queries"].sum().to_dict() == dict(
        zip(results["defense"], results["cp_queries"], strict=True)
    )
    summary = pd.read_csv(out / "summary.csv")
    assert "cp_precision_mean" in summary.columns
    assert (pd.read_csv(out / "prediction_change.csv")).empty


def test_list_attacks_shows_every_attack() -> None:
    result = run_cli("list", "attacks")
    assert result.returncode == 0, result.stderr
    for name in ("fgsm", "pgd", "deepfool", "critical-points", "fee"):
        assert name in result.stdout


def test_extraction_attacks_take_no_mode(tmp_path) -> None:
    result = run_cli(
        "run",
        "--victims",
        "vm",
        "--attacks",
        "critical-points:mode=adaptive",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert "extraction attack" in result.stderr


def test_fee_is_skipped_with_a_note_on_lenet(victims, tmp_path) -> None:
    result = run_cli(
        "run",
        "--victims",
        "vm",
        "--attacks",
        "fgsm,fee",
        "--n-images",
        "10",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped fee on vm" in result.stderr
    assert list(pd.read_csv(tmp_path / "results.csv")["attack"]) == ["fgsm"]


@pytest.mark.slow
def test_fee_extracts_the_unprotected_mlp(tmp_path) -> None:
    """Functionally-equivalent extraction reaches fidelity >= 0.95 on `mlp`; ART's
    implementation runs too, and its failure (if it fails) is a stored result, not a crash."""
    # ART's search on a protected mlp can take many minutes (it depends on the parasite's kinks),
    # so ART runs on the plain mlp only, as in `paraeval reproduce`.
    frames = []
    for name, defenses, attacks in (
        ("ours", "none,mlp-nobn-none-s0.2", "fee"),
        ("art", "none", "fee:backend=art"),
    ):
        out = tmp_path / name
        result = run_cli(
            "run",
            "--victims",
            "mlp",
            "--defenses",
            defenses,
            "--attacks",
            attacks,
            "--n-images",
            "20",
            "--out",
            str(out),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        frames.append(pd.read_csv(out / "results.csv"))
    results = pd.concat(frames).set_index(["defense", "attack"])
    assert len(results) == 3 and (results["status"] == "ok").all()
    plain = results.loc[("none", "fee")]
    assert plain["fee_extracted"] == 1 and plain["fee_fidelity"] >= 0.95
    extraction = pd.read_csv(tmp_path / "ours" / "extraction.csv").set_index(["defense", "attack"])
    assert extraction.loc[("none", "fee"), "units_found"] == 64
    for key, row in results.iterrows():
        assert row["fee_extracted"] == 1 or isinstance(row["fee_failure"], str), key
