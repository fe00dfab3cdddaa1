"""The Dagster graph as users see it: assets, dependencies, checks, jobs, schedules, sensor."""

from __future__ import annotations

import dagster as dg

from dagster_project import defs
from tests.orchestration import ASSETS


def _graph() -> dg.AssetGraph:
    return defs.resolve_asset_graph()


def test_the_six_assets_are_defined() -> None:
    keys = {key.to_user_string() for key in _graph().get_all_asset_keys()}

    assert keys == ASSETS


def test_assets_depend_on_each_other_in_pipeline_order() -> None:
    graph = _graph()

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert parents("video_features") == {"video_catalog"}
    assert parents("ranker") == {"interactions", "video_features"}
    assert parents("item_embeddings") == {"ranker"}
    assert "ranker" in parents("evaluation_report")


def test_every_asset_has_a_description_group_and_code_version() -> None:
    for key in _graph().get_all_asset_keys():
        node = _graph().get(key)
        assert node.description, key
        assert node.group_name != "default", key
        assert node.code_version, key


def test_asset_checks_cover_store_integrity_schema_and_metric_floor() -> None:
    checks = {key.name for key in _graph().asset_check_keys}

    assert {"store_integrity_check", "interactions_schema", "beats_popularity"} <= checks


def test_the_four_jobs_exist() -> None:
    for name in (
        "linkedout_full",
        "extract_new_videos",
        "reextract_features",
        "train_and_evaluate",
    ):
        assert defs.resolve_job_def(name) is not None


def test_weekly_reextraction_is_stopped_by_default_and_nightly_training_runs() -> None:
    weekly = defs.resolve_schedule_def("reextract_features_schedule")
    nightly = defs.resolve_schedule_def("train_and_evaluate_schedule")

    assert weekly.default_status == dg.DefaultScheduleStatus.STOPPED
    assert weekly.cron_schedule == "0 3 * * 0"
    assert nightly.job_name == "train_and_evaluate"
    assert nightly.cron_schedule == "0 2 * * *"


def test_the_sensor_targets_extract_new_videos() -> None:
    sensor = defs.resolve_sensor_def("new_videos_sensor")

    assert sensor.job_name == "extract_new_videos"
