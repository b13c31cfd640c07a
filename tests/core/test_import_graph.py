"""No import circles: the modules of ``sbt_core`` and of the first-party plugins form a directed acyclic
graph. Every ``import`` counts, wherever it stands (module level, inside a function, under
``TYPE_CHECKING``): a circle hidden in a function is still two modules that cannot be read apart.

A module's own parent packages are not edges (importing ``a.b`` always imports ``a`` first)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _packages() -> Iterator[Path]:
    yield ROOT / "sbt_core"
    for init in sorted((ROOT / "plugins").glob("*/sbt_*/__init__.py")):
        yield init.parent


def _modules() -> dict[str, Path]:
    modules = {}
    for package in _packages():
        for file in package.rglob("*.py"):
            parts = list(file.relative_to(package.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = file
    return modules


def _targets(module: str, file: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if file.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> first-party modules it imports (the longest module prefix of each imported name)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, file in modules.items():
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(module, file, node):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module and not module.startswith(target + "."):
                    edges.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_walk_sees_the_core_and_every_first_party_plugin() -> None:
    graph = import_graph()
    roots = {name.split(".")[0] for name in graph}
    assert {"sbt_core", "sbt_memory_metering", "sbt_stripe_billing", "sbt_cognito_auth"} <= roots
    assert "sbt_core.runtime.http.operation" in graph["sbt_core.runtime.http.openapi"]


def test_the_cycle_finder_finds_a_function_level_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_two_first_party_modules_import_each_other() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])
