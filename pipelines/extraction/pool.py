"""The Ray Data side of an extraction run: decode tasks and the model actor pool over a run's
videos, and the driver's commits of what the pool returns (extract.py plans the run; workers.py
is what runs on the workers).

Videos go to the pool in groups: a group's videos get their rows in one fresh shard of each
prompt's store version (one allocation each), and the actor that extracts the group writes
those shards, whole, once, when the group is done. A group is at most a shard (SHARD_ROWS
videos), and smaller where that gives every actor two groups to work on. The pool returns,
per video, each prompt's row checksum and offset in its shard, or why the video (or one
prompt's row) failed; this module commits each row to its version, records each failure, and
publishes every version's index after each group.

A group whose actor dies is retried (ACTOR_RETRIES times); a group lost every time is split,
each video retried alone in a shard of its own, so only a video that kills its actor by itself
becomes a failure row (at most 2 * (ACTOR_RETRIES + 1) attempts). A group whose shard object
exists already when its actor comes to create it (an earlier try of the group wrote it before
its actor died, or a stale writer did: shard objects are never replaced) comes back undone, and
its videos go again in fresh groups, with fresh shards (at most SHARD_RETRIES passes)."""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurizer.config import ExtractorConfig
from featurizer.store.layout import SHARD_ROWS
from pipelines import hooks
from pipelines.errors import PipelineError, one_line
from pipelines.extraction.workers import DecodeGroup, ExtractVideos
from pipelines.ray_runtime import cluster_gpus, ensure_ray

log = logging.getLogger(__name__)

PUBLISH_EVERY_SECONDS = 10.0  # and after every group
PROGRESS_EVERY_SECONDS = 30.0  # on_progress: at most this often, and once at the end
ACTOR_RETRIES = 2  # a group that kills its actor this many more times is split
SHARD_RETRIES = 3  # passes for videos whose group found its shard taken


class RunStopped(PipelineError):
    """The run stops before its end (the store's storage failed under the pool, or the pool
    itself): what was published stays, and the caller names the items left."""


@dataclass
class Video:
    """One video of a run: which prompts' versions want a row of it."""

    item: str
    path: str
    title: str
    wanted: list[bool]  # per prompt of the bank


class _ReportingBar:
    """The tqdm bar, also telling `on_progress` (throttled) how far the run is."""

    def __init__(self, bar: Any, on_progress: Callable[[int, int, float], None]) -> None:
        self._bar, self._on_progress = bar, on_progress
        self._done, self._started = 0, time.monotonic()
        self._last = self._started

    def update(self, n: int = 1) -> None:
        self._bar.update(n)
        self._done += n
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_SECONDS:
            self._last = now
            self._on_progress(self._done, self._bar.total, now - self._started)

    def close(self) -> None:
        self._bar.close()
        self._on_progress(self._done, self._bar.total, time.monotonic() - self._started)


def pool_size(
    ray_address: str | None, actors: int | None, ray_cpus: int | None = None
) -> tuple[int, int]:
    """(actors, GPUs): `actors`, else one per GPU of the cluster (Ray started or joined; a local
    Ray gets `ray_cpus`, default every core)."""
    ensure_ray(ray_address, ray_cpus)
    gpus = cluster_gpus()
    return actors or max(gpus, 1), gpus


def group_size(n_videos: int, n_actors: int) -> int:
    """Videos a group: a shard's worth, fewer where that gives every actor two groups."""
    return max(1, min(SHARD_ROWS, math.ceil(n_videos / (2 * n_actors))))


