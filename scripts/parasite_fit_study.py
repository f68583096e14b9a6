"""Parasite fit study: how well each training recipe's parasites fit x + N, against the
identity map and the best input-free output (docs/parasite-fit.md).

    python scripts/parasite_fit_study.py [--out reports/parasite_fit.csv] [--seeds 0 1]
        [--workers 2] [--recipes default lr=1e-2 ...]

Trains, for every recipe, the parasite kinds of the paper (BN or not, bias none or small) at
the two sides the paper rows use (16x16 for first/last 256 neurons; 28x28 for Table 2's
whole-layer maps), sigma 0.2, and appends one line per parasite to the CSV: the recipe (as
reading options over the framework default), kind, side, seed, the held-out MSEs and their
ratios (fit_ratio = mse_to_target / identity_mse; constant_ratio = mse_to_target /
constant_mse), epochs trained, and seconds on one thread. Lines already in the CSV are kept
and not trained again (a stopped study resumes). Nothing is cached: the recipes' parasites
are trained here, one per worker process, each on one thread.
"""

from __future__ import annotations

import argparse
import csv
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from paraeval.training.parasites import ParasiteConfig, constant_ratio, fit_ratio, train_parasite

#: Reading options -> ParasiteConfig fields (the reading's `batch` is the config's batch_size).
FIELD = {"batch": "batch_size"}
#: The framework-default recipe (PyTorch init, Adam 1e-3) and one-factor departures from it,
#: then the identity start with lr 1e-2 (the project's default before the readings rule).
RECIPES = {
    "framework": {"init": "torch", "lr": 1e-3},
    "lr=1e-2": {"init": "torch", "lr": 1e-2},
    "schedule=constant": {"init": "torch", "lr": 1e-3, "schedule": "constant"},
    "budget=steps": {"init": "torch", "lr": 1e-3, "budget": "steps"},
    "until=plateau": {"init": "torch", "lr": 1e-3, "until": "plateau"},
    "batch=32": {"init": "torch", "lr": 1e-3, "batch": 32},
    "optimizer=sgd": {"init": "torch", "lr": 1e-3, "optimizer": "sgd"},
    "init=kaiming": {"init": "kaiming", "lr": 1e-3},
    "init=dirac": {"init": "dirac", "lr": 1e-3},
    "init=dirac,lr=1e-2": {"init": "dirac", "lr": 1e-2},
}
KINDS = [(bn, bias) for bn in (False, True) for bias in ("none", "small")]
SIDES = (16, 28)
COLUMNS = ["recipe", "batch_norm", "bias", "side", "seed", "mse_to_target", "identity_mse",
           "constant_mse", "mse_to_identity", "fit_ratio", "constant_ratio", "epochs_trained",
           "seconds"]  # fmt: skip


def config_for(recipe: str, bn: bool, bias: str, side: int, seed: int) -> ParasiteConfig:
    """The parasite of one line: `recipe`'s options on the paper's kind at `side`."""
    base = ParasiteConfig(bn, bias, sigma=0.2, side=side, seed=seed)  # type: ignore[arg-type]
    overrides = {FIELD.get(k, k): v for k, v in RECIPES[recipe].items()}
    return replace(base, **overrides)


def measure(job: tuple[str, bool, str, int, int]) -> dict[str, Any]:
    """Train one parasite and return its CSV line."""
    recipe, bn, bias, side, seed = job
    config = config_for(recipe, bn, bias, side, seed)
    started = time.perf_counter()
    fit = train_parasite(config).fit
    return {
        "recipe": recipe,
        "batch_norm": bn,
        "bias": bias,
        "side": side,
        "seed": seed,
        **{
            k: round(fit[k], 6)
            for k in ("mse_to_target", "identity_mse", "constant_mse", "mse_to_identity")
        },
        "fit_ratio": round(fit_ratio(fit), 4),
        "constant_ratio": round(constant_ratio(fit), 4),
        "epochs_trained": int(fit.get("epochs_trained", config.epoch_count)),
        "seconds": round(time.perf_counter() - started, 1),
    }


def done(out: Path) -> set[tuple[str, str, str, str, str]]:
    if not out.exists():
        return set()
    with out.open() as handle:
        return {
            (r["recipe"], r["batch_norm"], r["bias"], r["side"], r["seed"])
            for r in csv.DictReader(handle)
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports/parasite_fit.csv"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    finished = done(args.out)
    jobs = [
        (recipe, bn, bias, side, seed)
        for recipe in args.recipes
        for seed in args.seeds
        for side in SIDES
        for bn, bias in KINDS
        if (recipe, str(bn), bias, str(side), str(seed)) not in finished
    ]
    new_file = not args.out.exists()
    with args.out.open("a", newline="") as handle, ProcessPoolExecutor(args.workers) as pool:
        writer = csv.DictWriter(handle, COLUMNS)
        if new_file:
            writer.writeheader()
        for line in pool.map(measure, jobs):
            writer.writerow(line)
            handle.flush()
            print(", ".join(f"{k}={v}" for k, v in line.items()), flush=True)


if __name__ == "__main__":
    main()
