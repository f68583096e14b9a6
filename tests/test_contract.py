"""The plugin contract of api.py at work: Protected, stateful reset, oracle, any metrics."""

from __future__ import annotations

import copy
from typing import ClassVar

import pandas as pd
import pytest
import torch
from torch import nn

from paraeval import hookimpl
from paraeval.api import (
    DefenseBase,
    ExtractionAttackBase,
    ExtractionResult,
    Oracle,
    Protected,
    QueryBudgetExceeded,
)
from paraeval.errors import UserError
from paraeval.plugin.manager import load_plugins, pm


class Counting(nn.Module):
    """Counts the images it answers in a dict shared with its defense."""

    def __init__(self, model: nn.Module, counter: dict[str, int]) -> None:
        super().__init__()
        self.model, self.counter = model, counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.counter["seen"] += len(x)
        return self.model(x)


class StatefulDefense(DefenseBase):
    name = "test-stateful"
    description = "counts queries, says so in its warnings, watches the oracle"
    tags = ("contract",)
    stateful = True

    def __init__(self) -> None:
        self.counter = {"seen": 0}
        self.at_reset: list[int] = []
        self.monitored: list[int] = []

    def protect(self, model: nn.Module, *, seed: int) -> Protected:
        return Protected(
            Counting(copy.deepcopy(model), self.counter),
            info={"queries_before_protect": self.counter["seen"]},
            warnings=("self-check: nothing to report",),
            monitors=(lambda rows: self.monitored.append(len(rows)),),
        )

    def reset(self) -> None:
        self.at_reset.append(self.counter["seen"])
        self.counter["seen"] = 0


class LabelCounter(ExtractionAttackBase):
    name = "test-label-counter"
    description = "asks for 7 labels, reports metrics no built-in has"
    granularity = "label"
    headline = "answers_seen"
    metric_docs: ClassVar[dict[str, str]] = {
        "answers_seen": "labels answered", "one_label_each": "1 when each answer is one label",
        "queries_counted": "the oracle's count",
    }  # fmt: skip

    def extract(self, victim, oracle, images, *, seed):
        answers = oracle(images[:7])
        metrics = {
            "answers_seen": len(answers),
            "one_label_each": int(answers.ndim == 1),
            "queries_counted": oracle.queries,
        }
        return ExtractionResult(metrics, [{"labels": answers.tolist()}])


class Misspelled(LabelCounter):
    name = "test-misspelled"
    description = "reports a metric it does not declare"

    def extract(self, victim, oracle, images, *, seed):
        result = super().extract(victim, oracle, images, seed=seed)
        return ExtractionResult({**result.metrics, "answers_sen": 7}, result.details)


class Plain:
    name = "test-plain"
    description = "written against name, description and protect alone"

    def protect(self, model: nn.Module, *, seed: int) -> nn.Module:
        return copy.deepcopy(model).eval()


DEFENSE = StatefulDefense()


class ContractPlugin:
    __name__ = "contract"

    @hookimpl
    def register_defenses(self, register):
        register(DEFENSE)
        register(Plain())

    @hookimpl
    def register_attacks(self, register):
        register(LabelCounter())
        register(Misspelled())


@pytest.fixture
def contract_plugin():
    load_plugins()
    plugin = ContractPlugin()
    pm.register(plugin, name="contract")
    try:
        yield DEFENSE
    finally:
        pm.unregister(plugin)


def test_protected_stateful_reset_oracle_and_any_metrics(victims, tmp_path, contract_plugin):
    from paraeval.report.outputs import write_outputs
    from paraeval.run.runner import RunConfig, run

    config = RunConfig(
        victims=["vm"],
        defenses="test-stateful,test-plain",
        out=tmp_path,
        attacks="fgsm,test-label-counter",
        n_images=20,
    )
    result = run(config)
    write_outputs(tmp_path, result.keys)
    assert result.failed == 0
    # reset before each of its two cells; the accuracy pass (10,000 images) came before the
    # first reset, the 20 replayed FGSM examples before the second
    assert len(DEFENSE.at_reset) == 2
    assert DEFENSE.at_reset[0] >= 10_000 and DEFENSE.at_reset[1] == 20
    assert DEFENSE.monitored == [7]  # the oracle's monitors saw the extraction's queries
    rows = pd.read_csv(tmp_path / "results.csv").set_index(["defense", "attack"])
    stateful = rows.loc[("test-stateful", "fgsm")]
    assert "self-check: nothing to report" in stateful["warnings"]
    from paraeval.run.store import Store

    with Store(tmp_path) as store:
        stored = [store.cell(key).row for key in result.keys]
    assert [r.get("info") for r in stored if r["defense"] == "test-stateful"] == [
        {"queries_before_protect": 0}
    ] * 2
    extraction = rows.loc[("test-plain", "test-label-counter")]
    assert extraction["answers_seen"] == 7 and extraction["one_label_each"] == 1
    assert extraction["queries_counted"] == 7 and extraction["headline"] == "answers_seen"
    summary = result.summary.set_index(["defense", "attack"])
    assert summary.loc[("test-plain", "test-label-counter"), "answers_seen_mean"] == 7


