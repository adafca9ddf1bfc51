"""The library's shape, read from its imports: no module imports itself
back through others, and the wings depend on each other one way only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"
PACKAGE = SUITE / "rmapbench"
# What the host wings may use of bench: its registry and the programs'
# entry (to refuse before a boot what a program would refuse).
BENCH_PUBLIC = {"rmapbench.bench", "rmapbench.bench.cases", "rmapbench.bench.program"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SUITE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """rmapbench modules path imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("rmapbench")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path) & modules.keys() - {name} for name, path in modules.items()}


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    # A package's __init__ re-exporting its modules is not a cycle of code.
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d):], d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


@pytest.mark.parametrize(("source", "forbidden"), [
    ("bench", {"guest", "analysis"}),
    ("ksft", {"guest", "analysis", "scenarios", "triggers", "tracing"}),
    ("machine", {"bench", "guest", "analysis", "scenarios", "triggers", "tracing"}),
    ("scenarios", {"bench", "guest", "analysis"}),
    ("triggers", {"bench", "guest", "analysis"}),
    ("tracing", {"bench", "guest", "analysis", "scenarios"}),
])
def test_wings_point_one_way(graph: dict[str, set[str]], source: str, forbidden: set[str]
                             ) -> None:
    wrong = sorted(f"{m} -> {d}" for m, deps in graph.items() if wing(m) == source
                   for d in deps if wing(d) in forbidden)
    assert not wrong


def test_other_wings_use_only_the_face_of_bench(graph: dict[str, set[str]]) -> None:
    """The runner and the summary order and select by the registry; the host
    refuses before a boot what a program would refuse."""
    wrong = sorted(f"{m} -> {d}" for m, deps in graph.items() if wing(m) != "bench"
                   for d in deps if wing(d) == "bench" and d not in BENCH_PUBLIC)
    assert not wrong


def test_programs_import_only_the_entry() -> None:
    for prog in sorted(SUITE.glob("rmap_*.py")):
        assert imports(prog) == {"rmapbench.bench.program", "rmapbench.bench.program.main"}, prog
