"""The one Definitions object: assets, checks, jobs, schedules, sensors and the resources.
Nothing here reads the environment: resources resolve their settings when a run uses them."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from dagster_project.assets import dataset, features, views
from dagster_project.assets.index import index_step
from dagster_project.assets.report import report_asset
from dagster_project.assets.variants import beats_popularity, training_steps
from dagster_project.automation import retrain_on_new_features
from dagster_project.jobs import (
    extract_new_videos,
    linkedout_full,
    reextract_features,
    train_and_evaluate,
)
from dagster_project.resources import default_resources
from dagster_project.schedules import reextract_features_schedule, train_and_evaluate_schedule
from dagster_project.sensors import new_videos_sensor
from dagster_project.tuning import tune_training_settings

asset_modules = [dataset, features, views]  # the per-variant steps are built from the registry


def build_definitions(resources: Mapping[str, Any]) -> dg.Definitions:
    """The whole project bound to `resources` (the deployment's, or a test's), with a training
    step, an index and a report dependency for every variant registered when it is called."""
    return dg.Definitions(
        assets=[
            *dg.load_assets_from_modules(asset_modules),
            *training_steps(),
            index_step(),
            report_asset(),
        ],
        asset_checks=[*dg.load_asset_checks_from_modules(asset_modules), beats_popularity],
        jobs=[
            linkedout_full,
            extract_new_videos,
            reextract_features,
            train_and_evaluate,
            tune_training_settings,
        ],
        schedules=[reextract_features_schedule, train_and_evaluate_schedule],
        sensors=[new_videos_sensor, retrain_on_new_features],
        resources=dict(resources),
    )


defs = build_definitions(default_resources())
