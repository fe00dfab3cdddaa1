"""Catalog extraction with Ray Data: decode as CPU tasks, the frozen video LLM in an actor pool,
rows written chunk-aligned by the actors, the index committed by this process as results arrive."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featurizer.config import (
    ExtractorConfig,
    hidden_size_of,
    load_preset,
    model_values,
)
from featurizer.families import SUPPORTED_FAMILIES, check_frames, family_of
from featurizer.store import FeatureStore, StoreError, read_current, set_current
from pipelines.catalog import scan_videos
from pipelines.errors import PipelineError, one_line
from pipelines.extract_workers import DecodeVideo, ExtractVideos, FaultInjection
from pipelines.ray_runtime import cluster_gpus, ensure_ray

log = logging.getLogger(__name__)

DEMO_MODEL_DIR = Path("data/tiny-model")
EXTRACTION_RUNS_FILE = "extraction_runs.jsonl"  # read by pipelines.report
PUBLISH_EVERY_ROWS = 8  # a crash loses at most this many finished videos
PUBLISH_EVERY_SECONDS = 10.0
ACTOR_RETRIES = 2  # a video that kills its actor this many more times becomes a failure row


@dataclass
class ExtractSummary:
    store: Path
    fingerprint: str
    extracted: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    store_bytes: int = 0
    is_current: bool = False
    rows: int = 0  # committed rows in the version after this run
    data_version: str = ""  # fingerprint, rows and a digest of the index and failures
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (item, stage, error)
    notes: list[str] = field(default_factory=list)  # why stored items were extracted again

    @property
    def seconds_per_video(self) -> float:
        return self.seconds / self.extracted if self.extracted else 0.0

    def describe(self) -> str:
        line = (
            f"extracted {self.extracted}, skipped {self.skipped} (already stored), "
            f"failed {self.failed}; {self.seconds_per_video:.2f} s/video; "
            f"store {self.store}/{self.fingerprint}"
        )
        for note in self.notes:
            line += f"\n  {note}"
        for item, stage, error in self.failures:
            line += f"\n  failed {item} ({stage}): {error}"
        return line


def store_data_version(version: FeatureStore) -> tuple[int, str]:
    """(committed rows, a version string): the fingerprint, the row count and a digest of which
    item sits in which row and which failed, so a run that re-extracts or adds anything changes
    it, and a run that extracts nothing keeps it."""
    index = version.index_table()
    failures = version.failures_table()
    digest = hashlib.sha256()
    for name in ("item", "row"):
        digest.update(repr(index.column(name).to_pylist()).encode())
    digest.update(repr(sorted(failures.column("item").to_pylist())).encode())
    return index.num_rows, f"{version.fingerprint}-{index.num_rows}-{digest.hexdigest()[:12]}"


def resolve_extractor(
    preset: str | None = None, model: str | None = None, random_weights: bool = False
) -> ExtractorConfig:
    """The extractor for a preset name or file (default `demo`), optionally with another local
    model. A preset's tiny checkpoint (`data/tiny-model` for the demo, `data/tiny-<family>` for
    the `tiny-<family>` presets) is built on first use. `random_weights` builds a preset's
    architecture untrained where its checkpoint is not available (a GPU path check; such
    features get their own fingerprint)."""
    config = load_preset(preset or "demo")
    if model:
        config = config.replace(model=str(model))
    if random_weights:
        config = config.replace(random_weights=True)
    family = tiny_family_of(config.model)
    if not model and family and not Path(config.model).exists():
        from featurizer.tiny_model import build_tiny_checkpoint

        log.info("building the tiny %s checkpoint in %s (random weights)", family, config.model)
        build_tiny_checkpoint(Path(config.model), family=family)
    return config


def check_model_family(config: ExtractorConfig) -> None:
    """Refuse, before any work, a model of a family the extractor cannot read or a resolution
    its processor would not keep (read from config.json or the preset's architecture; a hub
    id in the cache is checked when its actor loads it)."""
    if not (Path(config.model) / "config.json").is_file() and not config.random_weights:
        return
    values = model_values(config)
    family = family_of(values.get("model_type"), config.model)
    try:
        check_frames(family, values, config.frames, config.resolution)
    except (KeyError, TypeError):  # an unusual config.json: the actor's loaded config decides
        return


def tiny_family_of(model: str) -> str | None:
    """The family of a tiny checkpoint the project builds itself at this path, or None."""
    path = Path(model)
    if path == DEMO_MODEL_DIR:
        return "llava_onevision"
    name = path.name.removeprefix("tiny-")
    if path.parent == DEMO_MODEL_DIR.parent and name != path.name and name in SUPPORTED_FAMILIES:
        return name
    return None


def extract_catalog(
    dataset: Path,
    store: Path,
    config: ExtractorConfig,
    items: list[str] | None = None,
    ray_address: str | None = None,
    actors: int | None = None,
    model_batch_size: int | None = None,
    make_current: bool | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Extract every catalog video the store version for `config` lacks: new, changed since it
    was stored (its video or its prompt, title included), or whose stored row fails its check.
    The store is verified first (a bad row becomes a failure row and, if in this run, is
    extracted again) and the rows this run committed after: a run never ends in success over
    a store that would not verify. `make_current`: move CURRENT to this version once it is
    complete (every catalog item has a row or a failure row); by default only when the store
    has no CURRENT yet, so a partial re-extraction never switches what training reads."""
    dataset, store = Path(dataset), Path(store)
    started = time.perf_counter()
    check_model_family(config)
    catalog = scan_videos(dataset)
    if not catalog.videos and not catalog.unreadable:
        raise PipelineError(f"{dataset / 'videos'}: no .mp4 files to extract")
    wanted = set(catalog.videos) | set(catalog.unreadable)
    if items is not None:
        unknown = sorted(set(items) - wanted)
        if unknown:
            raise PipelineError(
                f"{dataset / 'videos'}: no video for item(s) {', '.join(map(repr, unknown))}"
            )
        wanted = set(items)
    titles = _titles(dataset)

    try:
        version = FeatureStore.create_or_open(store, config, hidden_size_of(config))
    except StoreError as exc:
        raise PipelineError(str(exc)) from None
    except OSError as exc:  # e.g. a full or read-only disk under the store
        raise PipelineError(f"feature store {store}: {one_line(exc, 500)}") from None
    summary = ExtractSummary(store=store, fingerprint=version.fingerprint)
    try:
        with version.writer(wait=0.0) as writer:
            sources = {i: catalog.videos[i].sha256 for i in sorted(wanted) if i in catalog.videos}
            prompts = {i: config.prompt_sha256(titles.get(i, "")) for i in sources}
            bad = _fail_bad_rows(version, writer, summary, wanted)
            reasons = version.pending_reasons(sources, prompts)
            reasons.update({i: "row failed its check" for i in bad if i in reasons})
            summary.notes += _reextraction_notes(reasons)
            pending = list(reasons)
            summary.skipped = len(sources) - len(pending)
            for item in sorted(wanted & set(catalog.unreadable)):
                writer.fail(item, "decode", catalog.unreadable[item])
                summary.failed += 1
                summary.failures.append((item, "decode", catalog.unreadable[item]))
            if pending:
                rows = writer.allocate(len(pending))
                records = [
                    {
                        "item": item,
                        "path": str(catalog.videos[item].path),
                        "sha256": catalog.videos[item].sha256,
                        "prompt_sha256": prompts[item],
                        "title": titles.get(item, ""),
                        "row": row,
                    }
                    for item, row in zip(pending, rows, strict=False)
                ]
                _run_actor_pool(
                    records,
                    config,
                    writer,
                    summary,
                    ray_address,
                    actors,
                    model_batch_size,
                    progress,
                )
            writer.publish()
            committed = writer.committed_items
        # the rows committed now (stored rows were checked at the start) and the whole layout
        after = version.verify(items=committed)
    except StoreError as exc:
        raise PipelineError(str(exc)) from None
    except OSError as exc:  # the store's disk (full, read-only, gone): what was published stays
        raise PipelineError(
            f"feature store {version.path}: {one_line(exc, 500)}; the rows published before stay "
            "valid, the rest are extracted by the next run"
        ) from None
    summary.seconds = time.perf_counter() - started
    _record_extraction_run(version.path, summary, actors)
    if not after.ok:
        first = (after.problems + [f"item {i}: {w}" for i, w in after.bad_rows.items()])[0]
        raise PipelineError(
            f"extracted {summary.extracted}, failed {summary.failed}, but feature store "
            f"{version.path} does not verify: {first}; see `linkedout store verify {version.path}`"
        )

    if make_current is None:
        make_current = read_current(store) is None
    summary.store_bytes = _directory_bytes(version.path)
    summary.rows, summary.data_version = store_data_version(version)
    if make_current:
        problems = _uncovered(version, catalog, titles, config)
        if problems:
            log.warning("%s not made CURRENT: %s", version.path, "; ".join(problems[:3]))
        else:
            try:
                set_current(store, version.fingerprint)
            except OSError as exc:
                raise PipelineError(
                    f"feature store {store}: extracted, but CURRENT not updated: {one_line(exc, 500)}"
                ) from None
    summary.is_current = read_current(store) == version.fingerprint
    log.info(summary.describe().splitlines()[0])
    return summary


