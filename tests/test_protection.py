"""The protected model in the user's hands: paraeval.protect gives the model a run attacks,
`paraeval protect` saves it and paraeval.load_protected gives it back."""

from __future__ import annotations

import pandas as pd
import torch

from paraeval import load_protected, protect
from paraeval.core.metrics import accuracy
from paraeval.run.lookup import load_dataset
from paraeval.run.results import parasite_fits
from paraeval.run.store import Store

from .conftest import MODEL_CACHE, SHARED_MNIST, run_cli

DEFENSE = "t1-vm-after-nobn-none:epochs=1,select=1"


def test_protect_gives_the_model_a_run_attacks_and_it_saves_and_reloads(
    victims, tmp_path, monkeypatch
) -> None:
    env = {"PARAEVAL_CACHE_DIR": str(MODEL_CACHE), "PARAEVAL_DATA_DIR": str(SHARED_MNIST)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = run_cli(
        "run",
        "--victims",
        "vm",
        "--defenses",
        DEFENSE,
        "--attacks",
        "fgsm",
        "--seed",
        "1",
        "--n-images",
        "10",
        "--out",
        str(tmp_path / "run"),
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    measured = float(pd.read_csv(tmp_path / "run" / "results.csv")["accuracy"].iloc[0])
    mnist = load_dataset("mnist")
    protected = protect("vm", DEFENSE, seed=1)
    assert round(accuracy(protected.model, mnist.test_images, mnist.test_labels), 4) == measured
    assert protected.parasite_fits[0]["parasite"].startswith("conv2 after BN+act")
    with Store(tmp_path / "run") as store:  # the run's cell holds the same parasite's fit
        (stored,) = [store.cell(key).row for key in store.run_cells(store.runs()[-1]["id"])]
    assert parasite_fits(stored) == list(protected.parasite_fits)

    saved = run_cli(
        "protect", "vm", DEFENSE, "--seed", "1", "--out", str(tmp_path / "p.st"), env=env
    )
    assert saved.returncode == 0, saved.stderr[-2000:]
    assert "weights_sha256" in saved.stdout and "parasite_fit" in saved.stdout
    reloaded = load_protected(tmp_path / "p.st")
    with torch.no_grad():
        same = reloaded(mnist.test_images).argmax(1) == protected.model(mnist.test_images).argmax(1)
    assert bool(same.all())  # every one of the 10,000 test images
