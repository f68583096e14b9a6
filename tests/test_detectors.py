"""Query-stream detectors: calibration, fresh detectors per stream, what they catch, and
Knockoff's queries to the first alarm."""

from __future__ import annotations

import pytest
import torch

from paraeval import registry
from paraeval.api import Oracle, RunContext, StreamDetector
from paraeval.datasets.idx import MNIST

#: Small calibrations: the tests check behaviour, not the figures of a full run.
QUICK = "stream=150,streams=20"


def _defense(spec: str, mnist):
    (entry,) = registry.configured_defenses(spec)
    return entry.obj.bind(RunContext(MNIST.as_float(mnist.train_images)))


class Counting(StreamDetector):
    """Suspicion = queries seen so far (a detector whose alarm time is known)."""

    def observe(self, rows: torch.Tensor) -> list[float]:
        return [float(self.queries + i + 1) for i in range(len(rows))]


def test_the_alarm_fires_once_at_the_threshold_and_forks_start_fresh(victims) -> None:
    detector = Counting()
    detector.threshold = 30.0
    oracle = Oracle(victims["vm"][0], granularity="probabilities", monitors=(detector,))
    oracle(torch.rand(25, 784))
    assert oracle.first_alarm() is None
    oracle(torch.rand(25, 784))
    assert (detector.alarm_at, detector.queries, oracle.first_alarm()) == (30, 50, 30)
    fork = oracle.fork()
    assert fork.first_alarm() is None and fork.detectors[0].queries == 0
    assert fork.detectors[0].threshold == 30.0 and detector.queries == 50  # original untouched


def test_calibration_lets_at_most_the_target_share_of_benign_streams_alarm() -> None:
    from paraeval.defenses.detectors import calibrate, stream_score

    streams = [torch.full((40, 784), float(i)) for i in range(20)]  # max suspicion = 40 each

    class ByValue(StreamDetector):
        def observe(self, rows: torch.Tensor) -> list[float]:
            return rows[:, 0].tolist()  # suspicion = the stream's value: 0 .. 19

    threshold, reached = calibrate(ByValue(), streams, fpr=0.1)
    assert reached == pytest.approx(0.1)
    alarmed = [stream_score(_armed(ByValue(), threshold), s).alarm_at for s in streams]
    assert [i for i, a in enumerate(alarmed) if a is not None] == [18, 19]


def _armed(detector: StreamDetector, threshold: float) -> StreamDetector:
    detector.threshold = threshold
    return detector


@pytest.mark.parametrize("name", ["prada", "atli-ood"])
def test_a_detector_defense_answers_like_the_victim_and_its_accuracy_pass_is_not_watched(
    name, victims, mnist
) -> None:
    from paraeval.core.metrics import predict
    from paraeval.run.cells import VictimContext
    from paraeval.run.groups import protect

    defense = _defense(f"{name}:{QUICK}", mnist)
    model = victims["vm"][0]
    images = MNIST.as_float(mnist.test_images)
    ctx = VictimContext(
        "vm",
        model,
        99.0,
        images,
        mnist.test_labels,
        images[:8],
        mnist.test_labels[:8],
        predict(model, images[:8]),
    )
    protection = protect(ctx, defense, seed=0)
    (detector,) = protection.monitors
    assert isinstance(detector, StreamDetector) and detector.threshold is not None
    assert detector.queries == 0  # the accuracy pass on 10,000 images never fed it
    assert torch.equal(predict(protection.model, images[:500]), predict(model, images[:500]))
    detector(images[:200].reshape(200, -1).double())
    defense.reset()
    assert (detector.queries, detector.alarm_at) == (0, None)


def test_atli_ood_catches_out_of_distribution_streams_not_held_out_users(victims, mnist) -> None:
    result = _streams("atli-ood", victims, mnist)
    assert result.metrics["tpr_noise"] >= 90.0  # uniform noise is far from any digit
    assert result.metrics["fpr_benign"] <= 20.0
    # the evader's in-distribution queries look like the users': caught about as often
    assert result.metrics["tpr_evader"] <= 20.0


