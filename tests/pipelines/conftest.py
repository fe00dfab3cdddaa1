"""Fixtures of the pipelines tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """A local Ray (loopback) for one module's extraction runs, shut down after it."""
    import ray

    from pipelines.ray_runtime import ensure_ray

    ensure_ray()
    yield
    ray.shutdown()
