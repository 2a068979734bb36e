"""The import rules of the package's layers, read from the source (every import, at module level or inside a
function): the parts that judge faces know nothing of where alerts go or how the daemon is configured, alerts and
cluster build on `monitor.redis` without importing each other, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monitor"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module -> the monitor modules it imports (a `from package import name` counts as the submodule when there
    is one)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("monitor")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                if not base.startswith("monitor"):
                    continue
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        found[name] = {t for t in targets if t in modules and t != name}
    return found


GRAPH = imports()


def importers(layer: str) -> dict[str, set[str]]:
    return {m: targets for m, targets in GRAPH.items() if m == layer or m.startswith(layer + ".")}


def inside(module: str, layers: tuple[str, ...]) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


RULES = [
    # (layer, layers it must not import)
    ("monitor.scoring", ("monitor.alerts", "monitor.cluster", "monitor.config", "monitor.daemon", "monitor.redis")),
    ("monitor.model", ("monitor.alerts", "monitor.cluster", "monitor.config", "monitor.daemon")),
    ("monitor.faces", ("monitor.alerts", "monitor.cluster", "monitor.config", "monitor.daemon")),
    ("monitor.sources", ("monitor.alerts", "monitor.cluster", "monitor.config", "monitor.daemon")),
    ("monitor.alerts", ("monitor.cluster", "monitor.daemon")),
    ("monitor.cluster", ("monitor.alerts", "monitor.daemon")),
    ("monitor.redis", ("monitor.alerts", "monitor.cluster", "monitor.config", "monitor.daemon")),
    ("monitor.worker", ("monitor.alerts", "monitor.config", "monitor.daemon")),
]


def test_the_import_graph_was_read():
    # The rules below mean nothing if the reader missed imports: a few that are certainly there.
    assert "monitor.scoring.judge" in GRAPH["monitor.scoring.replay"]
    assert "monitor.redis" in GRAPH["monitor.cluster.coordinator"]
    assert "monitor.alerts.spool" in GRAPH["monitor.daemon"] or "monitor.alerts" in GRAPH["monitor.daemon"]


@pytest.mark.parametrize("layer,forbidden", RULES, ids=[r[0] for r in RULES])
def test_a_layer_imports_only_what_it_may(layer, forbidden):
    broken = sorted(f"{m} -> {t}" for m, targets in importers(layer).items() for t in targets if inside(t, forbidden))
    assert not broken, f"{layer} must not import {forbidden}: " + ", ".join(broken)


def test_no_import_loop_between_modules():
    """Cycles among modules, a package's `__init__` aside (it re-exports its own modules)."""
    graph = {m: {t for t in targets if not (GRAPH.get(t) is not None and m.startswith(t + "."))}
             for m, targets in GRAPH.items()}
    loops, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                loops.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not loops, "import loops: " + "; ".join(loops)
