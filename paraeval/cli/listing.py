"""What `paraeval list plugins`, `list defenses|attacks --options` and `paraeval cache` show."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paraeval.errors import UserError

if TYPE_CHECKING:
    from paraeval.run.store import Store


def plugin_rows() -> tuple[list[str], list[list[Any]]]:
    from paraeval.plugin.manager import load_failures, load_plugins, plugin_distribution, pm

    load_plugins()
    rows: list[list[Any]] = [
        [name, plugin_distribution(plugin), "loaded"] for name, plugin in pm.list_name_plugin()
    ]
    for failure in load_failures:
        last = failure.error.strip().splitlines()[-1]
        rows.append([failure.name, "", f"failed to import: {last}"])
    return ["plugin", "distribution", "status"], rows


def option_rows(defenses: bool) -> tuple[list[str], list[list[Any]]]:
    """Every plugin's typed options: values, default, what it decides, the paper's sentence."""
    from paraeval import registry
    from paraeval.options import Options

    reg = registry.defenses() if defenses else registry.attacks()
    by_options: dict[tuple[type[Options], tuple[str, ...]], list[str]] = {}
    for entry in reg.entries.values():
        refused = tuple(sorted(getattr(entry.obj, "refused_options", ())))
        by_options.setdefault((type(entry.obj.options), refused), []).append(entry.name)
    rows: list[list[Any]] = []
    for (options, refused), names in by_options.items():  # a refused option is not listed
        applies = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
        for row in (r for r in options.rows() if r["option"] not in refused):
            text = row["help"]
            if row["rule"]:
                text += f". Paper: {row['paper'] or '(silent)'}. Default: {row['rule']}"
            rows.append([applies, row["option"], row["values"], row["default"], text])
    return ["applies to", "option", "values", "default", "what it decides / paper"], rows


def cache_table(action: str) -> tuple[list[str], list[list[Any]], str, list[str]]:
    """`paraeval cache list|verify|clear`: the entries (verify: damaged ones are moved aside;
    clear: all are deleted), a title and messages for stderr."""
    from paraeval.core.cache import cache_dir, entries, set_aside, verify

    found = list(entries())
    if action == "clear":
        for entry in found:
            entry.path.unlink()
        shipped = cache_dir() / "models"  # model files a run shipped to this worker
        if shipped.is_dir():
            shutil.rmtree(shipped)
        return [], [], "", [f"removed {len(found)} entries from {cache_dir()}"]
    problems = {e.path: verify(e.path) for e in found} if action == "verify" else {}
    rows = [
        [e.kind, e.path.name, f"{e.size / 1024:.1f}", problems.get(e.path) or e.what] for e in found
    ]
    messages = [
        f"moved damaged {path.name} ({problem}) to {set_aside(path).name}"
        for path, problem in problems.items()
        if problem
    ]
    return ["kind", "file", "KiB", "what"], rows, f"cache: {cache_dir()}", messages


def victim_rows() -> tuple[list[str], list[list[Any]]]:
    """The registered victims: dataset, parameters, the paper's accuracy and, where this
    machine's cache holds the default-seed victim, its measured test accuracy."""
    from paraeval import registry
    from paraeval.core.cache import load_or_none
    from paraeval.models.victim_base import architecture
    from paraeval.run.lookup import dataset_named
    from paraeval.training.victims import VictimConfig, victim_path

    rows: list[list[Any]] = []
    for name, entry in registry.victims().entries.items():
        victim = entry.obj
        parameters = sum(p.numel() for p in architecture(victim).parameters())
        config = VictimConfig.of(victim, dataset_named(victim.dataset))
        info = load_or_none(victim_path(config), lambda _tensors, meta: meta)
        cached = f"{info['test_accuracy']:.2f}" if info and "test_accuracy" in info else ""
        paper = "" if victim.paper_accuracy is None else victim.paper_accuracy
        rows.append([name, victim.dataset, parameters, paper, cached, entry.provider])
    columns = [
        "victim",
        "dataset",
        "parameters",
        "paper accuracy (%)",
        "cached accuracy (%)",
        "provided by",
    ]
    return columns, rows


