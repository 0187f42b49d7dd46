"""The package's structure: imports go one way down the layers, never in a cycle, and files stay one screenful of
concerns. Imports are read with ast, including those inside functions and under ``if TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ssl_bench"

# top to bottom: a module may import its own layer or any layer below, never one above
# (docs/adding-an-algorithm.md#layout)
LAYERS = [
    ("cli",),
    ("executor",),
    ("runner", "plan", "leaderboard", "conformance", "benchmarks"),
    ("active",),
    ("train",),
    ("algorithms", "augment", "data", "models", "results", "locks"),
    (
        "config",
        "identity",
        "config_checks",
        "recipe_files",
        "registry",
        "plugins",
        "fault_hook",
        "atomic_write",
        "writable",
        "devices",
        "cpu_info",
    ),
    ("errors",),
]
# files allowed past MAX_LINES, and why
LONG_FILES: dict[str, str] = {}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str) -> str | None:
    """The package module a dotted import target lives in (``ssl_bench.train.Trainer`` -> ``ssl_bench.train``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            named = [f"{base}.{a.name}" for a in node.names]
            # `from pkg import submodule` imports the submodule; pkg itself only when a name is not a module
            targets = named + ([base] if any(n not in MODULES for n in named) else [])
        else:
            continue
        for target in targets:
            found = resolve(target) if target.startswith("ssl_bench") else None
            if found and found != module:
                out.add(found)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def layer(module: str) -> int:
    if module == "ssl_bench":
        return 0  # the package's front door (ssl_bench/__init__.py) sits at the top, beside cli: it drives the rest
    top = module.split(".")[1]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(
        f"{module} belongs to no layer: add its top-level name to LAYERS (and to docs/adding-an-algorithm.md#layout)"
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_front_door_sits_at_the_top():
    assert layer("ssl_bench") == layer("ssl_bench.cli") == 0
    assert "ssl_bench.runner" in GRAPH["ssl_bench"]  # imported inside run_recipe only


def test_the_graph_sees_function_level_and_relative_imports():
    assert "ssl_bench.plan" in GRAPH["ssl_bench.cli"]  # imported inside cmd_run only
    assert "ssl_bench.errors" in GRAPH["ssl_bench.cli"]
    assert "ssl_bench.data.splits" in GRAPH["ssl_bench.runner"]
    assert "ssl_bench.train.build" in GRAPH["ssl_bench.train"]  # the package re-exports its modules


def test_cycle_finder_on_a_known_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_imports_go_down_the_layers():
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, ts in GRAPH.items()
        for t in ts
        if layer(t) < layer(m)
    ]
    assert not upward, "imports that go up: " + "; ".join(sorted(upward))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_files_stay_small(path):
    rel = str(path.relative_to(PACKAGE))
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES or rel in LONG_FILES, f"{rel} has {n} lines: split its concerns (or justify in LONG_FILES)"
