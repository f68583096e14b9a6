"""DCP's formula, its readings, its options through paraeval, its entry point, and that the
package uses paraeval's public API only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from paraeval_dcp import DCP, DCPOptions, perturb
from torch import nn

PACKAGE = Path(__file__).resolve().parents[1] / "paraeval_dcp"


def _rows(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_confident_answers_are_left_alone_and_unsure_ones_are_moved() -> None:
    p = _rows([0.99, 0.005, 0.005], [0.4, 0.35, 0.25])
    out = perturb(p, DCPOptions(beta=0.5))
    assert torch.allclose(out[0], p[0], atol=1e-12)  # max p = 0.99 > beta: alpha ~ 0
    assert not torch.allclose(out[1], p[1], atol=1e-3)  # max p = 0.4 < beta: perturbed
    assert torch.allclose(out.sum(dim=1), torch.ones(2, dtype=torch.float64))
    assert (out > 0).all()


def test_the_official_odds_clamp_leaves_classes_above_one_half_unmoved() -> None:
    """The authors' code clamps p / (1 - p) to <= 1: r = 0 for p >= 1/2 (before renormalising)."""
    p = _rows([0.6, 0.3, 0.1])
    beta = 0.9  # max p = 0.6 < beta: perturbed
    official = perturb(p, DCPOptions(beta=beta, odds_clamp="official"))
    symmetric = perturb(p, DCPOptions(beta=beta, odds_clamp="symmetric"))
    # official: class 0 only shrinks through the renormalisation; the others grow
    raw = official / official[0, 0] * 0.6
    assert raw[0, 1] > 0.3 and raw[0, 2] > 0.1
    assert official[0, 0] > symmetric[0, 0]  # symmetric also pushes the top class down
    assert not torch.allclose(official, symmetric)


def test_the_protected_model_returns_finite_log_probabilities() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = torch.rand(64, 1, 28, 28)
    protected = DCP().protect(model, seed=0)
    logits = protected(x)
    assert torch.isfinite(logits).all()
    expected = perturb(torch.softmax(model(x), dim=1), DCPOptions())
    assert torch.allclose(torch.softmax(logits, dim=1), expected, atol=1e-6)
    assert torch.equal(model(x), model(x))  # the victim is untouched (deep copy)


def test_options_parse_and_check_through_paraeval() -> None:
    from paraeval.errors import UserError

    configured = DCP().configure(beta="1.0", odds_clamp="symmetric")
    assert configured.options == DCPOptions(beta=1.0, odds_clamp="symmetric")
    assert configured.key_options() != DCP().key_options()  # part of every cell key
    with pytest.raises(UserError, match="beta"):
        DCP().configure(beta="3")
    with pytest.raises(UserError, match="official"):
        DCP().configure(odds_clamp="both")


def test_entry_point_is_discovered_by_paraeval() -> None:
    """In a fresh process: found through the entry point, attributed to this distribution."""
    probe = (
        "from paraeval.registry import defenses; "
        "entry = defenses().entries['dcp']; print(entry.provider)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": ""},
    )
    assert result.stdout.strip() == "paraeval-dcp 0.1.0"


def test_only_the_public_api_is_imported() -> None:
    import paraeval

    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("paraeval"):
                assert node.module == "paraeval", f"{path.name}: from {node.module} import ..."
                private = [a.name for a in node.names if a.name not in paraeval.__all__]
                assert not private, f"{path.name} imports non-public {private}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("paraeval.") for a in node.names)
