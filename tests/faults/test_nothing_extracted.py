"""A run in which every video failed is not a success: it records each failure row, exits
non-zero with one line saying so, and does not make its store version CURRENT. A preset that
would fail every video the same way (a template naming the video twice) is refused before any
work."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from featurizer.store import FeatureStore, read_current
from pipelines.dataset.ingest import ingest
from tests.faults.conftest import CliResult, assert_one_line_error, run_cli


@dataclass
class AllFailed:
    dataset: Path
    store: Path
    result: CliResult


@pytest.fixture(scope="module")
def all_failed(
    demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory, ray_local, one_prompt_preset
) -> AllFailed:
    """An extraction of a dataset whose every upload was truncated to nothing."""
    root = tmp_path_factory.mktemp("all-failed")
    dataset = Path(shutil.copytree(demo_dataset, root / "dataset"))
    for video in (dataset / "videos").glob("*.mp4"):
        video.write_bytes(b"")
    ingest(dataset)
    store = root / "store"
    result = run_cli(
        ["extract", "--dataset", dataset, "--store", store, "--preset", one_prompt_preset]
    )
    return AllFailed(dataset, store, result)


def test_a_run_whose_every_video_fails_exits_non_zero_and_leaves_current_alone(
    all_failed: AllFailed, fault_report
) -> None:
    store = all_failed.store

    line = assert_one_line_error(all_failed.result, "extracted nothing", "all 12 videos failed")
    version = FeatureStore.open(store / next(p.name for p in store.iterdir() if p.is_dir()))
    fault_report.record(
        "every video of a run fails (12 empty files)",
        survived=all_failed.result.code == 1 and read_current(store) is None,
        message=line,
    )
    assert read_current(store) is None
    assert version.failures_table().num_rows == 12 and version.index() == {}


def test_a_content_variant_over_a_store_without_any_features_is_refused(
    all_failed: AllFailed, tmp_path: Path, fault_report
) -> None:
    (version,) = [p for p in all_failed.store.iterdir() if p.is_dir()]

    result = run_cli(
        ["train", "--dataset", all_failed.dataset, "--store", version, "--out", tmp_path / "run"]
        + ["--variant", "full", "--epochs", 1]
    )

    line = assert_one_line_error(result, "holds none for any of the")
    fault_report.record(
        "train full over a store whose every item failed", survived=True, message=line
    )
    assert not (tmp_path / "run").exists()


def test_a_template_that_names_the_video_twice_is_refused_before_any_work(
    demo_dataset: Path, tmp_path: Path, one_prompt_preset: Path, fault_report
) -> None:
    values = json.loads(one_prompt_preset.read_text())
    values["prompt_template"] = "<video>\n<video>\nDescribe {title}."
    preset = tmp_path / "two-videos.json"
    preset.write_text(json.dumps(values))
    store = tmp_path / "store"

    result = run_cli(["extract", "--dataset", demo_dataset, "--store", store, "--preset", preset])

    line = assert_one_line_error(result, str(preset), "prompt_template", "<video>")
    fault_report.record("a preset whose template names <video> twice", survived=True, message=line)
    assert not store.exists()
