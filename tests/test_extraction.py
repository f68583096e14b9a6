"""Critical-point extraction (Carlini et al. 2020): search, normals, ground truth, scoring."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paraeval.api import Oracle
from paraeval.attacks.critical_points import CriticalPointAttack, draw_line
from paraeval.extraction.scalar_oracle import ScalarOracle
from paraeval.extraction.search import normal_at, search_line
from paraeval.extraction.truth import MATCH_TOLERANCE, FirstLayer, kink_source
from paraeval.models.insertion import Placement, insert_parasites
from paraeval.models.mlp import MLP
from paraeval.models.parasite import ParasiticCNN


def small_mlp(hidden: int = 16, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(hidden).eval()


def random_line(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    offset = torch.randn(784, generator=generator, dtype=torch.float64)
    return offset, torch.randn(784, generator=generator, dtype=torch.float64)


def test_search_finds_every_hidden_unit_crossing_of_a_two_layer_network() -> None:
    """In a 784-16-10 MLP every ReLU crossing is a visible kink: all found, nothing else."""
    model = small_mlp()
    oracle, truth = ScalarOracle(Oracle(model), seed=1), FirstLayer.of(model)
    offset, direction = random_line(2)
    search = search_line(oracle, offset, direction, -100.0, 100.0, budget=100_000)
    assert search.complete
    crossings = truth.crossings(offset, direction)
    expected = sorted(float(t) for t in crossings if -100 <= t <= 100)
    found = sorted(p.t for p in search.points)
    assert len(expected) >= 10 and len(found) == len(expected)
    tolerance = MATCH_TOLERANCE * 200
    assert all(abs(a - b) <= tolerance for a, b in zip(found, expected, strict=True))
    assert search.queries == oracle.queries


def test_recovered_normal_is_the_units_weight_vector() -> None:
    model = small_mlp()
    oracle, truth = ScalarOracle(Oracle(model), seed=1), FirstLayer.of(model)
    offset, direction = random_line(3)
    search = search_line(oracle, offset, direction, -100.0, 100.0, budget=100_000)
    before = oracle.queries
    normal = normal_at(oracle, offset, direction, search.points[0])
    assert oracle.queries - before == 2 * 785
    assert truth.best_cosine(normal) > 0.999
    assert truth.best_cosine(torch.randn(784, dtype=torch.float64)) < 0.5


def test_budget_is_respected_and_the_unsearched_part_is_reported() -> None:
    model = small_mlp(hidden=64)
    oracle = ScalarOracle(Oracle(model), seed=1)
    offset, direction = random_line(4)
    search = search_line(oracle, offset, direction, -1000.0, 1000.0, budget=150)
    assert search.queries <= 150 and oracle.queries == search.queries
    assert not search.complete and search.unsearched
    inside = search.unsearched[0]
    assert not search.searched((inside[0] + inside[1]) / 2)


def test_first_layer_ground_truth_of_lenet_matches_its_convolution() -> None:
    from paraeval.models.lenet import LeNet

    torch.manual_seed(0)
    lenet = LeNet(batch_norm=False).eval()
    truth = FirstLayer.of(lenet)
    assert truth.jacobian.shape == (6 * 28 * 28, 784)
    x = torch.rand(3, 784, dtype=torch.float64)
    expected = lenet.conv1.double()(x.reshape(3, 1, 28, 28)).flatten(1)
    assert torch.allclose(truth(x), expected)
    # a border unit sees a clipped 5x5 kernel: fewer non-zero input weights
    assert int((truth.jacobian[0] != 0).sum()) == 9
    assert int((truth.jacobian[14 * 28 + 14] != 0).sum()) == 25


def test_a_parasite_kink_is_attributed_to_the_parasite() -> None:
    """Probing either side of a parasite's own ReLU switch names the parasite."""
    model = small_mlp(hidden=16)
    torch.manual_seed(1)
    parasite = ParasiticCNN(batch_norm=False, bias="small").eval()
    protected = insert_parasites(model, [(Placement(1, "after", "whole"), parasite)])
    oracle, truth = ScalarOracle(Oracle(protected), seed=1), FirstLayer.of(model)
    offset, direction = random_line(5)
    search = search_line(oracle, offset, direction, -100.0, 100.0, budget=200_000)
    crossings = truth.crossings(offset, direction)
    sources = []
    for point in search.points:
        if float((crossings - point.t).abs().min()) <= MATCH_TOLERANCE * 200:
            continue
        step = point.probe_step
        before = offset + (point.t - step) * direction
        after = offset + (point.t + step) * direction
        sources.append(kink_source(oracle.scoring_model, before, after))
    assert sources and set(sources) <= {"parasite", "unexplained"}
    assert sources.count("parasite") > len(sources) / 2


