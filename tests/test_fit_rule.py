"""Rule 3 applied: the default reading's training recipe is the fit rule's outcome on the
committed fit study, and the default recipe's parasites fit x + N better than the identity."""

from __future__ import annotations

import pandas as pd
import pytest

from paraeval.defenses.parasite_reading import ParasiteReading
from paraeval.study.fit_rule import FRAMEWORK, block, block_of, chosen, recipe_table

from .conftest import ROOT

FIT_CSV = ROOT / "reports" / "parasite_fit.csv"


def _fits(recipe: str, ratios16: list[float], ratios28: list[float], epochs: int = 10):
    sides = ((16, ratios16), (28, ratios28))
    return [
        {
            "recipe": recipe,
            "side": side,
            "seed": i,
            "fit_ratio": r,
            "constant_ratio": r / 2,
            "seconds": 10.0,
            "epochs_trained": epochs,
        }
        for side, ratios in sides
        for i, r in enumerate(ratios)
    ]


def test_the_rule_prefers_the_framework_then_fewest_departures_then_the_better_fit() -> None:
    fits = pd.DataFrame(
        [
            *_fits(FRAMEWORK, [1.5, 1.2], [0.9, 0.8]),  # fails at 16x16
            *_fits("lr=1e-2", [0.9, 1.1], [0.9, 0.9]),  # median 1.0 at 16x16: not below 1
            *_fits("a=1,b=2", [0.8, 0.9], [0.9, 0.9]),
            *_fits("c=1,d=2", [0.5, 0.6], [0.6, 0.7]),  # same departures, better fit
            *_fits("e=1", [0.1, 0.1], [0.1, 0.1], epochs=30),  # passes, over the cost cap
        ]
    )
    table = recipe_table(fits)
    assert list(table["passes"]) == [False, False, True, True, True]
    assert list(table["eligible"]) == [True, True, True, True, False]
    assert chosen(table) == "c=1,d=2"
    framework_passes = pd.DataFrame(
        [*_fits(FRAMEWORK, [0.9, 0.9], [0.9, 0.9]), *_fits("c=1,d=2", [0.5, 0.6], [0.6, 0.7])]
    )
    assert chosen(recipe_table(framework_passes)) == FRAMEWORK
    assert chosen(recipe_table(pd.DataFrame(_fits(FRAMEWORK, [2.0, 2.0], [2.0, 2.0])))) is None


def test_the_fit_page_and_the_default_reading_follow_the_committed_study() -> None:
    """docs/parasite-fit.md's table is generated from reports/parasite_fit.csv, and the code's
    default recipe is the rule's outcome there: a changed CSV or default fails this test."""
    fits = pd.read_csv(FIT_CSV)
    assert block_of(ROOT / "docs" / "parasite-fit.md") == block(fits)
    winner = chosen(recipe_table(fits))
    from scripts.parasite_fit_study import RECIPES

    recipe = RECIPES[winner or FRAMEWORK]
    default = ParasiteReading()
    for name, value in recipe.items():
        assert getattr(default, name) == value, (name, winner)


@pytest.mark.slow
def test_the_default_recipe_fits_x_plus_n_better_than_the_identity() -> None:
    """A small parasite (16x16, no BN, beta = 0, 2,000 inputs) under the default reading's
    recipe ends closer to x + N than returning x unchanged."""
    from paraeval.training.parasites import ParasiteConfig, fit_ratio, train_parasite

    default = ParasiteReading()
    config = ParasiteConfig(
        False, "none", n_train=2_000, n_heldout=500, init=default.init, lr=default.lr, epochs=10
    )
    assert fit_ratio(train_parasite(config).fit) < 1.0
