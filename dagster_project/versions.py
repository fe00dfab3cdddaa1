"""Code versions from the source that produces an asset, so that a change to that code (and only
to that code) marks the asset stale in the UI. `code_version(module)` follows the imports: it
digests the pipelines module whose function an asset calls and every module of the project's
libraries that module imports, directly or through others (also inside functions), so no list
of modules is kept by hand. Nothing is imported to do it."""

import ast
import functools
import hashlib
import importlib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("featurizer", "recmodel", "pipelines")  # what an asset's code is made of


def source_version(*modules: str) -> str:
    """A digest of the Python source of `modules` (a package: every .py file under it)."""
    named = []
    for name in sorted(modules):
        module = importlib.import_module(name)
        paths = (
            sorted(Path(p) for root in module.__path__ for p in Path(root).rglob("*.py"))
            if hasattr(module, "__path__")
            else [Path(module.__file__)]
        )
        named += [(name, path) for path in paths]
    return _digest(named)


def code_version(*modules: str) -> str:
    """A digest of the source that `modules` (dotted names of LIBRARIES' modules, found without
    importing them: the assets import their pipelines code when they run) are made of: those
    modules and everything of LIBRARIES they import, transitively."""
    closure: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        todo += _imports(name)
    return _digest((name, _path(name)) for name in sorted(closure))


def _digest(named: Iterable[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for name, path in named:
        digest.update(f"{name}:{path.name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _path(module: str) -> Path:
    """The source file of one of LIBRARIES' modules, found without importing it."""
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@functools.cache
def _imports(module: str) -> tuple[str, ...]:
    """LIBRARIES' modules that `module` imports (`from a import b`: module a.b where it is one)."""
    found = set()
    for node in ast.walk(ast.parse(_path(module).read_bytes())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] not in LIBRARIES:
                continue
            while not _path(name).is_file():  # `from a import function`: module a
                name = name.rpartition(".")[0]
            found.add(name)
    return tuple(sorted(found))