def _fail_bad_rows(
    version: FeatureStore, writer: Any, summary: ExtractSummary, wanted: set[str]
) -> dict[str, str]:
    """Verify the stored rows; each bad one becomes a failure row (published now, so that no
    reader trusts it any longer) and so is extracted again if this run wants it. A problem of
    the whole version (not of rows) stops the run: extracting cannot repair it."""
    report = version.verify()
    if report.problems:
        raise PipelineError(
            f"feature store {version.path} does not verify, and extracting cannot repair it: "
            f"{report.problems[0]}"
        )
    if report.n_checked:
        log.info(
            "checked %d stored rows (%.2f GB) in %.1f s",
            report.n_checked,
            report.bytes_read / 1e9,
            report.seconds,
        )
    for item, why in report.bad_rows.items():
        writer.fail(item, "write", f"stored row failed its check: {why}")
    if report.bad_rows:
        writer.publish()
    left = sorted(set(report.bad_rows) - wanted)
    if left:
        summary.notes.append(
            f"{_count(len(left), 'item')} whose row failed its check {_is_are(left)} not in this "
            f"run and now {_is_are(left)} failure rows (extracted by a run that includes "
            f"{_it_them(left)}): {_shown(left)}"
        )
    return report.bad_rows


_REASON_WORDS = {
    "row failed its check": "whose row failed its check",
    "video changed": "whose video changed",
    "prompt changed": "whose prompt changed (its title)",
    "prompt unknown": "stored before prompt identities were recorded",
}


