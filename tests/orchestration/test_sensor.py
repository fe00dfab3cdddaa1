"""new_videos_sensor on a directory before and after new files arrive."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from dagster_project.resources import ExtractorPreset, LinkedOutPaths
from dagster_project.sensors import STORE_TAG, new_videos_sensor


@pytest.fixture
def dataset(tmp_path: Path, demo_dataset: Path) -> Path:
    copy = tmp_path / "dataset"
    shutil.copytree(demo_dataset, copy)
    return copy


def _tick(
    dataset: Path | str,
    tmp_path: Path,
    tiny_model: Path,
    cursor: str | None,
    store: str | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.SensorResult | dg.SkipReason:
    with contextlib.ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.instance_for_test())
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={
                "paths": LinkedOutPaths(
                    dataset_dir=str(dataset),
                    store_dir=store or str(tmp_path / "store"),
                    runs_dir=str(tmp_path / "runs"),
                ),
                "extractor": ExtractorPreset(preset="demo", model=str(tiny_model)),
            },
        )
        return new_videos_sensor(context)


def _requested_items(result: dg.SensorResult) -> list[str]:
    return [
        item
        for request in result.run_requests or []
        for item in request.run_config["ops"]["video_features"]["config"]["items"]
    ]


def test_first_tick_requests_every_unextracted_video(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    result = _tick(dataset, tmp_path, tiny_model, cursor=None)

    assert sorted(_requested_items(result)) == sorted(
        p.stem for p in (dataset / "videos").glob("*.mp4")
    )


def test_nothing_is_requested_when_the_store_holds_every_video(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    _store_rows(
        tmp_path / "store", tiny_model, sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))
    )

    result = _tick(dataset, tmp_path, tiny_model, cursor=None)

    assert not result.run_requests


def test_one_run_is_requested_for_the_pending_videos_up_to_the_cap(
    dataset: Path, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINKEDOUT_SENSOR_BATCH", "5")

    result = _tick(dataset, tmp_path, tiny_model, cursor=None)

    assert len(result.run_requests) == 1
    assert len(_requested_items(result)) == 5


def test_the_runs_are_tagged_with_the_store_they_write(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    result = _tick(dataset, tmp_path, tiny_model, cursor=None)

    assert result.run_requests[0].tags[STORE_TAG] == str((tmp_path / "store").resolve())


def test_nothing_is_requested_while_a_run_writes_the_store(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    with dg.instance_for_test() as instance:
        create_run_for_test(
            instance,
            job_name="extract_new_videos",
            status=dg.DagsterRunStatus.STARTED,
            tags={STORE_TAG: str((tmp_path / "store").resolve())},
        )

        result = _tick(dataset, tmp_path, tiny_model, cursor=None, instance=instance)

    assert isinstance(result, dg.SkipReason)


def test_a_run_writing_another_store_does_not_hold_the_sensor_back(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    with dg.instance_for_test() as instance:
        create_run_for_test(
            instance,
            job_name="extract_new_videos",
            status=dg.DagsterRunStatus.STARTED,
            tags={STORE_TAG: str(tmp_path / "another-store")},
        )

        result = _tick(dataset, tmp_path, tiny_model, cursor=None, instance=instance)

    assert _requested_items(result)


def test_the_videos_of_a_run_that_ended_without_them_are_requested_again_under_a_new_key(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    first = _tick(dataset, tmp_path, tiny_model, cursor=None)
    # the run failed or was killed: the store holds nothing more, the directory is the same

    second = _tick(dataset, tmp_path, tiny_model, cursor=first.cursor)

    assert sorted(_requested_items(second)) == sorted(_requested_items(first))
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_a_tick_evaluated_again_with_the_same_cursor_repeats_its_run_key(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    first = _tick(dataset, tmp_path, tiny_model, cursor=None)

    again = _tick(dataset, tmp_path, tiny_model, cursor=None)

    assert again.run_requests[0].run_key == first.run_requests[0].run_key


def test_an_unchanged_directory_and_store_are_not_listed_again(
    dataset: Path, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (dataset / "videos").rename(dataset / "elsewhere")  # nothing to list: nothing pending
    (dataset / "videos").mkdir()
    first = _tick(dataset, tmp_path, tiny_model, cursor=None)
    monkeypatch.setattr("dagster_project.sensors.pending_videos", _must_not_list)

    second = _tick(dataset, tmp_path, tiny_model, cursor=first.cursor)

    assert isinstance(second, dg.SkipReason)


def _must_not_list(*args: object, **kwargs: object) -> None:
    raise AssertionError("the tick listed the dataset")


def test_a_new_video_is_requested(dataset: Path, tmp_path: Path, tiny_model: Path) -> None:
    (dataset / "videos").rename(dataset / "elsewhere")
    (dataset / "videos").mkdir()
    first = _tick(dataset, tmp_path, tiny_model, cursor=None)
    shutil.copy(next((dataset / "elsewhere").glob("*.mp4")), dataset / "videos" / "zz-new.mp4")

    second = _tick(dataset, tmp_path, tiny_model, cursor=first.cursor)

    assert _requested_items(second) == ["zz-new"]


def _store_rows(store: Path | str, tiny_model: Path, items: list[str]) -> None:
    """Rows of `items` (zeros) in every prompt's version of the demo preset."""
    import numpy as np

    from featurizer.config import hidden_size_of, load_preset
    from featurizer.store import FeatureStore

    config = load_preset("demo").replace(model=str(tiny_model))
    for member in config.members():  # the demo's bank: stored once every prompt holds it
        version = FeatureStore.create_or_open(store, member, hidden_size_of(config))
        with version.writer() as writer:
            rows = writer.allocate(len(items))
            row_writer = writer.row_writer()
            for item, row in zip(items, rows, strict=True):
                row_writer.write(row, np.zeros(version.shape_per_item, np.float16), item=item)
                writer.commit(item, row, "0" * 64, 1, 16)


def test_videos_already_in_the_store_are_not_requested(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    stored = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))[:4]
    _store_rows(tmp_path / "store", tiny_model, stored)

    result = _tick(dataset, tmp_path, tiny_model, cursor=None)

    requested = set(_requested_items(result))
    assert requested and not requested & set(stored)


def test_an_s3_store_is_read_like_a_local_one(
    dataset: Path, tmp_path: Path, tiny_model: Path, s3
) -> None:
    from tests.s3 import environment

    stored = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))[:4]
    with environment(s3.env()):
        store = f"s3://{s3.bucket()}/store"
        _store_rows(store, tiny_model, stored)

        result = _tick(dataset, tmp_path, tiny_model, cursor=None, store=store)

    requested = set(_requested_items(result))
    assert requested and not requested & set(stored)


def test_an_s3_dataset_is_listed_like_a_local_one(
    dataset: Path, tmp_path: Path, tiny_model: Path, s3
) -> None:
    from tests.s3 import environment

    stored = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))[:4]
    _store_rows(tmp_path / "store", tiny_model, stored)
    with environment(s3.env()):
        url = s3.upload(dataset, s3.bucket(), "dataset")

        result = _tick(url, tmp_path, tiny_model, cursor=None)

    assert sorted(_requested_items(result)) == sorted(
        p.stem for p in (dataset / "videos").glob("*.mp4") if p.stem not in stored
    )
