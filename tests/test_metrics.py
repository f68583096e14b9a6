from __future__ import annotations

import math

import pytest
import torch

from paraeval.core.metrics import t_interval, transfer_outcome, wilson_interval


def test_transfer_outcome_counts_only_victim_correct_and_adversarial_images() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    victim_clean = torch.tensor([0, 1, 2, 3, 4, 9])  # image 5 misclassified: not counted
    success = torch.tensor([True, True, True, True, False, True])  # image 4 never adversarial
    victim_adv = torch.tensor([7, 7, 7, 7, 4, 9])
    protected = torch.tensor([0, 7, 8, 3, 4, 5])  # 0 and 3 recovered, 2 changed label
    outcome = transfer_outcome(labels, victim_clean, victim_adv, protected, success)
    assert outcome.n_attacked == 5
    assert outcome.n_misclassified == 1
    assert outcome.n_adversarial == 4
    assert outcome.n_recovered == 2
    assert outcome.m_adv == 50.0
    assert outcome.n_changed_label == 1
    assert outcome.change_matrix.sum() == 4
    assert outcome.change_matrix[7, 0] == 1 and outcome.change_matrix[7, 8] == 1


def test_m_adv_is_nan_without_adversarial_examples() -> None:
    zeros = torch.zeros(3, dtype=torch.long)
    outcome = transfer_outcome(zeros, zeros, zeros, zeros, torch.zeros(3, dtype=torch.bool))
    assert math.isnan(outcome.m_adv)


def test_t_interval_matches_textbook_values() -> None:
    mean, std, low, high = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0 and std == pytest.approx(1.5811388)
    assert (low, high) == pytest.approx((3 - 1.9632432, 3 + 1.9632432), rel=1e-6)
    single = t_interval([2.0])
    assert single[0] == 2.0 and math.isnan(single[2])


def test_wilson_interval() -> None:
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((40.383, 59.617), abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-9)