def _reextraction_notes(reasons: dict[str, str]) -> list[str]:
    """One line per reason a stored item is extracted again, e.g. "re-extracting 1 item whose
    row failed its check: v0003"."""
    notes = []
    for reason, words in _REASON_WORDS.items():
        found = [item for item, why in reasons.items() if why == reason]
        if found:
            notes.append(f"re-extracting {_count(len(found), 'item')} {words}: {_shown(found)}")
    return notes


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _is_are(items: list[str]) -> str:
    return "is" if len(items) == 1 else "are"


def _it_them(items: list[str]) -> str:
    return "it" if len(items) == 1 else "them"


def _shown(items: list[str], limit: int = 10) -> str:
    return ", ".join(items[:limit]) + (
        f" and {len(items) - limit} more" if len(items) > limit else ""
    )


def _titles(dataset: Path) -> dict[str, str]:
    from pipelines.ingest import read_titles

    return read_titles(dataset) if (dataset / "titles.csv").exists() else {}


def _run_actor_pool(
    records: list[dict[str, Any]],
    config: ExtractorConfig,
    writer: Any,
    summary: ExtractSummary,
    ray_address: str | None,
    actors: int | None,
    model_batch_size: int | None,
    progress: bool,
) -> None:
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

    faults = FaultInjection.from_env()
    publisher = _Publisher(writer)
    bar = tqdm(total=len(records), desc="extract", unit="video", disable=not progress)
    try:
        done = _extraction_pass(
            records, config, writer, summary, n_actors, batch_size, gpus, faults, publisher, bar
        )
        lost = [record for record in records if record["item"] not in done]
        if lost and batch_size > 1:
            # Their batches killed the actor every time; one of them may be the only culprit.
            # Alone, each video is tried again, so only a video that kills its actor by itself
            # becomes a failure row (at most 2 * (ACTOR_RETRIES + 1) attempts).
            log.warning(
                "%d videos lost their actor every time; retrying them one by one", len(lost)
            )
            done |= _extraction_pass(
                lost, config, writer, summary, n_actors, 1, gpus, faults, publisher, bar
            )
    finally:
        bar.close()
    for record in records:
        if record["item"] not in done:
            error = f"the extraction worker died on this video {ACTOR_RETRIES + 1} times"
            writer.fail(record["item"], "extract", error)
            summary.failed += 1
            summary.failures.append((record["item"], "extract", error))