def dataset_rows() -> tuple[list[str], list[list[Any]]]:
    """The registered datasets: input shape, classes, value range, description, provider."""
    from paraeval import registry

    rows = [
        [
            name,
            entry.obj.shape_text,
            entry.obj.classes,
            "{} .. {}".format(*entry.obj.value_range),
            entry.provider,
            entry.obj.description,
        ]
        for name, entry in registry.datasets().entries.items()
    ]
    return ["dataset", "input", "classes", "values", "provided by", "description"], rows


def list_rows(what: str, options: bool) -> tuple[list[str], list[list[Any]]]:
    """What `paraeval list WHAT [--options]` shows."""
    if options and what in ("defenses", "attacks"):
        return option_rows(what == "defenses")
    if what in ("defenses", "attacks"):
        from paraeval import registry

        reg = registry.defenses() if what == "defenses" else registry.attacks()
        rows = [
            [entry.name, entry.provider, ",".join(entry.tags), entry.obj.description]
            for entry in reg.entries.values()
        ]
        return ["name", "plugin", "tags", "description"], rows
    listed = {"plugins": plugin_rows, "victims": victim_rows, "datasets": dataset_rows}
    return listed[what]()


def layer_rows(
    victim: str, dataset: str | None = None, weights: str | None = None
) -> tuple[list[str], list[list[Any]]]:
    """What `paraeval inspect VICTIM` (or `inspect FILE.py:Class --dataset D`) shows: each
    layer and where a parasite fits."""
    from paraeval.errors import UserError
    from paraeval.models.layers import layers
    from paraeval.models.victim_base import ModelFileVictim, VictimBase, architecture
    from paraeval.run.lookup import dataset_named, victim_named

    if ":" in victim and victim.rpartition(":")[0].endswith(".py"):
        if dataset is None:
            raise UserError("inspect FILE.py:Class needs --dataset (paraeval list datasets)")
        found: VictimBase = ModelFileVictim(victim, dataset, Path(weights) if weights else None)
    else:
        found = victim_named(victim)
    shape = dataset_named(found.dataset).input_shape
    rows: list[list[Any]] = [
        [layer.name, layer.kind, layer.shape_text, layer.neurons, layer.parasite_fits]
        for layer in layers(architecture(found), shape)
    ]
    return ["layer", "module", "output", "neurons", "parasite neurons="], rows


def _store(directory: Path) -> Store:
    from paraeval.run.store import DB_NAME, Store

    if not (directory / DB_NAME).is_file():
        raise UserError(f"no results store in {directory} (no {DB_NAME})")
    return Store(directory)


def run_rows(directory: Path) -> tuple[list[str], list[list[Any]]]:
    """`paraeval store runs DIR`: every run record, with the cells it listed and stored."""
    with _store(directory) as store:
        stored = dict(
            store.connection.execute("SELECT run_id, COUNT(*) FROM cells GROUP BY run_id")
        )
        rows = [
            [
                run["id"],
                run["started"][:19],
                run["wall_seconds"],
                len(run["cells"]),
                stored.get(run["id"], 0),
                run["command"],
            ]
            for run in store.runs()
        ]
    return ["run", "started", "wall s", "cells listed", "cells stored", "command"], rows


def prune_store(directory: Path, since_run: int | None, dry_run: bool) -> str:
    """`paraeval store prune DIR --since-run ID`: what went (or would go)."""
    if since_run is None:
        raise UserError("store prune needs --since-run ID (paraeval store runs DIR lists them)")
    with _store(directory) as store:
        before = store.path.stat().st_size
        cells, runs = store.prune(since_run, dry_run=dry_run)
        after = store.path.stat().st_size
    if dry_run:
        return f"would delete {cells} cell(s) and {runs} run record(s) from {directory}"
    return (
        f"deleted {cells} cell(s) and {runs} run record(s) from {directory}: "
        f"{before / 2**20:.1f} -> {after / 2**20:.1f} MiB"
    )
