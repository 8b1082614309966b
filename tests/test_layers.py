"""The import picture: each package imports only from the floors below it, and no module imports itself back.

Floors, bottom up (README "Architecture"): compute; feeds and store; engine; service; dashboard. At the
edges: export (compute), cli (compute, feeds, store), serve.py and benchmarks (anything). Every import counts,
top-level or inside a function (not those under ``if TYPE_CHECKING:``, which never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Which of the project's packages each package may import (besides itself).
ALLOWED = {
    "compute": set(),
    "feeds": {"compute"},
    "store": {"compute"},
    "engine": {"compute", "store"},
    "service": {"compute", "feeds", "store", "engine"},
    "dashboard": {"compute", "engine", "service", "export", "store"},
    "export": {"compute"},
    "cli": {"compute", "feeds", "store"},
}


def _imports(path: Path) -> set[str]:
    """Dotted names of the project modules ``path`` imports (relative imports resolved)."""
    pkg_parts = list(path.relative_to(ROOT).with_suffix("").parts[:-1])  # the package holding the module
    out = set()
    for n in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg_parts[: len(pkg_parts) - n.level + 1]
                name = ".".join(base + ([n.module] if n.module else []))
            else:
                name = n.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in n.names)
    return {x for x in out if x.split(".")[0] in ALLOWED}


def _runtime_nodes(tree):
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only: not an import at run time)."""
    todo = [tree]
    while todo:
        n = todo.pop()
        yield n
        for child in ast.iter_child_nodes(n):
            test = getattr(child, "test", None)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _modules():
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name != "__main__.py":  # entry points are outside the import graph
                yield package, path


def test_no_package_imports_a_floor_above_it():
    wrong = []
    for package, path in _modules():
        for name in _imports(path):
            top = name.split(".")[0]
            if top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle_between_modules():
    modules = {}
    for _, path in _modules():
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imp in _imports(path):
            while imp and imp not in modules:  # "pkg.mod.func" -> "pkg.mod"
                imp = imp.rpartition(".")[0]
            if imp and imp != name and not name.startswith(imp + "."):  # a package's own __init__ is not a cycle
                deps.add(imp)
        graph[name] = deps
    state, cycle = {}, []

    def visit(node, stack):
        state[node] = 1
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                cycle.append(" -> ".join([*stack[stack.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycle, "import cycles:\n" + "\n".join(cycle)