def run_actor_pool(
    videos: list[Video],
    config: ExtractorConfig,
    writers: list[Any],
    work: Any,  # extract.ExtractionWork: the videos' source identities per prompt
    summary: Any,  # extract.ExtractSummary, counted here
    n_actors: int,
    gpus: int,
    progress: bool,
    actor_resources: dict[str, float] | None = None,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> None:
    """Extract `videos` with an actor pool and commit what it returns (module docstring).
    `actor_resources`: Ray resources every model actor needs besides its CPU and GPU (e.g. a
    custom resource that only the extraction nodes of a cluster offer). `on_progress(done,
    total, seconds)`: called as videos finish, at most every PROGRESS_EVERY_SECONDS, and once
    at the end (an orchestrator's progress events)."""
    from ray.data import DataContext
    from tqdm import tqdm

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # One group per block: a group that keeps killing its actor costs only its own block,
    # which is dropped after ACTOR_RETRIES and then split, or recorded as failure rows.
    context.max_errored_blocks = len(videos)
    # Failures are reported per video by this module; Ray Data's own lines (execution plans,
    # "progress bars disabled", and the traceback of each dropped block, which becomes its
    # videos' failure rows below) say nothing a user needs.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)

    committer = _Committer(writers, work, summary)
    pool = _Pool(config, writers, n_actors, gpus, actor_resources)
    bar = tqdm(total=len(videos), desc="extract", unit="video", disable=not progress)
    if on_progress is not None:
        bar = _ReportingBar(bar, on_progress)
    try:
        size = group_size(len(videos), n_actors)
        done = pool.run(_groups(videos, writers, size), committer, bar)
        for _ in range(SHARD_RETRIES):
            again = [video for video in videos if video.item in pool.again]
            if not again:
                break
            pool.again.clear()
            done |= pool.run(_groups(again, writers, size), committer, bar)
        lost = [video for video in videos if video.item not in done | pool.again]
        if lost and size > 1:
            # Their groups killed the actor every time; one of them may be the only culprit.
            log.warning(
                "%d videos lost their actor every time; retrying them one by one", len(lost)
            )
            done |= pool.run(_groups(lost, writers, 1), committer, bar)
    finally:
        bar.close()
    for video in videos:
        if video.item in pool.again:
            error = f"its shard was taken by another writer {SHARD_RETRIES + 1} times"
            committer.fail(video.item, "write", error)
        elif video.item not in done:
            error = f"the extraction worker died on this video {ACTOR_RETRIES + 1} times"
            committer.fail(video.item, "extract", error)


def _groups(videos: list[Video], writers: list[Any], size: int) -> list[dict[str, Any]]:
    """Ray Data records of `size` videos each, with their rows allocated: one allocation per
    prompt's version and group, so a group's rows are one shard of each version."""
    groups = []
    for start in range(0, len(videos), size):
        chunk = videos[start : start + size]
        rows = np.full((len(chunk), len(writers)), -1, dtype=np.int64)
        for j, writer in enumerate(writers):
            wanted = [k for k, video in enumerate(chunk) if video.wanted[j]]
            for k, row in zip(wanted, writer.allocate(len(wanted)), strict=True):
                rows[k, j] = row
        records = [
            {"item": v.item, "path": v.path, "title": v.title, "rows": rows[k].tolist()}
            for k, v in enumerate(chunk)
        ]
        groups.append({"group": len(groups), "videos": json.dumps(records)})
    return groups


class _Committer:
    """Commits the pool's results to each prompt's writer; publishes every version's index after
    each group's videos are in, and at least every PUBLISH_EVERY_SECONDS."""

    def __init__(self, writers: list[Any], work: Any, summary: Any) -> None:
        self.writers, self.work, self.summary = writers, work, summary
        self.rows: dict[str, list[int]] = {}  # item -> its rows in this run, per prompt
        self.last = time.monotonic()

    def expect(self, videos: list[dict[str, Any]]) -> None:
        for video in videos:
            self.rows[video["item"]] = video["rows"]

    def take(self, result: dict[str, Any]) -> None:
        item = str(result["item"])
        rows = self.rows[item]
        if result["error"]:  # the video failed for every prompt it was extracted for
            self.fail(item, str(result["stage"]), str(result["error"]))
            return
        member_errors = json.loads(str(result["member_errors"]) or "{}")
        for j, writer in enumerate(self.writers):
            if rows[j] < 0:
                continue
            if str(j) in member_errors:
                writer.fail(item, "write", member_errors[str(j)])
                continue
            writer.commit(
                item,
                rows[j],
                self.work.sources[item],
                int(result["n_old"][j]),
                int(result["n_new"][j]),
                prompt_sha256=self.work.prompts[j][item],
                checksum=int(result["checksum"][j]),
                offset=int(result["offset"][j]),
            )
        self.work.settled.add(item)
        if member_errors:
            self._count_failure(item, "write", next(iter(member_errors.values())))
        else:
            self.summary.extracted += 1

    def fail(self, item: str, stage: str, error: str) -> None:
        """The video failed for every prompt it was to be extracted for."""
        for j, writer in enumerate(self.writers):
            if self.rows[item][j] >= 0:
                writer.fail(item, stage, error)
        self.work.settled.add(item)
        self._count_failure(item, stage, error)

    def _count_failure(self, item: str, stage: str, error: str) -> None:
        self.summary.failed += 1
        self.summary.failures.append((item, stage, str(error)))

    def publish(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last > PUBLISH_EVERY_SECONDS:
            for writer in self.writers:
                writer.publish()
            self.last = time.monotonic()


class _Pool:
    """Decode tasks and the model actor pool, one pass over some groups at a time."""

    def __init__(
        self,
        config: ExtractorConfig,
        writers: list[Any],
        n_actors: int,
        gpus: int,
        resources: dict[str, float] | None = None,
    ) -> None:
        self.config, self.writers, self.n_actors = config, writers, n_actors
        self.gpus, self.resources = gpus, dict(resources or {})
        self.again: set[str] = set()  # items whose group found its shard taken

    def run(self, groups: list[dict[str, Any]], committer: _Committer, bar: Any) -> set[str]:
        """Commits or fails each video the pool returns; returns the items done (the others'
        groups lost their actor every time, or found their shard taken: `again`)."""
        import ray
        from ray.data import ActorPoolStrategy

        videos_of = {g["group"]: json.loads(g["videos"]) for g in groups}
        for videos in videos_of.values():
            committer.expect(videos)
        decoded = ray.data.from_items(groups, override_num_blocks=len(groups)).map(
            DecodeGroup(self.config.frames, self.config.resolution), num_cpus=1
        )
        with warnings.catch_warnings():
            # Ray 2.60 deprecates remote kwargs but has no named parameter for bounding
            # restarts yet.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            features = decoded.map_batches(
                ExtractVideos,
                fn_constructor_kwargs={
                    "config": self.config,
                    "row_writers": [writer.row_writer() for writer in self.writers],
                    "hooks": hooks.for_workers(),
                },
                # One group in flight per actor: a group queued behind one that kills the actor
                # would fail with it and spend a retry it did not earn.
                compute=ActorPoolStrategy(size=self.n_actors, max_tasks_in_flight_per_actor=1),
                batch_size=1,  # a group: its shards are written when it is done
                num_gpus=1 if self.gpus else 0,
                num_cpus=1,
                resources=self.resources or None,
                # The bound is per group (task), not per actor: an actor that dies is always
                # restarted, so one poisonous video cannot take the pool, and with it every
                # video after it, down (an actor's max_restarts is a budget for its whole life).
                max_restarts=-1,
                max_task_retries=ACTOR_RETRIES,
            )

        done: set[str] = set()
        group_of = {v["item"]: group for group, videos in videos_of.items() for v in videos}
        left = {group: len(videos) for group, videos in videos_of.items()}
        results = features.iter_rows()
        paths = [writer.store.path for writer in committer.writers]
        where = paths[0] if len(paths) == 1 else paths[0].parent
        try:
            for result in _pool_results(results, where):
                item = str(result["item"])
                if result["fatal"] == "model":
                    raise PipelineError(str(result["error"]))
                if result["fatal"] == "dataset":  # its storage unreachable: the next run goes on
                    raise RunStopped(f"cannot fetch the video of item {item}: {result['error']}")
                if result["fatal"] == "storage":
                    raise RunStopped(
                        f"feature store {where}: cannot write the row of item {item}: "
                        f"{result['error']}"
                    )
                left[group_of[item]] -= 1
                if result["again"]:
                    self.again.add(item)
                    committer.publish(force=left[group_of[item]] == 0)
                    continue
                done.add(item)
                committer.take(result)
                bar.update(1)
                committer.publish(force=left[group_of[item]] == 0)
        finally:
            # stopped early (a run-level error): shut the execution and its actors down now,
            # not whenever the generator is collected, so that the Ray they ran on is free
            getattr(results, "close", lambda: None)()
        return done


def _pool_results(results: Any, where: Any) -> Any:
    """The pool's result rows; the pool's own failure (its nodes lost, its actors impossible
    to place, no progress for DataContext.execution_no_progress_timeout_s) is one line."""
    results = iter(results)
    while True:
        try:
            yield next(results)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - Ray's errors of the whole pool
            from ray.data import DataContext
            from ray.data.exceptions import ExecutionTimeoutError

            if isinstance(exc, ExecutionTimeoutError):
                seconds = DataContext.get_current().execution_no_progress_timeout_s
                why = (
                    f"made no progress for {seconds:g} s: no node could run its actors (their "
                    "nodes lost, or none offers the resources they need)"
                )
            else:
                why = f"stopped ({type(exc).__name__}: {one_line(exc, 300)})"
            raise RunStopped(f"feature store {where}: the extraction's actor pool {why}") from None
