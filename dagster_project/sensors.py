"""new_videos_sensor: new files in the dataset's videos/ become `extract_new_videos` runs."""

import hashlib
import os
from pathlib import Path

import dagster as dg

from dagster_project.jobs import extract_new_videos
from dagster_project.resources import ExtractorPreset, LinkedOutPaths
from pipelines.store.status import unextracted_videos

BATCH_SIZE = 64  # videos a run; $LINKEDOUT_SENSOR_BATCH, read at each tick, overrides it


def _batch_size() -> int:
    return int(os.environ.get("LINKEDOUT_SENSOR_BATCH") or BATCH_SIZE)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@dg.sensor(
    job=extract_new_videos,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def new_videos_sensor(
    context: dg.SensorEvaluationContext, paths: LinkedOutPaths, extractor: ExtractorPreset
) -> dg.SensorResult | dg.SkipReason:
    """Requests `extract_new_videos` for videos the current store version has neither stored nor
    failed, in batches of LINKEDOUT_SENSOR_BATCH (64). The cursor is a digest of the videos/
    listing, so an unchanged directory costs one listing; each batch's run key is a digest of its
    files, so the same files are never requested twice."""
    video_dir = Path(paths.dataset) / "videos"
    listing = sorted(os.listdir(video_dir)) if video_dir.is_dir() else []
    cursor = _digest(listing)
    if cursor == context.cursor:
        return dg.SkipReason("no change in videos/ since the last tick")
    pending = unextracted_videos(paths.dataset, paths.store, extractor.config())
    requests = []
    size = _batch_size()
    for start in range(0, len(pending), size):
        batch = pending[start : start + size]
        items = [item for item, _ in batch]
        requests.append(
            dg.RunRequest(
                run_key="new-videos-" + _digest([f"{item}:{size}" for item, size in batch]),
                run_config={"ops": {"video_features": {"config": {"items": items}}}},
                tags={"linkedout/videos": str(len(items))},
            )
        )
    if not requests:
        return dg.SensorResult(skip_reason="no new videos", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
