"""new_videos_sensor: videos in the dataset that the store lacks become one `extract_new_videos`
run at a time.

What a tick does, in order:

1. If a run that writes `video_features` is queued, starting, running or canceling for the same
   store (the sensor's runs carry STORE_TAG; a run without it, started from the UI or a
   schedule, counts for every store), it requests nothing: one writer per store, and the videos
   that run covers are not requested twice.
2. On a local dataset, if the videos/ directory's mtime and the store's last commit are what
   the previous tick saw, and that tick found nothing pending, it skips without listing (a
   directory's mtime moves when a file is added, removed or renamed in it). An object store has
   no such mark, so each tick lists it.
3. Otherwise it lists the videos a page at a time, looks each page up in the store in columns
   (pipelines.store.status.pending_videos), and stops at the cap (SENSOR_BATCH videos,
   $LINKEDOUT_SENSOR_BATCH): memory is a page plus the cap, whatever the dataset's size.
4. It requests ONE run for the pending videos found.

Retries: a run that failed or was killed leaves its videos with neither a row nor a failure row,
and the cursor remembers that the last listing found videos pending, so the first tick after the
run ended (step 1 holds the sensor back until then) lists again and requests them again. The run
key is a digest of the requested items plus the number of runs this sensor has requested (kept
in the cursor): a later request of the same videos is a new key (a run key is never reused, so a
key of the items alone would block the retry forever), while a tick that Dagster evaluates again
after a daemon crash, with the same cursor, repeats the same key and is deduplicated.

The tick interval is SENSOR_INTERVAL_SECONDS, $LINKEDOUT_SENSOR_INTERVAL read when the code
location loads (tests use a few seconds)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import dagster as dg

from dagster_project.jobs import extract_new_videos
from dagster_project.resources import ExtractorPreset, LinkedOutPaths
from pipelines.store.status import (
    pending_videos,
    store_address,
    store_marker,
    videos_directory_mark,
)

SENSOR_BATCH = 4096  # videos a run at most; $LINKEDOUT_SENSOR_BATCH, read at each tick
SENSOR_INTERVAL_SECONDS = 60  # $LINKEDOUT_SENSOR_INTERVAL, read when the code location loads
STORE_TAG = "linkedout/store"  # the store a run writes, as an absolute path or s3:// URL
FEATURES = dg.AssetKey("video_features")
JOBS_WRITING_FEATURES = frozenset({"extract_new_videos", "reextract_features", "linkedout_full"})
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _batch_size() -> int:
    return int(os.environ.get("LINKEDOUT_SENSOR_BATCH") or SENSOR_BATCH)


def _interval() -> int:
    return int(os.environ.get("LINKEDOUT_SENSOR_INTERVAL") or SENSOR_INTERVAL_SECONDS)


def writes_features(run: dg.DagsterRun) -> bool:
    """Whether `run` materializes video_features (a job that holds it, or a UI selection)."""
    selection = run.asset_selection
    return run.job_name in JOBS_WRITING_FEATURES or bool(selection and FEATURES in selection)


def runs_in_flight(instance: dg.DagsterInstance, store: str) -> list[str]:
    """Ids of the runs queued or running that write `store`'s features."""
    runs = instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT))
    return [
        run.run_id
        for run in runs
        if writes_features(run) and run.tags.get(STORE_TAG, store) == store
    ]


def _read_cursor(cursor: str | None) -> dict[str, Any]:
    try:
        return dict(json.loads(cursor)) if cursor else {}
    except (ValueError, TypeError):  # a cursor of an older version of this sensor
        return {}


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@dg.sensor(
    job=extract_new_videos,
    minimum_interval_seconds=_interval(),
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def new_videos_sensor(
    context: dg.SensorEvaluationContext, paths: LinkedOutPaths, extractor: ExtractorPreset
) -> dg.SensorResult | dg.SkipReason:
    """Requests one `extract_new_videos` run for the videos the current store version has
    neither stored nor failed, at most LINKEDOUT_SENSOR_BATCH (4096) of them, and none while
    another run writes the store; a failed or killed run's videos are requested again (the
    module docstring has the whole scheme)."""
    store = store_address(paths.store)
    busy = runs_in_flight(context.instance, store)
    if busy:
        return dg.SkipReason(f"run {busy[0]} is writing {store}; its videos are not requested")
    previous = _read_cursor(context.cursor)
    config = extractor.config()
    directory = videos_directory_mark(paths.dataset)  # taken before listing: later changes show
    mark = None if directory is None else f"{directory}|{store_marker(paths.store, config)}"
    requests = int(previous.get("requests", 0))
    if mark is not None and mark == previous.get("mark") and not previous.get("pending"):
        return dg.SkipReason("no change in videos/ nor in the store since the last tick")
    cap = _batch_size()
    found = pending_videos(paths.dataset, paths.store, config, limit=cap)
    if not found.videos:
        cursor = json.dumps({"mark": mark, "pending": False, "requests": requests})
        return dg.SensorResult(skip_reason="no new videos", cursor=cursor)
    items = [item for item, _ in found.videos]
    request = dg.RunRequest(
        run_key=f"new-videos-{_digest(items)}-{requests}",
        run_config={"ops": {"video_features": {"config": {"items": items}}}},
        tags={
            STORE_TAG: store,
            "linkedout/videos": str(len(items)),
            "linkedout/more_pending": "no" if found.complete else f"yes (capped at {cap})",
        },
    )
    cursor = json.dumps({"mark": mark, "pending": True, "requests": requests + 1})
    return dg.SensorResult(run_requests=[request], cursor=cursor)
