"""Catalog extraction with Ray Data: decode as CPU tasks, the frozen video LLM in an actor pool,
rows written chunk-aligned by the actors, the index committed by this process as results arrive.

A prompt bank (a preset's `prompts`) is extracted into one store version per prompt (its
members, featurizer.store.bank) in the same pass: each video is decoded and run through the
model once for the prompts whose versions lack it (featurizer.capture shares the video's
states between them), and each prompt's row is committed to its own version."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurizer.config import ExtractorConfig, hidden_size_of
from featurizer.errors import shown
from featurizer.store import (
    FeatureStore,
    StoreError,
    StoreIOError,
    location,
    read_current,
    set_current,
)
from featurizer.store.bank import create_bank
from featurizer.store.summary import directory_bytes
from pipelines.dataset.catalog import Catalog, scan_videos
from pipelines.dataset.ingest import read_titles
from pipelines.dataset.location import VIDEOS, dataset_location
from pipelines.errors import PipelineError, one_line, user_facing
from pipelines.extraction.pool import RunStopped, Video, pool_size, run_actor_pool
from pipelines.extraction.preset import check_model_family
from pipelines.store.status import store_data_version, uncovered

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    store: Path
    fingerprint: str  # the version's, or the prompt bank's
    extracted: int = 0  # videos the model ran on with success (for one prompt or more)
    skipped: int = 0  # videos every prompt's version already held
    failed: int = 0  # videos that failed (for at least one prompt)
    seconds: float = 0.0
    store_bytes: int = 0
    is_current: bool = False
    rows: int = 0  # items every prompt's version holds after this run
    data_version: str = ""  # fingerprint, rows and a digest of the index and failures
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (item, stage, error)
    notes: list[str] = field(default_factory=list)  # why stored items were extracted again
    prompt_rows: list[int] = field(default_factory=list)  # rows committed per prompt (a bank)

    @property
    def seconds_per_video(self) -> float:
        return self.seconds / self.extracted if self.extracted else 0.0

    def describe(self) -> str:
        line = (
            f"extracted {self.extracted}, skipped {self.skipped} (already stored), "
            f"failed {self.failed}; {self.seconds_per_video:.2f} s/video; "
            f"store {self.store}/{self.fingerprint}"
        )
        if len(self.prompt_rows) > 1:
            counts = ", ".join(str(n) for n in self.prompt_rows)
            line += f"; rows per prompt of the bank: {counts}"
        for note in self.notes:
            line += f"\n  {note}"
        for item, stage, error in self.failures:
            line += f"\n  failed {item} ({stage}): {error}"
        return line


@user_facing
def extract_catalog(
    dataset: Path | str,
    store: Path | str,
    config: ExtractorConfig,
    items: list[str] | None = None,
    ray_address: str | None = None,
    actors: int | None = None,
    ray_cpus: int | None = None,
    make_current: bool | None = None,
    progress: bool = True,
    actor_resources: dict[str, float] | None = None,
    on_progress: Callable[[int, int, float], None] | None = None,
    lock_wait: float = 0.0,
) -> ExtractSummary:
    """Extract every catalog video the store version for `config` (each prompt's version, for
    a bank) lacks: new, changed since it was stored (its video or its prompt, title included),
    or whose stored row fails its check. Each version is verified first (a bad row becomes a
    failure row and, if in this run, is extracted again) and the rows this run committed after:
    a run never ends in success over a store that would not verify. `make_current`: move
    CURRENT to this version (or bank) once it is complete (every catalog item has a row or a
    failure row in every prompt's version); by default only when the store has no CURRENT yet,
    so a partial re-extraction never switches what training reads. `actor_resources`: Ray
    resources each model actor needs (placing it on the nodes that offer them). `on_progress(done,
    total, seconds)`: the pool's progress, throttled (pool.run_actor_pool). `lock_wait`: seconds
    to wait for another writer of the version to finish before failing as busy (0: at once).
    Ray is started (or `ray_address` joined; a local Ray with `ray_cpus`) only when there are
    videos to extract: a run with nothing to do pays no cluster start."""
    dataset, store = dataset_location(dataset), location(store)
    started = time.perf_counter()
    check_model_family(config)
    catalog = scan_videos(dataset)
    if not len(catalog) and not catalog.unreadable:
        raise PipelineError(f"{dataset / VIDEOS}: no .mp4 files to extract")
    wanted = set(catalog.items.to_pylist()) | set(catalog.unreadable)
    if items is not None:
        unknown = sorted(set(items) - wanted)
        if unknown:
            raise PipelineError(
                f"{dataset / VIDEOS}: no video for item(s) {', '.join(map(repr, unknown))}"
            )
        wanted = set(items)
    titles = read_titles(dataset)
    members = config.members()

    try:
        hidden_size = hidden_size_of(config)
        versions = [FeatureStore.create_or_open(store, m, hidden_size) for m in members]
        if config.is_bank:
            create_bank(store, config, hidden_size)
    except OSError as exc:  # e.g. a full or read-only disk under the store
        raise PipelineError(f"feature store {store}: {one_line(exc, 500)}") from None
    summary = ExtractSummary(store=store, fingerprint=config.fingerprint())
    work, writers = ExtractionWork(), []
    try:
        with ExitStack() as stack:
            writers = [stack.enter_context(v.writer(wait=lock_wait)) for v in versions]
            work = _plan(catalog, titles, wanted, members, versions, writers, summary)
            for item in sorted(wanted & set(catalog.unreadable)):
                for writer in writers:
                    writer.fail(item, "decode", catalog.unreadable[item])
                summary.failed += 1
                summary.failures.append((item, "decode", catalog.unreadable[item]))
            if work.videos:
                n_actors, gpus = pool_size(ray_address, actors, ray_cpus)
                run_actor_pool(
                    work.videos,
                    config,
                    writers,
                    work,
                    summary,
                    n_actors,
                    gpus,
                    progress,
                    actor_resources,
                    on_progress,
                )
            summary.seconds = time.perf_counter() - started
            committed = [writer.committed_items for writer in writers]
            for writer, rows in zip(writers, committed, strict=True):
                if len(rows) or summary.failed:
                    writer.add_extraction_run(_run_record(summary, actors, len(members)))
                writer.publish()
        # the rows committed now (stored rows were checked at the start) and the whole layout
        after = [v.verify(items=c) for v, c in zip(versions, committed, strict=True)]
    except (StoreIOError, RunStopped) as exc:  # what was published stays
        raise PipelineError(f"{exc}; {_left(work, writers)}") from None
    except OSError as exc:  # the store's disk (full, read-only, gone): what was published stays
        raise PipelineError(
            f"feature store {store / summary.fingerprint}: {one_line(exc, 500)}; "
            f"{_left(work, writers)}"
        ) from None
    summary.prompt_rows = [len(c) for c in committed]
    for version, report in zip(versions, after, strict=True):
        if not report.ok:
            first = (report.problems + [f"item {i}: {w}" for i, w in report.bad_rows.items()])[0]
            raise PipelineError(
                f"extracted {summary.extracted}, failed {summary.failed}, but feature store "
                f"{version.path} does not verify: {first}; see `linkedout store verify "
                f"{version.path}`"
            )

    if make_current is None:
        make_current = read_current(store) is None
    for version in versions:
        _compact_if_fragmented(version, summary)
    summary.store_bytes = sum(directory_bytes(v.path) for v in versions)
    summary.rows, summary.data_version = store_data_version(versions, summary.fingerprint)
    if summary.failed and not summary.extracted and not summary.skipped:
        raise PipelineError(_nothing_extracted(summary))
    if make_current and not summary.rows:
        log.warning("%s not made CURRENT: it holds no rows", store / summary.fingerprint)
    elif make_current:
        problems = [
            p
            for version, member in zip(versions, members, strict=True)
            for p in uncovered(version, catalog, titles, member)
        ]
        if problems:
            log.warning("%s not made CURRENT: %s", store / summary.fingerprint, problems[0])
        else:
            try:
                set_current(store, summary.fingerprint)
            except OSError as exc:
                raise PipelineError(
                    f"feature store {store}: extracted, but CURRENT not updated: {one_line(exc, 500)}"
                ) from None
    summary.is_current = read_current(store) == summary.fingerprint
    log.info(summary.describe().splitlines()[0])
    return summary


@dataclass
class ExtractionWork:
    """What one run extracts: each video and the prompts whose versions want a row of it, and
    each video's source identity per prompt."""

    videos: list[Video] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # item -> sha256 of the video
    prompts: list[dict[str, str]] = field(default_factory=list)  # per prompt: item -> sha256
    settled: set[str] = field(default_factory=set)  # items committed or failed by this run


def _plan(
    catalog: Catalog,
    titles: dict[str, str],
    wanted: set[str],
    members: tuple[ExtractorConfig, ...],
    versions: list[FeatureStore],
    writers: list[Any],
    summary: ExtractSummary,
) -> ExtractionWork:
    """Verify each version, turn its bad rows into failure rows, and list the videos each
    version lacks (see extract_catalog)."""
    work = ExtractionWork()
    listed = catalog.table.filter(
        pc.is_in(catalog.table.column("item"), pa.array(sorted(wanted), pa.string()))
    )
    listed_items = listed.column("item").to_pylist()
    paths = dict(zip(listed_items, listed.column("path").to_pylist(), strict=True))
    work.sources = dict(zip(listed_items, listed.column("sha256").to_pylist(), strict=True))
    pending: list[list[str]] = []
    notes: list[list[str]] = []
    for member, version, writer in zip(members, versions, writers, strict=True):
        prompts = {item: member.prompt_sha256(titles.get(item, "")) for item in work.sources}
        work.prompts.append(prompts)
        bad = _fail_bad_rows(version, writer, summary, wanted)
        reasons = version.pending_reasons(work.sources, prompts)
        reasons.update({item: "row failed its check" for item in bad if item in reasons})
        notes.append(_reextraction_notes(reasons))
        pending.append(list(reasons))
    # a note every prompt shares (a changed title changes every prompt) is said once
    shared = [note for note in notes[0] if all(note in n for n in notes[1:])]
    summary.notes += shared
    for i, member_notes in enumerate(notes):
        summary.notes += [f"prompt {i}: {n}" for n in member_notes if n not in shared]
    todo = sorted(set().union(*map(set, pending)))
    summary.skipped = len(work.sources) - len(todo)
    wanted_by = [set(items) for items in pending]
    work.videos = [
        Video(
            item=item,
            path=paths[item],
            title=titles.get(item, ""),
            wanted=[item in w for w in wanted_by],
        )
        for item in todo
    ]
    return work


def _fail_bad_rows(
    version: FeatureStore, writer: Any, summary: ExtractSummary, wanted: set[str]
) -> dict[str, str]:
    """Verify the stored rows (their index; their bytes where their shard object changed since
    its commit: `store verify` reads them all); each bad one becomes a failure row (published
    now, so that no reader trusts it any longer) and so is extracted again if this run wants
    it. A problem of the whole version (not of rows) stops the run: extracting cannot repair
    it."""
    report = version.verify(changed_only=True)
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
            f"{_it_them(left)}): {shown(left, 10)}"
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
            notes.append(f"re-extracting {_count(len(found), 'item')} {words}: {shown(found, 10)}")
    return notes


def _compact_if_fragmented(version: FeatureStore, summary: ExtractSummary) -> None:
    """Compact a version whose partial shards (runs of a few videos each leave one) are worth it
    (featurizer.store.compaction.worth_compacting), and say so in the summary."""
    from featurizer.store.compaction import compact, partial_shards, worth_compacting

    if not worth_compacting(version):
        return
    shards = partial_shards(version)[1]
    try:
        done = compact(version)
    except StoreError as exc:  # the rows are committed; compaction can wait for the next run
        summary.notes.append(f"{version.path}: not compacted: {one_line(exc, 300)}")
        return
    summary.notes.append(
        f"compacted {version.path}: {done.partial_before} of {shards} shards were partial; "
        f"{done.moved} rows now in {done.shards_written} shards"
    )


def _left(work: ExtractionWork, writers: list[Any]) -> str:
    """The items a run that stopped leaves to the next one: not settled, or settled and not
    published in some prompt's version."""
    unpublished = set().union(*(writer.unpublished for writer in writers))
    left = [v.item for v in work.videos if v.item not in work.settled or v.item in unpublished]
    if not left:
        return "the rows published before stay valid"
    return (
        f"{_count(len(left), 'item')} not committed: {shown(left)} (the rows published before "
        "stay valid; the next run extracts these)"
    )


def _nothing_extracted(summary: ExtractSummary) -> str:
    """Every video of the run failed: the run's one line, counted by stage, with one error of
    the commonest stage as an example."""
    stages = Counter(stage for _, stage, _ in summary.failures)
    stage = stages.most_common(1)[0][0]
    example = next(f"{item}: {error}" for item, s, error in summary.failures if s == stage)
    counts = ", ".join(f"{n} at {s}" for s, n in stages.most_common())
    return (
        f"extracted nothing: all {summary.failed} videos failed ({counts}; e.g. "
        f"{example[:300]}); their failure rows are in {summary.store}/{summary.fingerprint}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _is_are(items: list[str]) -> str:
    return "is" if len(items) == 1 else "are"


def _it_them(items: list[str]) -> str:
    return "it" if len(items) == 1 else "them"


def _run_record(summary: ExtractSummary, actors: int | None, prompts: int) -> dict[str, Any]:
    """A run's timing, committed into each version it wrote (the report's extraction s/video).
    A bank's run records how many prompts its videos were extracted for."""
    return {
        "at": datetime.now(timezone.utc).isoformat(),
        "extracted": summary.extracted,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "seconds": round(summary.seconds, 3),
        "seconds_per_video": round(summary.seconds_per_video, 4),
        "actors": actors,
        "prompts": prompts,
    }
