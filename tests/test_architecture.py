"""The project's structure, checked over the source with `ast` (no imports executed)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "paraeval"
MAX_LINES = 400
#: Optional plugin members: read through api.py's base classes, never probed in the core.
PLUGIN_MEMBERS = {
    "tags", "victims", "paper", "options", "configure", "parasite_configs", "kind", "declared",
    "paraeval_info", "headline", "stateful", "reset",
}  # fmt: skip


KNOWN: dict[str, Path] = {}


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        ): path
        for path in PACKAGE.rglob("*.py")
    }


def _module_level_imports(path: Path, name: str, lazy: bool = True) -> set[str]:
    """Modules of paraeval `name` imports: at import time, and (`lazy`) inside functions too
    (a deferred import hides a circle, it does not remove it); TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node) if lazy else [node]:
            if isinstance(child, ast.Import):
                found |= {a.name for a in child.names if a.name.startswith("paraeval")}
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(child, package)
                if base.startswith("paraeval"):
                    names = {f"{base}.{a.name}" for a in child.names}
                    # `from . import registry` imports the submodule; `from . import x` the
                    # package's attribute x (the package is then a dependency)
                    found |= names & set(KNOWN) or {base}
    return found


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


def import_graph() -> dict[str, set[str]]:
    known = modules()
    KNOWN.clear()
    KNOWN.update(known)
    return {
        name: {target for target in _module_level_imports(path, name) if target in known} - {name}
        for name, path in known.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (a list of modules, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    assert "paraeval.runner" in graph and "paraeval.cells" in graph["paraeval.runner"]
    assert find_cycle(graph) is None


def test_a_deferred_import_circle_is_found(tmp_path, monkeypatch) -> None:
    """The circle once found (runner -> report.tables at import, tables -> runner inside a
    function) is a circle for this test."""
    package = tmp_path / "paraeval"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "runner.py").write_text("from .tables import write_tables\n")
    (package / "tables.py").write_text("def f():\n    from .runner import COLUMNS\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package, raising=False)
    globals()["PACKAGE"], previous = package, PACKAGE
    try:
        assert find_cycle(import_graph()) == [
            "paraeval.runner",
            "paraeval.tables",
            "paraeval.runner",
        ]
    finally:
        globals()["PACKAGE"] = previous


def test_the_runner_does_not_render() -> None:
    imports = _module_level_imports(PACKAGE / "runner.py", "paraeval.runner", lazy=True)
    assert not any(name.startswith("paraeval.report") for name in imports)


def test_no_module_over_the_line_limit() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_core_reads_plugins_through_the_contract() -> None:
    """No getattr(obj, "<optional member>") outside api.py, no type: ignore on plugin data."""
    probes = []
    for name, path in modules().items():
        if name == "paraeval.api":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and node.args[1].value in PLUGIN_MEMBERS
            ):  # fmt: skip
                probes.append(f"{name}:{node.lineno}")
        assert "paraeval_info" not in path.read_text(), name
    assert probes == []
