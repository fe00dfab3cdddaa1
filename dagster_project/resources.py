"""Resources: where the data lives, which Ray to use, which extractor, which training settings.
Every field can come from run config or an environment variable; the defaults are the demo's."""

from pathlib import Path

import dagster as dg

from pipelines.extract import resolve_extractor
from pipelines.ray_runtime import ensure_ray


class LinkedOutPaths(dg.ConfigurableResource):
    """The dataset (MicroLens layout), the feature store and the directory of training runs."""

    dataset_dir: str = "data/demo/dataset"
    store_dir: str = "data/demo/store"
    runs_dir: str = "data/demo/runs"

    @property
    def dataset(self) -> Path:
        return Path(self.dataset_dir)

    @property
    def store(self) -> Path:
        return Path(self.store_dir)

    @property
    def runs(self) -> Path:
        return Path(self.runs_dir)


class RayCluster(dg.ConfigurableResource):
    """A local Ray (loopback only, no dashboard) unless `address` names a cluster.

    dagster-ray's LocalRay was considered: it cannot join a cluster by address (its ray_address
    is always None) and its cluster resources are KubeRay-specific, so this small resource
    covers both cases with one field."""

    address: str | None = None
    num_cpus: int | None = None

    def ensure_started(self) -> None:
        ensure_ray(self.address, self.num_cpus)


class ExtractorPreset(dg.ConfigurableResource):
    """The extractor: a preset name or JSON file, optionally with another local checkpoint."""

    preset: str = "demo"
    model: str | None = None

    def config(self):  # -> featurizer.config.ExtractorConfig
        return resolve_extractor(preset=self.preset, model=self.model)


class TrainingSettings(dg.ConfigurableResource):
    """Training's settings file: a shipped name (`demo`) or a YAML/JSON path (see
    pipelines/train_config.py). The `ranker` asset's run config overrides single fields."""

    config: str = "demo"


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "paths": LinkedOutPaths(
            dataset_dir=dg.EnvVar("LINKEDOUT_DATASET").get_value("data/demo/dataset"),
            store_dir=dg.EnvVar("LINKEDOUT_STORE").get_value("data/demo/store"),
            runs_dir=dg.EnvVar("LINKEDOUT_RUNS").get_value("data/demo/runs"),
        ),
        "ray": RayCluster(address=dg.EnvVar("RAY_ADDRESS").get_value() or None),
        "extractor": ExtractorPreset(
            preset=dg.EnvVar("LINKEDOUT_PRESET").get_value("demo"),
            model=dg.EnvVar("LINKEDOUT_MODEL").get_value() or None,
        ),
        "training": TrainingSettings(
            config=dg.EnvVar("LINKEDOUT_TRAIN_CONFIG").get_value("demo") or "demo"
        ),
    }
