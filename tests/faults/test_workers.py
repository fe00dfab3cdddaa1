"""Extraction workers that die: a Ray actor killed in the middle of its group of videos (after
the model call, before the group's shards are written) is restarted and the group retried, so
the run completes; a video that kills its actor every time becomes a failure row after its
group's retries and ACTOR_RETRIES retries alone, and the other videos are not affected.

The deaths are injected with the tests' worker hooks (tests/worker_hooks.py, LINKEDOUT_FAULT_*:
`os._exit(1)` in the actor, a hard death like a segfault in a decoder or an OOM kill), since a
video that crashes decord on demand cannot be crafted. Model calls are counted through
LINKEDOUT_INVOCATION_LOG. One real extraction (tiny model: random weights, no world knowledge)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from featurizer.store import FeatureStore
from pipelines.extraction.extract import ExtractSummary, extract_catalog
from pipelines.extraction.pool import ACTOR_RETRIES
from tests.worker_hooks import (
    FAULT_MARKER_DIR_ENV,
    INVOCATION_LOG_ENV,
    KILL_ITEMS_ENV,
    KILL_ONCE_ITEMS_ENV,
)

pytestmark = pytest.mark.slow

KILL_ONCE = "kill_once"  # its actor dies the first time it reaches this video
KILL_ALWAYS = "kill_always"  # ... every time
GOOD = ["good_1", "good_2", "good_3"]


@dataclass
class WorkerRun:
    summary: ExtractSummary
    index: dict[str, int]
    failures: dict[str, tuple[str, str]]
    invocations: list[str]
    verify_ok: bool
    verify_text: str
    store: Path


@pytest.fixture(scope="module")
def worker_run(
    demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory, ray_local: None, extract_config
) -> WorkerRun:
    root = tmp_path_factory.mktemp("workers")
    videos = root / "dataset" / "videos"
    videos.mkdir(parents=True)
    sources = sorted((demo_dataset / "videos").glob("*.mp4"))
    for item, source in zip([*GOOD, KILL_ONCE, KILL_ALWAYS], sources, strict=False):
        shutil.copyfile(source, videos / f"{item}.mp4")
    (root / "markers").mkdir()
    env = {
        INVOCATION_LOG_ENV: str(root / "invocations.log"),
        KILL_ITEMS_ENV: KILL_ALWAYS,
        KILL_ONCE_ITEMS_ENV: KILL_ONCE,
        FAULT_MARKER_DIR_ENV: str(root / "markers"),
    }
    os.environ.update(env)
    try:
        summary = extract_catalog(root / "dataset", root / "store", extract_config, progress=False)
    finally:
        for key in env:
            del os.environ[key]
    version = FeatureStore.open(root / "store", summary.fingerprint)
    report = version.verify()
    return WorkerRun(
        summary=summary,
        index=version.index(),
        failures={
            r["item"]: (r["stage"], r["error"]) for r in version.failures_table().to_pylist()
        },
        invocations=(root / "invocations.log").read_text().splitlines(),
        verify_ok=report.ok,
        verify_text=report.describe(),
        store=root / "store",
    )


def test_actor_killed_mid_batch_is_restarted_and_the_run_completes(
    worker_run: WorkerRun, fault_report
) -> None:
    stored = KILL_ONCE in worker_run.index and all(i in worker_run.index for i in GOOD)
    fault_report.record(
        "worker: Ray actor killed mid-batch (once)",
        survived=stored and worker_run.verify_ok,
        lost=sum(i not in worker_run.index for i in [*GOOD, KILL_ONCE]),
        message=worker_run.summary.describe().splitlines()[0],
    )
    assert stored, worker_run.failures
    assert worker_run.invocations.count(KILL_ONCE) == 2  # the killed call, then the retry
    for item in GOOD:
        assert worker_run.invocations.count(item) == 1, item  # untouched by the deaths
    assert worker_run.verify_ok, worker_run.verify_text
    features = FeatureStore.open(worker_run.store).read([KILL_ONCE, *GOOD])
    assert np.isfinite(features).all()


def test_video_that_always_kills_its_actor_becomes_a_failure_row(
    worker_run: WorkerRun, fault_report
) -> None:
    stage, error = worker_run.failures.get(KILL_ALWAYS, ("", ""))
    line = next(
        (ln for ln in worker_run.summary.describe().splitlines() if KILL_ALWAYS in ln), ""
    ).strip()
    calls = worker_run.invocations.count(KILL_ALWAYS)
    # bounded: its group tried and retried ACTOR_RETRIES times, then it alone as often
    bounded = calls == 2 * (ACTOR_RETRIES + 1)
    fault_report.record(
        "worker: video that kills its actor every time",
        survived=stage == "extract" and bounded,
        message=line,
    )
    assert stage == "extract"
    assert error == f"the extraction worker died on this video {ACTOR_RETRIES + 1} times"
    assert bounded, worker_run.invocations
    assert line == f"failed {KILL_ALWAYS} (extract): {error}"
    assert KILL_ALWAYS not in worker_run.index
    s = worker_run.summary
    assert (s.extracted, s.failed) == (len(GOOD) + 1, 1)


@pytest.mark.skipif(
    not os.environ.get("LINKEDOUT_FAULTS_EXTENDED"),
    reason="costs about 8 actor starts (60-90 s on 2 cores); set LINKEDOUT_FAULTS_EXTENDED=1",
)
def test_video_that_kills_its_batch_spares_its_batch_mates(
    demo_dataset: Path, tmp_path: Path, ray_local: None, extract_config, fault_report
) -> None:
    """A poisonous video's group is lost ACTOR_RETRIES + 1 times; its videos are then tried one
    by one, so only the poisonous one becomes a failure row."""
    videos = tmp_path / "dataset" / "videos"
    videos.mkdir(parents=True)
    names = ["good_1", KILL_ALWAYS, "good_2", "good_3"]
    for item, source in zip(names, sorted((demo_dataset / "videos").glob("*.mp4")), strict=False):
        shutil.copyfile(source, videos / f"{item}.mp4")
    env = {INVOCATION_LOG_ENV: str(tmp_path / "calls.log"), KILL_ITEMS_ENV: KILL_ALWAYS}
    os.environ.update(env)
    try:
        summary = extract_catalog(
            tmp_path / "dataset",
            tmp_path / "store",
            extract_config,
            progress=False,
        )
    finally:
        for key in env:
            del os.environ[key]
    version = FeatureStore.open(tmp_path / "store", summary.fingerprint)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    stored = set(version.index())
    fault_report.record(
        "worker: video that kills its actor every time, in a batch of 2",
        survived=stored == set(names) - {KILL_ALWAYS},
        lost=len(set(names) - {KILL_ALWAYS} - stored),
        message=next(
            (ln.strip() for ln in summary.describe().splitlines() if KILL_ALWAYS in ln), ""
        ),
    )
    assert stored == set(names) - {KILL_ALWAYS}
    assert calls.count(KILL_ALWAYS) <= 2 * (ACTOR_RETRIES + 1)
    assert version.verify().ok