class _Publisher:
    """Publishes the index every PUBLISH_EVERY_ROWS results or PUBLISH_EVERY_SECONDS."""

    def __init__(self, writer: Any) -> None:
        self.writer, self.unpublished, self.last = writer, 0, time.monotonic()

    def tick(self) -> None:
        self.unpublished += 1
        if (
            self.unpublished >= PUBLISH_EVERY_ROWS
            or time.monotonic() - self.last > PUBLISH_EVERY_SECONDS
        ):
            self.writer.publish()
            self.unpublished, self.last = 0, time.monotonic()


def _extraction_pass(
    records: list[dict[str, Any]],
    config: ExtractorConfig,
    writer: Any,
    summary: ExtractSummary,
    n_actors: int,
    batch_size: int,
    gpus: int,
    faults: FaultInjection | None,
    publisher: _Publisher,
    bar: Any,
) -> set[str]:
    """Decode tasks and the actor pool over `records`; commits or fails each video the pool
    returns. Returns the items returned (the others lost their actor every time)."""
    import ray
    from ray.data import ActorPoolStrategy

    decoded = ray.data.from_items(records, override_num_blocks=len(records)).map(
        DecodeVideo(config.frames, config.resolution), num_cpus=1
    )
    with warnings.catch_warnings():
        # Ray 2.60 deprecates remote kwargs but has no named parameter for bounding restarts yet.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        features = decoded.map_batches(
            ExtractVideos,
            fn_constructor_kwargs={
                "config": config,
                "row_writer": writer.row_writer(),
                "faults": faults,
            },
            # One batch in flight per actor: a batch queued behind one that kills the actor
            # would fail with it and spend a retry it did not earn.
            compute=ActorPoolStrategy(size=n_actors, max_tasks_in_flight_per_actor=1),
            batch_size=batch_size,
            num_gpus=1 if gpus else 0,
            num_cpus=1,
            # The bound is per batch (task), not per actor: an actor that dies is always
            # restarted, so one poisonous video cannot take the pool, and with it every video
            # after it, down (an actor's max_restarts is a budget for its whole life).
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
                raise PipelineError(
                    f"feature store {writer.store.path}: cannot write the row of item {item}: "
                    f"{result['error']}; the rows published before stay valid, the rest are "
                    "extracted by the next run"
                )
            done.add(item)
            if result["error"]:
                writer.fail(item, str(result["stage"]), str(result["error"]))
                summary.failed += 1
                summary.failures.append((item, str(result["stage"]), str(result["error"])))
            else:
                writer.commit(
                    item,
                    int(result["row"]),
                    str(result["sha256"]),
                    int(result["n_old"]),
                    int(result["n_new"]),
                    prompt_sha256=str(result["prompt_sha256"]),
                    checksum=int(result["checksum"]),
                )
                summary.extracted += 1
            bar.update(1)
            publisher.tick()
    finally:
        # stopped early (a run-level error): shut the execution and its actors down now, not
        # whenever the generator is collected, so that the Ray they ran on is free again
        getattr(results, "close", lambda: None)()
    return done


