"""The Ray Data side of an extraction run: decode tasks and the model actor pool over a run's
records, and the driver's commits of what the pool returns (pipelines.extract plans the run;
pipelines.extract_workers is what runs on the workers).

Every record is one video with its allocated row in each prompt's store version (-1 where that
version holds the video already). The pool returns, per video, a row's checksum and prompt
length per prompt, or why the video (or one prompt's row) failed; this module commits each row
to its version, records each failure, and publishes every version's index periodically."""

from __future__ import annotations

import json
import logging
import time
import warnings
from typing import Any

from featurizer.config import ExtractorConfig
from pipelines.errors import PipelineError
from pipelines.extract_workers import DecodeVideo, ExtractVideos, FaultInjection
from pipelines.ray_runtime import cluster_gpus, ensure_ray

log = logging.getLogger(__name__)

PUBLISH_EVERY_ROWS = 8  # a crash loses at most this many finished videos
PUBLISH_EVERY_SECONDS = 10.0
ACTOR_RETRIES = 2  # a video that kills its actor this many more times becomes a failure row


def run_actor_pool(
    records: list[dict[str, Any]],
    config: ExtractorConfig,
    writers: list[Any],
    work: Any,  # pipelines.extract.ExtractionWork: the videos' source identities per prompt
    summary: Any,  # pipelines.extract.ExtractSummary, counted here
    ray_address: str | None,
    actors: int | None,
    model_batch_size: int | None,
    progress: bool,
) -> None:
    """Extract `records` with an actor pool and commit what it returns (module docstring)."""
    from ray.data import DataContext
    from tqdm import tqdm

    ensure_ray(ray_address)
    gpus = cluster_gpus()
    n_actors = actors or max(gpus, 1)
    batch_size = model_batch_size or (4 if gpus else 1)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # One video per block: a batch that keeps killing its actor costs only its own blocks,
    # which are dropped after ACTOR_RETRIES and then retried alone or recorded as failure rows.
    context.max_errored_blocks = len(records)
    # Failures are reported per video by this module; Ray Data's own lines (execution plans,
    # "progress bars disabled", and the traceback of each dropped block, which becomes that
    # video's failure row below) say nothing a user needs.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)

    committer = _Committer(writers, work, summary)
    pool = _Pool(config, writers, n_actors, gpus, FaultInjection.from_env())
    bar = tqdm(total=len(records), desc="extract", unit="video", disable=not progress)
    try:
        done = pool.run(records, batch_size, committer, bar)
        lost = [record for record in records if record["item"] not in done]
        if lost and batch_size > 1:
            # Their batches killed the actor every time; one of them may be the only culprit.
            # Alone, each video is tried again, so only a video that kills its actor by itself
            # becomes a failure row (at most 2 * (ACTOR_RETRIES + 1) attempts).
            log.warning(
                "%d videos lost their actor every time; retrying them one by one", len(lost)
            )
            done |= pool.run(lost, 1, committer, bar)
    finally:
        bar.close()
    for record in records:
        if record["item"] not in done:
            error = f"the extraction worker died on this video {ACTOR_RETRIES + 1} times"
            committer.fail(record, "extract", error)


