"""Fixtures of the pipelines tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def ray_session() -> Iterator[None]:
    """A local Ray (loopback) for the extraction runs of the modules that ask for it, shut down
    after the package (a module that shuts Ray down meanwhile gets a new one from the first
    extraction after it: extract_catalog starts Ray when it is not running)."""
    import ray

    from pipelines.ray_runtime import ensure_ray

    ensure_ray()
    yield
    ray.shutdown()
