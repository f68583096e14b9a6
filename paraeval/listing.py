"""What `paraeval list plugins` and `paraeval list defenses|attacks --options` show."""

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