class _Committer:
    """Commits the pool's results to each prompt's writer; publishes every version's index
    every PUBLISH_EVERY_ROWS videos or PUBLISH_EVERY_SECONDS."""

    def __init__(self, writers: list[Any], work: Any, summary: Any) -> None:
        self.writers, self.work, self.summary = writers, work, summary
        self.unpublished, self.last = 0, time.monotonic()

    def take(self, result: dict[str, Any], record_rows: Any) -> None:
        item = str(result["item"])
        if result["error"]:  # the video failed for every prompt it was extracted for
            self.fail({"item": item, "rows": record_rows}, str(result["stage"]), result["error"])
        else:
            member_errors = json.loads(str(result["member_errors"]) or "{}")
            for j, writer in enumerate(self.writers):
                row = int(record_rows[j])
                if row < 0:
                    continue
                if str(j) in member_errors:
                    writer.fail(item, "write", member_errors[str(j)])
                    continue
                writer.commit(
                    item,
                    row,
                    self.work.sources[item],
                    int(result["n_old"][j]),
                    int(result["n_new"][j]),
                    prompt_sha256=self.work.prompts[j][item],
                    checksum=int(result["checksum"][j]),
                )
            if member_errors:
                first = next(iter(member_errors.values()))
                self._count_failure(item, "write", first)
            else:
                self.summary.extracted += 1
        self.tick()

    def fail(self, record: dict[str, Any], stage: str, error: str) -> None:
        """The video failed for every prompt it was to be extracted for."""
        item = str(record["item"])
        for j, writer in enumerate(self.writers):
            if int(record["rows"][j]) >= 0:
                writer.fail(item, stage, error)
        self._count_failure(item, stage, error)

    def _count_failure(self, item: str, stage: str, error: str) -> None:
        self.summary.failed += 1
        self.summary.failures.append((item, stage, str(error)))

    def tick(self) -> None:
        self.unpublished += 1
        if (
            self.unpublished >= PUBLISH_EVERY_ROWS
            or time.monotonic() - self.last > PUBLISH_EVERY_SECONDS
        ):
            for writer in self.writers:
                writer.publish()
            self.unpublished, self.last = 0, time.monotonic()


class _Pool:
    """Decode tasks and the model actor pool, one pass over some records at a time."""

    def __init__(
        self,
        config: ExtractorConfig,
        writers: list[Any],
        n_actors: int,
        gpus: int,
        faults: FaultInjection | None,
    ) -> None:
        self.config, self.writers, self.n_actors = config, writers, n_actors
        self.gpus, self.faults = gpus, faults

    def run(
        self, records: list[dict[str, Any]], batch_size: int, committer: _Committer, bar: Any
    ) -> set[str]:
        """Commits or fails each video the pool returns; returns the items returned (the
        others lost their actor every time)."""
        import ray
        from ray.data import ActorPoolStrategy

        rows_of = {record["item"]: record["rows"] for record in records}
        decoded = ray.data.from_items(records, override_num_blocks=len(records)).map(
            DecodeVideo(self.config.frames, self.config.resolution), num_cpus=1
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
                    "faults": self.faults,
                },
                # One batch in flight per actor: a batch queued behind one that kills the
                # actor would fail with it and spend a retry it did not earn.
                compute=ActorPoolStrategy(size=self.n_actors, max_tasks_in_flight_per_actor=1),
                batch_size=batch_size,
                num_gpus=1 if self.gpus else 0,
                num_cpus=1,
                # The bound is per batch (task), not per actor: an actor that dies is always
                # restarted, so one poisonous video cannot take the pool, and with it every
                # video after it, down (an actor's max_restarts is a budget for its whole life).
                max_restarts=-1,
                max_task_retries=ACTOR_RETRIES,
            )

        done: set[str] = set()
        results = features.iter_rows()
        try:
            for result in results:
                item = str(result["item"])
                if result["fatal"] == "model":
                    raise PipelineError(str(result["error"]))
                if result["fatal"] == "storage":
                    paths = [writer.store.path for writer in committer.writers]
                    where = paths[0] if len(paths) == 1 else paths[0].parent
                    raise PipelineError(
                        f"feature store {where}: cannot write the row of item {item}: "
                        f"{result['error']}; the rows published before stay valid, the rest "
                        "are extracted by the next run"
                    )
                done.add(item)
                committer.take(result, rows_of[item])
                bar.update(1)
        finally:
            # stopped early (a run-level error): shut the execution and its actors down now,
            # not whenever the generator is collected, so that the Ray they ran on is free
            getattr(results, "close", lambda: None)()
        return done
