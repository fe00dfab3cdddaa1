"""Resources: where the data lives, which Ray to use, which extractor, which training settings,
which compact store views.

Every field can be set in the launchpad's run config (`resources: paths: config: ...`). A field
left unset falls back to an environment variable read when the run uses it (never when `defs`
is imported, so importing the project does not depend on the environment), then to the demo's
value."""

import os
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pydantic

from pipelines.demo.dataset import ensure_demo_dataset
from pipelines.extraction.preset import resolve_extractor

if TYPE_CHECKING:  # torch and Ray are imported where they are used (assets/variants.py)
    from pipelines.training.views import ViewSpec


def _setting(value: str | None, env: str, default: str) -> str:
    return value or os.environ.get(env) or default


class LinkedOutPaths(dg.ConfigurableResource):
    """The dataset (MicroLens layout), the feature store, the training runs (one directory per
    variant) and the evaluation report's own directory."""

    dataset_dir: str | None = pydantic.Field(
        default=None, description="default: $LINKEDOUT_DATASET, else data/demo/dataset"
    )
    store_dir: str | None = pydantic.Field(
        default=None, description="default: $LINKEDOUT_STORE, else data/demo/store"
    )
    runs_dir: str | None = pydantic.Field(
        default=None, description="default: $LINKEDOUT_RUNS, else data/demo/runs"
    )
    report_dir: str | None = pydantic.Field(
        default=None, description="default: $LINKEDOUT_REPORT, else data/demo/report"
    )

    @property
    def dataset(self) -> str:
        """A local directory or s3://bucket/prefix (a location, not always a path). The demo's
        own (data/demo/dataset) is generated the first time a run uses it; any other must hold
        a dataset already (it is a user's data, never written but for catalog.parquet and
        interactions.parquet)."""
        dataset = _setting(self.dataset_dir, "LINKEDOUT_DATASET", "data/demo/dataset")
        ensure_demo_dataset(dataset)
        return dataset

    @property
    def store(self) -> str:
        """A local directory or s3://bucket/prefix (a location, not always a path)."""
        return _setting(self.store_dir, "LINKEDOUT_STORE", "data/demo/store")

    @property
    def runs(self) -> Path:
        return Path(_setting(self.runs_dir, "LINKEDOUT_RUNS", "data/demo/runs"))

    @property
    def report(self) -> Path:
        return Path(_setting(self.report_dir, "LINKEDOUT_REPORT", "data/demo/report"))

    def run(self, variant: str) -> Path:
        """The one directory the `variant`'s training step writes."""
        return self.runs / variant


class RayCluster(dg.ConfigurableResource):
    """A local Ray (loopback only, no dashboard) unless `address` names a cluster. Not
    dagster-ray's LocalRay: it cannot join a cluster by address (its ray_address is always
    None), and its cluster resources are KubeRay's."""

    address: str | None = pydantic.Field(
        default=None, description="a Ray cluster; default: $RAY_ADDRESS, else a local Ray"
    )
    num_cpus: int | None = None

    def cluster_address(self) -> str | None:
        """The cluster to join; None: start a local Ray."""
        return self.address or os.environ.get("RAY_ADDRESS") or None

    def ensure_started(self) -> None:
        from pipelines.ray_runtime import ensure_ray

        ensure_ray(self.cluster_address(), self.num_cpus)


class ExtractorPreset(dg.ConfigurableResource):
    """The extractor: a preset name or JSON file, optionally with another local checkpoint."""

    preset: str | None = pydantic.Field(
        default=None, description="default: $LINKEDOUT_PRESET, else demo"
    )
    model: str | None = pydantic.Field(
        default=None, description="a local checkpoint; default: $LINKEDOUT_MODEL, else the preset's"
    )

    def config(self):  # -> featurizer.config.ExtractorConfig
        return resolve_extractor(
            preset=_setting(self.preset, "LINKEDOUT_PRESET", "demo"),
            model=self.model or os.environ.get("LINKEDOUT_MODEL") or None,
        )


class TrainingSettings(dg.ConfigurableResource):
    """Training's settings file: a shipped name (`demo`) or a YAML/JSON path (see
    pipelines/training/settings.py). Each variant's run config overrides single fields."""

    config: str | None = pydantic.Field(
        default=None, description="default: $LINKEDOUT_TRAIN_CONFIG, else demo"
    )

    @property
    def settings_file(self) -> str:
        return _setting(self.config, "LINKEDOUT_TRAIN_CONFIG", "demo")


class StoreViews(dg.ConfigurableResource):
    """Compact views of the CURRENT store version that the `store_views` asset derives and trains `full`
    on, for the report's efficiency section. Off unless named: each view is another copy of the
    store (half of it for int8), which a demo store affords and a 54 GB one may not."""

    views: list[str] | None = pydantic.Field(
        default=None,
        description=(
            "views such as int8, k_tokens=32, layers=0,8,20 (several joined by +); default: "
            "$LINKEDOUT_STORE_VIEWS (space-separated), else none"
        ),
    )

    def specs(self) -> "list[ViewSpec]":
        from pipelines.training.views import parse_view

        names = self.views
        if names is None:
            names = os.environ.get("LINKEDOUT_STORE_VIEWS", "").split()
        return [parse_view(name) for name in names]


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "paths": LinkedOutPaths(),
        "ray": RayCluster(),
        "extractor": ExtractorPreset(),
        "training": TrainingSettings(),
        "views": StoreViews(),
    }
