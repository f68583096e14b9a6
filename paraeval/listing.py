"""What `paraeval list plugins`, `list defenses|attacks --options` and `paraeval cache` show."""

from __future__ import annotations

from typing import Any


def plugin_rows() -> tuple[list[str], list[list[Any]]]:
    from .plugins import load_failures, load_plugins, plugin_distribution, pm

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
    from . import registry
    from .options import Options

    reg = registry.defenses() if defenses else registry.attacks()
    by_options: dict[type[Options], list[str]] = {}
    for entry in reg.entries.values():
        by_options.setdefault(type(entry.obj.options), []).append(entry.name)
    rows: list[list[Any]] = []
    for options, names in by_options.items():
        applies = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
        for row in options.rows():
            text = row["help"]
            if row["rule"]:
                text += f". Paper: {row['paper'] or '(silent)'}. Default: {row['rule']}"
            rows.append([applies, row["option"], row["values"], row["default"], text])
    return ["applies to", "option", "values", "default", "what it decides / paper"], rows


def cache_table(action: str) -> tuple[list[str], list[list[Any]], str, list[str]]:
    """`paraeval cache list|verify|clear`: the entries (verify: damaged ones are moved aside;
    clear: all are deleted), a title and messages for stderr."""
    from .cache import cache_dir, entries, set_aside, verify

    found = list(entries())
    if action == "clear":
        for entry in found:
            entry.path.unlink()
        return [], [], "", [f"removed {len(found)} entries from {cache_dir()}"]
    problems = {e.path: verify(e.path) for e in found} if action == "verify" else {}
    rows = [[e.kind, e.path.name, f"{e.size / 1024:.1f}", problems.get(e.path) or e.what]
            for e in found]  # fmt: skip
    messages = [
        f"moved damaged {path.name} to {set_aside(path).name}"
        for path, problem in problems.items()
        if problem
    ]
    return ["kind", "file", "KiB", "what"], rows, f"cache: {cache_dir()}", messages


def victim_rows() -> tuple[list[str], list[list[Any]]]:
    """The built-in victims: dataset, parameters, the paper's accuracy and, where this
    machine's cache holds the default-seed victim, its measured test accuracy."""
    from .cache import load_or_none
    from .models.victims import PAPER_VICTIM_ACCURACY, VICTIM_ARCHITECTURES
    from .training import VictimConfig, victim_path

    rows: list[list[Any]] = []
    for name, build in VICTIM_ARCHITECTURES.items():
        parameters = sum(p.numel() for p in build().parameters())
        info = load_or_none(victim_path(VictimConfig(name)), lambda _tensors, meta: meta)
        cached = f"{info['test_accuracy']:.2f}" if info and "test_accuracy" in info else ""
        rows.append([name, "mnist", parameters, PAPER_VICTIM_ACCURACY.get(name, ""), cached,
                     "paraeval (built in)"])  # fmt: skip
    columns = ["victim", "dataset", "parameters", "paper accuracy (%)", "cached accuracy (%)",
               "provided by"]  # fmt: skip
    return columns, rows


def list_rows(what: str, options: bool) -> tuple[list[str], list[list[Any]]]:
    """What `paraeval list WHAT [--options]` shows."""
    if options and what in ("defenses", "attacks"):
        return option_rows(what == "defenses")
    if what in ("defenses", "attacks"):
        from . import registry

        reg = registry.defenses() if what == "defenses" else registry.attacks()
        rows = [[entry.name, entry.provider, ",".join(entry.tags), entry.obj.description]
                for entry in reg.entries.values()]  # fmt: skip
        return ["name", "plugin", "tags", "description"], rows
    return plugin_rows() if what == "plugins" else victim_rows()


def layer_rows(victim: str) -> tuple[list[str], list[list[Any]]]:
    """What `paraeval inspect VICTIM` shows: each layer and where a parasite fits."""
    from .errors import UserError
    from .models.layers import layers
    from .models.victims import VICTIM_ARCHITECTURES

    if victim not in VICTIM_ARCHITECTURES:
        raise UserError(f"unknown victim {victim!r}; valid: {', '.join(VICTIM_ARCHITECTURES)}")
    rows: list[list[Any]] = [
        [layer.name, layer.kind, layer.shape_text, layer.neurons, layer.parasite_fits]
        for layer in layers(VICTIM_ARCHITECTURES[victim]())
    ]  # fmt: skip
    return ["layer", "module", "output", "neurons", "parasite neurons="], rows
