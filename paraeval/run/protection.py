"""`paraeval.protect(victim, "defense:options", seed=...)`: the protected model a run attacks,
as an object in the user's hands (to deploy it, or to attack it with their own tools).

The model is built exactly as a run builds it: the same victim (trained and cached by the same
config), the defense bound to the same run context (the dataset's training images), under the
same seed stream (:func:`~paraeval.core.seeding.protection_seeding`), from the same parasite cache.
``paraeval protect VICTIM DEFENSE --out FILE`` saves its weights as safetensors with what the
defense recorded (the parasites' fit, the defender's selection); :func:`load_protected`
rebuilds it from that file and checks that the weights are the saved ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from paraeval import registry
from paraeval.api import Protected
from paraeval.core.cache import load_weights, save_weights, tensor_digest
from paraeval.core.seeding import protection_seeding
from paraeval.errors import UserError
from paraeval.models.victim_base import check_victim_model
from paraeval.run.groups import run_context
from paraeval.run.lookup import dataset_named, load_dataset, victim_config
from paraeval.run.results import PARASITE_FIT
from paraeval.training.victims import load_or_train_victim


def protect(
    victim: str | nn.Module,
    defense: str,
    *,
    seed: int = 0,
    dataset: str | None = None,
    victim_seed: int = 0,
    data_dir: Path | None = None,
) -> Protected:
    """The protected model of (`victim`, `defense`, `seed`) with what the defense recorded:
    `victim` is a registered victim's name (trained or loaded from the cache as a run would)
    or a module classifying `dataset`; `defense` one defense with its options."""
    if isinstance(victim, str):
        config = victim_config(victim, seed=victim_seed)
        splits = load_dataset(config.dataset, data_dir)
        model, name = load_or_train_victim(config, splits)[0], config.dataset
    else:
        if dataset is None:
            raise UserError("protect(module, ...) needs dataset=... (paraeval list datasets)")
        check_victim_model(victim, dataset_named(dataset), "protect")
        splits, model, name = load_dataset(dataset, data_dir), victim.eval(), dataset
    entries = registry.configured_defenses(defense)
    if len(entries) != 1:
        raise UserError(f"protect takes one defense; {defense!r} selects {len(entries)}")
    bound = entries[0].obj.bind(run_context(splits, dataset_named(name)))
    with protection_seeding(bound.name, seed):
        return Protected.of(bound.protect(model, seed=seed))


def save_protected(path: Path, protected: Protected, recipe: dict[str, Any]) -> None:
    """The protected model's weights, the `recipe` that rebuilds it (victim, defense, seed) and
    what the defense recorded, as one safetensors file."""
    save_weights(
        path, protected.model.state_dict(), {"recipe": recipe, "info": recorded(protected)}
    )


def load_protected(path: Path, data_dir: Path | None = None) -> nn.Module:
    """The protected model saved at `path`: rebuilt from its recipe, then given the saved
    weights; an error when the rebuilt architecture or weights differ from the file's."""
    tensors, meta = load_weights(path)
    recipe = meta["recipe"]
    rebuilt = protect(
        recipe["victim"],
        recipe["defense"],
        seed=recipe["seed"],
        victim_seed=recipe.get("victim_seed", 0),
        data_dir=data_dir,
    )
    try:
        rebuilt.model.load_state_dict(tensors)  # the saved weights, whatever was rebuilt
    except RuntimeError as exc:
        raise UserError(
            f"{path}: the rebuilt model does not take the saved weights ({exc})"
        ) from None
    return rebuilt.model.eval()


def recorded(protected: Protected) -> dict[str, Any]:
    """What the defense recorded: its info and, under the key a cell stores them with, its
    parasites' fits."""
    fits = {PARASITE_FIT: list(protected.parasite_fits)} if protected.parasite_fits else {}
    return {**protected.info, **fits}


def describe(protected: Protected) -> str:
    """One JSON line of the facts the defense recorded (the parasites' fit, the selection)."""
    digest = tensor_digest(protected.model.state_dict())[:16]
    return json.dumps({"weights_sha256": digest, **recorded(protected)}, default=str)


__all__ = ["describe", "load_protected", "protect", "recorded", "save_protected"]
