"""The victims reach the accuracy the issue requires (paper: 98.78 % and 99.11 %)."""

from __future__ import annotations

import time

import pytest

from paraeval.training import VictimConfig, load_or_train_victim

THRESHOLDS = {"vm": 98.6, "vm-batch": 98.9}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vm", "vm-batch"])
def test_default_victims_reach_the_required_accuracy(victims, name: str) -> None:
    _model, info = victims[name]
    assert info["test_accuracy"] >= THRESHOLDS[name]
    assert info["train_seconds"] <= 300


@pytest.mark.slow
def test_second_load_comes_from_the_cache_quickly(victims, mnist) -> None:
    started = time.perf_counter()
    _model, info = load_or_train_victim(VictimConfig("vm-batch"), mnist)
    assert time.perf_counter() - started < 1.0
    assert info == victims["vm-batch"][1]
