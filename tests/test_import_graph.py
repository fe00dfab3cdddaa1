"""No module imports itself through others, and pipelines' stages import only the stages below
them. Checked on the source (every import statement, also those inside functions, which is where
a cycle hides from a single run; imports under `if TYPE_CHECKING:` never run and do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("featurizer", "recmodel", "pipelines", "dagster_project")
# pipelines' stages and the stages each may import; errors, files, hooks, ray_runtime and
# variants serve them all, and the CLI sits on top of them all
STAGES = {
    "dataset": set(),
    "store": {"dataset"},
    "extraction": {"dataset", "store"},
    "serving": {"dataset"},
    "report": {"dataset", "serving"},
    "training": {"dataset", "store", "serving", "report"},
    "demo": set(),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imported(tree: ast.AST) -> list[str]:
    """Every module name an import statement of `tree` names (`from a import b`: a.b, which is
    module b when a is a package and resolves to a otherwise), outside `if TYPE_CHECKING:`."""
    names: list[str] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            todo += node.orelse  # type: ignore[attr-defined]
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        todo += list(ast.iter_child_nodes(node))
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:  # the longest prefix that is a module of ours
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                return ".".join(parts[:end])
        return None

    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {m for m in map(resolve, _imported(tree)) if m and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_a_package(package: str) -> None:
    graph = {
        name: {d for d in deps if d.split(".")[0] == package}
        for name, deps in _graph().items()
        if name.split(".")[0] == package
    }

    assert _cycles(graph) == []


def test_a_pipelines_stage_imports_only_the_stages_below_it() -> None:
    def stage(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if parts[0] == "pipelines" and len(parts) > 1 else None

    offenders = {
        name: sorted(found - STAGES[stage(name)])
        for name, deps in _graph().items()
        if stage(name) in STAGES
        and (found := {stage(d) for d in deps if stage(d) in STAGES} - {stage(name)})
        - STAGES[stage(name)]
    }

    assert offenders == {}
