"""The Dagster graph as users see it: assets, dependencies, checks, jobs, schedules, sensor."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from dagster_project import defs
from recmodel.variants import variant_names
from tests.orchestration import ASSETS, VARIANT_ASSETS

VARIANTS = variant_names()  # the registered variants


def _graph() -> dg.AssetGraph:
    return defs.resolve_asset_graph()


def test_every_variant_is_an_asset_beside_the_four_pipeline_assets() -> None:
    keys = {key.to_user_string() for key in _graph().get_all_asset_keys()}

    assert keys == ASSETS


def test_assets_depend_on_each_other_in_pipeline_order() -> None:
    graph = _graph()

    def parents(name: str) -> set[str]:
        key = dg.AssetKey.from_user_string(name)
        return {k.to_user_string() for k in graph.get(key).parent_keys}

    assert parents("video_features") == {"video_catalog"}
    for variant in VARIANTS:
        assert parents(f"ranker_{variant}") == {"interactions", "video_features"}
        assert parents(f"item_embeddings_{variant}") == {f"ranker_{variant}"}
        assert parents(f"item_index_{variant}") == {f"item_embeddings_{variant}"}
    assert VARIANT_ASSETS <= parents("evaluation_report")


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


def test_each_variant_trains_in_its_own_step() -> None:
    graph = _graph()
    steps = {
        variant: {
            graph.get(dg.AssetKey.from_user_string(f"{prefix}_{variant}")).assets_def.node_def.name
            for prefix in ("ranker", "item_embeddings")
        }
        for variant in VARIANTS
    }

    assert all(len(names) == 1 for names in steps.values())  # vectors come with their run
    assert len({names.pop() for names in steps.values()}) == len(VARIANTS)


def test_checks_that_make_training_meaningless_block_it() -> None:
    checks = {key.name: key for key in _graph().asset_check_keys}
    blocking = {name for name, key in checks.items() if _graph().get_check_spec(key).blocking}

    assert blocking == {"store_integrity_check", "interactions_schema", "interactions_current"}


def test_beats_popularity_runs_after_the_popularity_variant() -> None:
    [key] = [k for k in _graph().asset_check_keys if k.name == "beats_popularity"]
    check = _graph().get_check_spec(key)

    assert dg.AssetKey("ranker_popularity") in {d.asset_key for d in check.additional_deps}


def test_declarative_automation_is_there_and_off_by_default() -> None:
    sensor = defs.resolve_sensor_def("retrain_on_new_features")
    graph = _graph()

    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    for key in [dg.AssetKey(f"ranker_{v}") for v in VARIANTS] + [dg.AssetKey("evaluation_report")]:
        assert graph.get(key).automation_condition is not None, key


def test_paths_are_read_when_a_run_uses_them_not_when_defs_is_imported(monkeypatch) -> None:
    paths = defs.resources["paths"]

    monkeypatch.setenv("LINKEDOUT_STORE", "/elsewhere/store")

    assert paths.store_dir is None  # nothing was fixed at import
    assert str(paths.store) == "/elsewhere/store"


def test_loading_the_code_location_imports_no_torch_ray_or_faiss() -> None:
    # the UI, the daemon and every run's and step's process load it: it must load fast
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, dagster_project; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    heavy = {"torch", "ray", "faiss", "transformers", "pandas"}
    assert heavy.isdisjoint(loaded), sorted(heavy & set(loaded))
