"""Knockoff Nets through the oracle: a thief that learns, per-budget metrics, pools."""

from __future__ import annotations

import pytest
import torch

from paraeval import registry
from paraeval.errors import UserError


def _attack(spec: str):
    (entry,) = registry.configured_attacks(spec)
    return entry.obj


def test_the_thief_learns_more_with_more_queries(victims, tmp_path) -> None:
    from paraeval.run.runner import RunConfig, run

    spec = "knockoff:budgets=100+1000,epochs=5"
    config = RunConfig(
        victims=["vm"], defenses="none,class-labels", attacks=spec, n_images=20, out=tmp_path
    )
    result = run(config)
    assert result.failed == 0, [r.get("error") for r in result.rows]
    none, labels = result.rows
    small, large = none["extraction"]
    assert (small["budget"], large["budget"]) == (100, 1000)
    assert small["queries"] == 100 and large["queries"] == 1000  # fresh counter per budget
    assert large["fidelity_victim"] > small["fidelity_victim"] and large["fidelity_victim"] > 60
    assert none["fidelity_victim"] == large["fidelity_victim"] and none["queries"] == 1000
    assert none["l1_distortion"] == 0.0  # the undefended oracle answers the victim's output
    assert labels["l1_distortion"] > 0.0  # one-hot answers differ from the probabilities
    assert result.summary.set_index("defense").loc["none", "headline"] == "fidelity_victim"


def test_pools() -> None:
    from paraeval.attacks.knockoff import SCORING, attacker_pool

    images, labels = torch.rand(SCORING + 300, 1, 28, 28), torch.randint(10, (SCORING + 300,))
    pool, pool_labels = attacker_pool("in-distribution", images, labels, 0)
    assert torch.equal(pool, images[SCORING:]) and torch.equal(pool_labels, labels[SCORING:])
    digits, digit_labels = attacker_pool("digits", images, labels, 0)
    assert digits.shape == (1797, 1, 28, 28) and digit_labels.shape == (1797,)
    assert float(digits.min()) >= 0.0 and float(digits.max()) <= 1.0
    noise, none = attacker_pool("noise", images, labels, 0)
    assert noise.shape == (300, 1, 28, 28) and none is None
    assert torch.equal(noise, attacker_pool("noise", images, labels, 0)[0])  # seeded


def test_options_set_the_oracle_and_reject_what_cannot_work() -> None:
    assert _attack("knockoff").granularity == "probabilities"
    assert _attack("knockoff:granularity=label").granularity == "label"
    assert _attack("knockoff:budgets=5000+100").options.budgets == (100, 5000)
    with pytest.raises(UserError, match="labelled pool"):
        _attack("knockoff:strategy=adaptive,pool=noise")
    with pytest.raises(UserError, match="budgets"):
        _attack("knockoff:budgets=5")


def test_the_thief_trains_where_the_victim_computes(victims, mnist, monkeypatch) -> None:
    """On a GPU run the victim reaches the attack wrapped (paraeval.core.devices.OnDevice) and
    the thief trains behind the same wrapper. Checked here on the CPU, where the wrapper is
    forced: the thief then trains through it (ART fitting a wrapped model, the optimizer over
    the wrapper's parameters) and must steal exactly what the unwrapped thief steals."""
    import paraeval.attacks.knockoff as knockoff
    from paraeval.api import Oracle
    from paraeval.core.devices import OnDevice, device_of
    from paraeval.datasets.idx import MNIST

    model = victims["vm"][0]
    images = MNIST.as_float(mnist.test_images)
    attack = _attack("knockoff:budgets=100,epochs=1")

    def steal(victim: torch.nn.Module):
        oracle = Oracle(model, granularity="probabilities")
        return attack.extract(victim, oracle, images, seed=0, labels=mnist.test_labels)

    plain = steal(model)
    thieves = []  # what each budget's _steal trained
    steal_method = knockoff.Knockoff._steal

    def recording(self, *args, **kwargs):
        thief, queried = steal_method(self, *args, **kwargs)
        thieves.append(thief)
        return thief, queried

    monkeypatch.setattr(knockoff.Knockoff, "_steal", recording)
    monkeypatch.setattr(knockoff, "on_device", lambda m, device: OnDevice(m, device))
    wrapped_victim = OnDevice(model, "cpu")
    assert device_of(wrapped_victim) == "cpu" and device_of(model) == "cpu"
    wrapped = steal(wrapped_victim)
    assert [type(thief) for thief in thieves] == [OnDevice]
    timed = {"latency_ratio": wrapped.metrics["latency_ratio"]}  # a timing, not a result
    assert wrapped.metrics == plain.metrics | timed and wrapped.metrics["fidelity_victim"] > 0
