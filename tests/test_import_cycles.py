"""Imports in harness/ and providers/ run one way (spec -> data / prompt / validate -> providers ->
runner -> metrics -> report -> cli): no module imports, directly or through others, a module that
imports it back. Read from the source (AST), so a cycle hidden in a function-level import counts
too; imports under `if TYPE_CHECKING:` (annotations only, never executed) do not."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "providers")


def module_files() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level?) for every import that runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def resolve(module: str | None, level: int) -> str | None:
        if level == 0:
            return module
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (level - 1)] if level > 1 else base
        return ".".join(base + ([module] if module else []))

    def target(candidate: str) -> str | None:
        while candidate and candidate not in known:
            candidate = candidate.rpartition(".")[0]
        return candidate or None

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit_stmt(other, top)
                continue
            visit_stmt(child, top)

    def visit_stmt(child: ast.AST, top: bool) -> None:
        if isinstance(child, ast.Import):
            for alias in child.names:
                t = target(alias.name)
                if t:
                    found.append((t, child.lineno, top))
        elif isinstance(child, ast.ImportFrom):
            base = resolve(child.module, child.level)
            if base is None:
                return
            for alias in child.names:
                full = f"{base}.{alias.name}"
                t = full if full in known else target(base)
                if t:
                    found.append((t, child.lineno, top))
        else:
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(tree, True)
    return [(t, line, top) for t, line, top in found if t != name]


def import_graph() -> dict[str, list[tuple[str, int, bool]]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, list[tuple[str, int, bool]]], *, module_level_only: bool) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    edges = {n: sorted({t for t, _, top in deps if top or not module_level_only}) for n, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, []):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def describe(component: list[str], graph) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    for name in component:
        for t, line, top in graph[name]:
            if t in members:
                lines.append(f"  {name}:{line} imports {t} ({'module level' if top else 'in a function'})")
    return "\n".join(lines)


def test_the_walker_sees_both_kinds_of_import(tmp_path):
    """The checker itself: a cycle through a function-level import is found, one under
    TYPE_CHECKING is not."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n")
    known = {"a", "b", "c"}
    graph = {n: imports_of(n, tmp_path / f"{n}.py", known) for n in known}
    assert graph["b"] == [("a", 2, False)] and graph["c"] == []
    assert cycles(graph, module_level_only=False) == [["a", "b"]]
    assert cycles(graph, module_level_only=True) == []


def test_no_import_cycles_at_module_level():
    graph = import_graph()
    assert {"harness.runner", "providers.openai", "providers.batch", "harness.cache"} <= set(graph)
    found = cycles(graph, module_level_only=True)
    assert not found, "\n".join(describe(c, graph) for c in found)


def test_no_import_cycles_through_function_level_imports_either():
    graph = import_graph()
    found = cycles(graph, module_level_only=False)
    assert not found, "\n".join(describe(c, graph) for c in found)


def test_the_request_key_module_imports_nothing_of_the_project():
    graph = import_graph()
    assert graph["harness.keys"] == []
    assert not [t for t, _, _ in graph["providers.wire"] if t.startswith("providers.") and t != "providers.base"]


# What providers may use of harness: the spec they are configured by, its errors, the request key.
# (The runner, cache, metrics, report and CLI come after providers in the data flow.)
PROVIDERS_MAY_IMPORT = {"harness.errors", "harness.spec", "harness.keys"}


def test_providers_import_nothing_downstream_and_the_cache_not_the_runner():
    graph = import_graph()
    upward = [
        f"{name}:{line} imports {t}"
        for name, deps in graph.items() if name.split(".")[0] == "providers"
        for t, line, _ in deps if t.split(".")[0] == "harness" and t not in PROVIDERS_MAY_IMPORT
    ]
    upward += [f"harness.cache:{line} imports {t}" for t, line, _ in graph["harness.cache"]
               if t in ("harness.runner", "harness.cli") or t.startswith("harness.cli.")]
    assert not upward, "\n".join(upward)
