"""Parasite fit study: held-out MSE to x + N (and to x) for several training recipes.

    python scripts/parasite_fit_study.py [--seeds 0 1] [--side 16] [--sigma 0.2]

Prints one line per (recipe, parasite kind, seed). The default recipe of ParasiteConfig was
chosen from this study (docs/parasite-fit.md). Nothing is cached: every parasite is trained.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from paraeval.training import ParasiteConfig, train_parasite

RECIPES = {
    "torch-init lr1e-2": {"init": "torch", "lr": 1e-2},
    "kaiming lr1e-2": {"init": "kaiming", "lr": 1e-2},
    "dirac lr1e-2": {"init": "dirac", "lr": 1e-2},
    "dirac lr1e-3": {"init": "dirac", "lr": 1e-3},
}
KINDS = [(bn, bias) for bn in (False, True) for bias in ("none", "small")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--side", type=int, default=16)
    parser.add_argument("--sigma", type=float, default=0.2)
    args = parser.parse_args()
    print("recipe | BN | bias | seed | mse_to_target | mse_to_identity | identity_mse | seconds")
    for recipe, overrides in RECIPES.items():
        for bn, bias in KINDS:
            for seed in args.seeds:
                base = ParasiteConfig(bn, bias, sigma=args.sigma, side=args.side, seed=seed)  # type: ignore[arg-type]
                started = time.perf_counter()
                fit = train_parasite(replace(base, **overrides)).fit  # type: ignore[arg-type]
                print(
                    f"{recipe} | {bn} | {bias} | {seed} | {fit['mse_to_target']:.4f} | "
                    f"{fit['mse_to_identity']:.4f} | {fit['identity_mse']:.4f} | "
                    f"{time.perf_counter() - started:.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