def test_lines_are_seeded_and_in_domain_lines_join_two_images() -> None:
    images = torch.rand(10, 1, 28, 28)
    a = draw_line("in-domain", torch.Generator().manual_seed(0), images, 1e3)
    b = draw_line("in-domain", torch.Generator().manual_seed(0), images, 1e3)
    assert torch.equal(a[0], b[0]) and (a[2], a[3]) == (0.0, 1.0)
    end = a[0] + a[1]
    assert any(torch.allclose(end, image.flatten().double()) for image in images)
    offset, direction, low, high = draw_line("carlini", torch.Generator(), images, 500.0)
    assert (low, high) == (-500.0, 500.0) and offset.shape == direction.shape == (784,)


def test_attack_scores_an_unprotected_mlp_perfectly() -> None:
    model = small_mlp(hidden=16)
    attack = CriticalPointAttack(budget=3000, normals=3)
    result = attack.extract(model, Oracle(model), torch.rand(20, 1, 28, 28), seed=0)
    metrics = result.metrics
    assert metrics["cp_precision"] == 1.0
    assert metrics["cp_recall"] == 1.0
    assert metrics["cp_normals_cos99"] == 1.0
    assert metrics["cp_parasite_fraction"] == 0.0
    assert [row["lines"] for row in result.details] == ["carlini", "in-domain"]
    assert all(row["queries"] <= 3000 + 3 * 1570 for row in result.details)


def test_invalid_options_are_rejected() -> None:
    from paraeval.errors import UserError

    with pytest.raises(UserError, match="lines"):
        CriticalPointAttack(lines="diagonal")
    with pytest.raises(UserError, match="budget"):
        CriticalPointAttack(budget="5")


def test_oracle_counts_queries_and_is_float64() -> None:
    oracle = ScalarOracle(Oracle(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))), seed=0)
    values = oracle(torch.rand(7, 784))
    assert values.dtype == torch.float64 and values.shape == (7,) and oracle.queries == 7


def test_two_layer_extraction_is_functionally_equivalent() -> None:
    """Every hidden unit recovered, orientation fixed by the skip term: identical arg-max."""
    from paraeval.extraction.two_layer import extract_two_layer

    model = small_mlp(hidden=16, seed=3).double()
    oracle = lambda rows: model(rows.reshape(-1, 1, 28, 28)).detach()  # noqa: E731
    rows = torch.rand(300, 784, dtype=torch.float64)
    extracted, units = extract_two_layer(oracle, 784, torch.Generator().manual_seed(0), rows[:50])
    assert units == 16
    assert torch.allclose(extracted(rows), oracle(rows), atol=1e-6)


def test_whole_layer_parasite_kinks_are_attributed_to_the_parasite() -> None:
    """A whole-layer parasite sees 2 x C maps for the two probes: still split per probe."""
    from paraeval.models.lenet import LeNet

    torch.manual_seed(0)
    lenet = LeNet(batch_norm=False).eval()
    parasite = ParasiticCNN(batch_norm=False, bias="small").eval()
    protected = insert_parasites(lenet, [(Placement(1, "after", "whole"), parasite)]).double()
    seen = []
    hook = parasite.layers[1].register_forward_hook(lambda _m, i, _o: seen.append(i[0].shape))
    x = torch.rand(784, dtype=torch.float64)
    # move one parasite pre-activation across zero between the probes: find a unit near 0
    with torch.no_grad():
        protected(x.reshape(1, 1, 28, 28))
    hook.remove()
    assert seen[0][0] == 6  # one map per channel
    # probes 1e-12 apart cross no ReLU and switch no max-pool: nothing explains a kink there
    nudge = 1e-12 * torch.randn(
        784, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    assert kink_source(protected, x, x + nudge) == "unexplained"
    far = torch.rand(784, dtype=torch.float64)
    assert kink_source(protected, x, far) == "parasite"  # was "max-pool": maps were skipped
