"""Code versions from the source that produces an asset, so that a change to that code (and only
to that code) marks the asset stale in the UI."""

import hashlib
import importlib
from pathlib import Path


def source_version(*modules: str) -> str:
    """A digest of the Python source of `modules` (a package: every .py file under it)."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        module = importlib.import_module(name)
        paths = (
            sorted(Path(p) for root in module.__path__ for p in Path(root).rglob("*.py"))
            if hasattr(module, "__path__")
            else [Path(module.__file__)]
        )
        for path in paths:
            digest.update(f"{name}:{path.name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