def test_an_undeclared_metric_fails_its_cell_instead_of_adding_a_column(
    victims, tmp_path, contract_plugin
) -> None:
    from paraeval.run.runner import RunConfig, run

    config = RunConfig(
        victims=["vm"], defenses="test-plain", attacks="test-misspelled", out=tmp_path, n_images=20
    )
    (row,) = run(config).rows
    assert row["status"] == "failed" and "answers_sen" not in row
    assert "does not declare in metric_docs: answers_sen" in row["error"]


def test_a_metric_may_not_take_a_schema_column() -> None:
    from paraeval.plugin.checks import check_metrics

    with pytest.raises(UserError, match=r"m_adv are results\.csv columns"):
        check_metrics("mine", {"m_adv": 1.0}, {"m_adv": "mine"}, {"m_adv", "accuracy"})
    check_metrics("mine", {"found": 1.0}, {"found": "mine"}, {"m_adv"})  # declared, free


def test_a_stray_key_in_a_result_row_is_an_error_not_a_column() -> None:
    from paraeval.run.results import metric_columns

    assert metric_columns([{"mode": "extraction", "fidelity": 0.9}]) == ["fidelity"]
    with pytest.raises(ValueError, match="m_adv_typo"):
        metric_columns([{"mode": "transfer", "m_adv_typo": 3.0}])


def test_a_plain_plugin_takes_no_options(contract_plugin, tmp_path) -> None:
    from paraeval.registry import configured_defenses

    (entry,) = configured_defenses("test-plain")
    assert entry.obj.tags == () and entry.obj.paper is None and not entry.obj.stateful
    with pytest.raises(UserError, match="takes no options"):
        configured_defenses("test-plain:strength=2")


def test_the_oracle_counts_bounds_and_answers_at_its_granularity() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    rows = torch.rand(6, 784)
    logits = Oracle(model)(rows)
    assert logits.dtype == torch.float64 and logits.shape == (6, 10)
    probabilities = Oracle(model, granularity="probabilities")(rows)
    assert torch.allclose(probabilities.sum(1), torch.ones(6, dtype=torch.float64))
    assert torch.equal(Oracle(model, granularity="label")(rows), logits.argmax(1))
    bounded = Oracle(model, budget=10)
    bounded(rows)
    with pytest.raises(QueryBudgetExceeded):
        bounded(rows)
    assert bounded.queries == 6 and bounded.fork().queries == 0
    with pytest.raises(UserError, match="granularity"):
        Oracle(model, granularity="scores")  # type: ignore[arg-type]


def test_the_oracle_answers_any_number_of_rows_alike(monkeypatch) -> None:
    """One row, BATCH rows, more (several forward calls) and none: the same logits per row."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double()
    monkeypatch.setattr(Oracle, "BATCH", 4)
    oracle = Oracle(model)
    rows = torch.rand(9, 784, dtype=torch.float64)
    with torch.no_grad():
        expected = model(rows)
    assert torch.allclose(oracle(rows), expected)  # 3 calls of at most 4 rows
    assert torch.allclose(oracle(rows[:4]), expected[:4])
    assert torch.allclose(oracle(rows[5:6]), expected[5:6])
    assert oracle(rows[:0]).shape == (0, 10) and oracle.queries == 14


def test_typed_options_parse_validate_and_list() -> None:
    from paraeval.attacks.pgd import PGDSweep

    pgd = PGDSweep().configure(steps="10", random_init="yes")
    assert pgd.options.steps == 10 and pgd.options.random_init is True
    assert pgd.key_options()["steps"] == 10 and PGDSweep().options.steps == 40
    with pytest.raises(UserError, match="max_eps must be >= eps_step"):
        PGDSweep().configure(eps_step="0.5", max_eps="0.1")
    rows = {row["option"]: row for row in PGDSweep.options_class.rows()}
    assert (
        rows["backend"]["values"] == "one of art|torchattacks" and rows["steps"]["default"] == "40"
    )