def store_info(store: Path) -> str:
    try:
        return FeatureStore.open(Path(store)).info()
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


def store_verify(store: Path) -> Any:
    try:
        return FeatureStore.open(Path(store)).verify()
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


def store_integrity(dataset: Path, store: Path, config: ExtractorConfig) -> list[str]:
    """What is wrong with the store version for `config`: the store's own verification plus
    catalog coverage (every video has a current row or a failure row). Empty when sound."""
    path = Path(store) / config.fingerprint()
    if not path.is_dir():
        return [f"{path}: no store version for this extractor yet"]
    try:
        version = FeatureStore.open(Path(store), config.fingerprint())
        report = version.verify()
        problems = list(report.problems)
        problems += [f"item {item}: {why}" for item, why in report.bad_rows.items()]
        if not report.problems:
            catalog = scan_videos(Path(dataset), write=False)
            problems += _uncovered(version, catalog, _titles(Path(dataset)), config)
    except StoreError as exc:
        return [str(exc)]
    return problems


def _uncovered(
    version: FeatureStore, catalog: Any, titles: dict[str, str], config: ExtractorConfig
) -> list[str]:
    """Catalog items with neither a current row (same video, same prompt) nor a failure row."""
    indexed = version.index()
    failed = set(version.failures_table().column("item").to_pylist())
    sources = {item: video.sha256 for item, video in catalog.videos.items()}
    prompts = {item: config.prompt_sha256(titles.get(item, "")) for item in sources}
    stale = [i for i in version.pending(sources, prompts) if i not in failed]
    missing = sorted(set(stale) | (set(catalog.unreadable) - failed - set(indexed)))
    if not missing:
        return []
    shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
    return [
        f"{len(missing)} catalog items have neither a row nor a failure row (new, or their "
        f"video or title changed): {shown}"
    ]


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def unextracted_videos(
    dataset: Path, store: Path, config: ExtractorConfig
) -> list[tuple[str, int]]:
    """(item, size) of every video file with neither a committed row nor a failure row in the
    store version for `config`. Costs one `stat` per file and no hashing, so a sensor can call it
    every tick; changed content of known items is the re-extraction job's business."""
    video_dir = Path(dataset) / "videos"
    if not video_dir.is_dir():
        return []
    known: set[str] = set()
    if (Path(store) / config.fingerprint()).is_dir():
        version = FeatureStore.open(Path(store), config.fingerprint())
        known = set(version.index()) | set(version.failures_table().column("item").to_pylist())
    found = []
    for entry in sorted(os.scandir(video_dir), key=lambda e: e.name):
        item = entry.name[: -len(".mp4")]
        if entry.name.endswith(".mp4") and not entry.name.startswith(".") and item not in known:
            try:
                found.append((item, entry.stat().st_size))
            except OSError:
                found.append((item, -1))
    return found


def _record_extraction_run(version_dir: Path, summary: ExtractSummary, actors: int | None) -> None:
    """Append this run's timing to <store>/<fingerprint>/extraction_runs.jsonl (one short line,
    an O_APPEND write): the report's measured extraction s/video."""
    if not (summary.extracted or summary.failed):
        return
    line = {
        "at": datetime.now(timezone.utc).isoformat(),
        "extracted": summary.extracted,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "seconds": round(summary.seconds, 3),
        "seconds_per_video": round(summary.seconds_per_video, 4),
        "actors": actors,
    }
    try:
        with open(Path(version_dir) / EXTRACTION_RUNS_FILE, "a") as f:
            f.write(json.dumps(line) + "\n")
    except OSError as exc:  # a timing record: not worth failing a finished run for
        log.warning("%s: timing record not written: %s", version_dir, exc)
