"""The import graph of edgeq's packages has no cycle: every import counts (top level, inside functions,
under TYPE_CHECKING). A node is a sub-package (``edgeq.deploy``) or a top-level module (``edgeq.recipe``).

``python tests/test_import_graph.py`` prints the graph, one package and what it imports per line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgeq"


def _node(dotted: str) -> str | None:
    """``edgeq.deploy.plan`` -> ``edgeq.deploy``; ``edgeq`` -> ``edgeq``; not edgeq's -> None."""
    parts = dotted.split(".")
    if parts[0] != "edgeq":
        return None
    return ".".join(parts[:2])


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every edgeq module ``path`` imports, as dotted names (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from edgeq import recipe` imports the module edgeq.recipe
            found.update(f"{base}.{alias.name}" if base == "edgeq" else base for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Package -> the other edgeq packages it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _node(_module_name(path))
        assert source is not None
        targets = {_node(name) for name in _imports(path)}
        graph.setdefault(source, set()).update(t for t in targets if t is not None and t != source)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_cycle_between_edgeq_packages() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_hosts_sit_below_deploy_and_fleet() -> None:
    graph = import_graph()
    assert "edgeq.hosts" in graph["edgeq.deploy"] | graph["edgeq.fleet"] | graph["edgeq.remote"]
    assert not graph["edgeq.hosts"] & {"edgeq.deploy", "edgeq.fleet", "edgeq.remote", "edgeq.recipe"}
    assert "edgeq.fleet" not in graph["edgeq.deploy"]
    # the device agent runs alone on the device: it imports nothing else of edgeq
    assert graph["edgeq.device"] == set()


if __name__ == "__main__":
    edges = import_graph()
    for name in sorted(edges):
        print(f"{name} -> {', '.join(sorted(edges[name])) or '(nothing)'}")
    found = find_cycle(edges)
    print("cycle: " + " -> ".join(found) if found else "no cycle")
    sys.exit(1 if found else 0)
