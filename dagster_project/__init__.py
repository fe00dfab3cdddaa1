"""Thin Dagster orchestration over `pipelines/`: `dagster dev` or
`dagster job execute -m dagster_project -j linkedout_full`."""

from dagster_project.definitions import defs

__all__ = ["defs"]
