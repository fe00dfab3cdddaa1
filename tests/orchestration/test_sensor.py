"""new_videos_sensor on a directory before and after new files arrive."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.resources import ExtractorPreset, LinkedOutPaths
from dagster_project.sensors import new_videos_sensor


@pytest.fixture
def dataset(tmp_path: Path, demo_dataset: Path) -> Path:
    copy = tmp_path / "dataset"
    shutil.copytree(demo_dataset, copy)
    return copy


def _tick(
    dataset: Path, tmp_path: Path, tiny_model: Path, cursor: str | None, store: str | None = None
) -> dg.SensorResult:
    with dg.instance_for_test() as instance:
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


def test_nothing_new_requests_nothing(dataset: Path, tmp_path: Path, tiny_model: Path) -> None:
    first = _tick(dataset, tmp_path, tiny_model, cursor=None)

    second = _tick(dataset, tmp_path, tiny_model, cursor=first.cursor)

    assert isinstance(second, dg.SkipReason) or not second.run_requests


def test_new_files_are_requested_in_batches(
    dataset: Path, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dagster_project.sensors.BATCH_SIZE", 5)

    result = _tick(dataset, tmp_path, tiny_model, cursor=None)

    sizes = [
        len(r.run_config["ops"]["video_features"]["config"]["items"]) for r in result.run_requests
    ]
    assert max(sizes) == 5 and sum(sizes) == len(list((dataset / "videos").glob("*.mp4")))


def test_the_same_files_get_the_same_run_key(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    first = _tick(dataset, tmp_path, tiny_model, cursor=None)
    (dataset / "videos" / "unrelated.txt").write_text("not a video")  # changes the listing only

    second = _tick(dataset, tmp_path, tiny_model, cursor=first.cursor)

    assert {r.run_key for r in second.run_requests} == {r.run_key for r in first.run_requests}


def test_a_new_video_changes_only_the_batch_it_lands_in(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    first = _tick(dataset, tmp_path, tiny_model, cursor=None)
    videos = sorted((dataset / "videos").glob("*.mp4"))
    shutil.copy(videos[0], dataset / "videos" / "zz-new.mp4")

    second = _tick(dataset, tmp_path, tiny_model, cursor=first.cursor)

    assert "zz-new" in _requested_items(second)
    assert (
        len({r.run_key for r in second.run_requests} - {r.run_key for r in first.run_requests}) == 1
    )


def test_videos_already_in_the_store_are_not_requested(
    dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    import numpy as np

    from featurizer.config import hidden_size_of, load_preset
    from featurizer.store import FeatureStore

    config = load_preset("demo").replace(model=str(tiny_model))
    stored = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))[:4]
    for member in config.members():  # the demo's bank: stored once every prompt holds it
        store = FeatureStore.create_or_open(tmp_path / "store", member, hidden_size_of(config))
        with store.writer() as writer:
            rows = writer.allocate(len(stored))
            row_writer = writer.row_writer()
            for item, row in zip(stored, rows, strict=True):
                row_writer.write(row, np.zeros(store.shape_per_item, np.float16), item=item)
                writer.commit(item, row, "0" * 64, 1, 16)

    result = _tick(dataset, tmp_path, tiny_model, cursor=None)

    requested = set(_requested_items(result))
    assert requested and not requested & set(stored)


def test_an_s3_store_is_read_like_a_local_one(
    dataset: Path, tmp_path: Path, tiny_model: Path, s3
) -> None:
    import numpy as np

    from featurizer.config import hidden_size_of, load_preset
    from featurizer.store import FeatureStore
    from tests.s3 import environment

    config = load_preset("demo").replace(model=str(tiny_model))
    stored = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))[:4]
    with environment(s3.env()):
        store = f"s3://{s3.bucket()}/store"
        for member in config.members():
            version = FeatureStore.create_or_open(store, member, hidden_size_of(config))
            with version.writer() as writer:
                rows = writer.allocate(len(stored))
                row_writer = writer.row_writer()
                for item, row in zip(stored, rows, strict=True):
                    row_writer.write(row, np.zeros(version.shape_per_item, np.float16), item=item)
                    writer.commit(item, row, "0" * 64, 1, 16)

        result = _tick(dataset, tmp_path, tiny_model, cursor=None, store=store)

    requested = set(_requested_items(result))
    assert requested and not requested & set(stored)