def test_query_streams_without_a_detector_is_a_note_not_a_failure(victims) -> None:
    (entry,) = registry.configured_attacks("query-streams:streams=10,stream=50")
    oracle = Oracle(victims["vm"][0], granularity="probabilities")
    result = entry.obj.extract(victims["vm"][0], oracle, torch.rand(6000, 1, 28, 28), seed=0)
    assert result.metrics == {} and "no query-stream detector" in result.details[0]["note"]


def _streams(defense_spec: str, victims, mnist):
    model = victims["vm"][0]
    protected = _defense(f"{defense_spec}:{QUICK}", mnist).protect(model, seed=0)
    oracle = Oracle(protected.model, granularity="probabilities", monitors=protected.monitors)
    (entry,) = registry.configured_attacks("query-streams:streams=20,stream=150")
    return entry.obj.extract(model, oracle, MNIST.as_float(mnist.test_images), seed=0)


def test_knockoff_reports_when_the_detector_caught_it(victims, mnist) -> None:
    model = victims["vm"][0]
    protected = _defense(f"atli-ood:{QUICK}", mnist).protect(model, seed=0)
    oracle = Oracle(protected.model, granularity="probabilities", monitors=protected.monitors)
    (entry,) = registry.configured_attacks("knockoff:budgets=400,pool=noise,epochs=1")
    images = MNIST.as_float(mnist.test_images)
    result = entry.obj.extract(model, oracle, images, seed=0, labels=mnist.test_labels)
    caught = result.metrics["queries_to_alarm"]
    assert caught is not None and 50 <= caught < 400  # after one window of 50 noise queries
    assert result.details[0]["fidelity_at_alarm"] is not None
    (plain,) = registry.configured_attacks("knockoff:budgets=100,epochs=1")
    bare = Oracle(model, granularity="probabilities")
    undefended = plain.obj.extract(model, bare, images, seed=0, labels=mnist.test_labels)
    assert undefended.metrics["queries_to_alarm"] is None  # no detector: nothing to report
    assert "fidelity_at_alarm" not in undefended.details[0]


def test_the_report_and_the_verdict_show_the_companion_cells(victims, tmp_path) -> None:
    from paraeval.report.html import rerender
    from paraeval.run.runner import RunConfig, run
    from paraeval.study.verdict import sentences

    config = RunConfig(
        victims=["vm"],
        defenses=f"none,atli-ood:{QUICK}",
        n_images=20,
        out=tmp_path,
        attacks="knockoff:budgets=100+300,epochs=1,pool=digits,query-streams:streams=10,stream=60",
    )
    result = run(config)
    assert result.failed == 0, [r.get("error") for r in result.rows]
    html = rerender(tmp_path).read_text()
    section = html[html.index('id="companions"') :]
    assert section.count("<svg") >= 1  # fidelity against queries
    assert "atli-ood" in section and "tpr_digits" in section
    found = sentences(tmp_path)
    assert any(s.startswith("Detector atli-ood:") and "(vm): true-positive" in s for s in found)
    evading = [s for s in found if s.startswith("knockoff") and "against atli-ood" in s]
    assert len(evading) == 1 and "raised the alarm in 1 of 1 seed(s)" in evading[0]


def test_pradas_shapiro_wilk_is_scipys_statistic_bit_for_bit() -> None:
    import warnings

    import numpy as np
    from scipy.stats import shapiro

    from paraeval.defenses.detectors import shapiro_statistic

    fast = shapiro_statistic()
    rng = np.random.default_rng(0)
    for n in (3, 4, 100, 101, 999, 5001):
        values = list(rng.exponential(size=n))  # PRADA's distances: positive, skewed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert fast(np.asarray(values)).statistic == shapiro(values).statistic
