"""What a store holds against a dataset's catalog, without extracting anything: `store info` and
`store verify`, the integrity check, the videos the sensor sees as new, and the data version
Dagster records. Each accepts a prompt bank (featurizer.store.bank) as well as one version."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurizer.config import ExtractorConfig
from featurizer.store import FeatureStore, StoreError, location
from featurizer.store.bank import PromptBank
from featurizer.store.layout import EXTRACTOR_FILE
from pipelines.dataset.catalog import Catalog, read_catalog, scan_videos
from pipelines.dataset.ingest import read_titles
from pipelines.dataset.location import VIDEO_PAGE, VIDEOS, dataset_location, video_pages
from pipelines.errors import user_facing


def open_bank(store: Path | str) -> PromptBank:
    """The bank (or plain version, as a bank of one) at `store`: a root (its CURRENT) or a
    version directory, local or s3://."""
    return PromptBank.open(store)


@user_facing
def store_info(store: Path | str) -> str:
    bank = open_bank(store)
    return bank.info() if bank.is_bank else bank.primary.info()


@user_facing
def store_verify(store: Path | str) -> Any:
    """A VerifyReport (or a bank's BankVerifyReport): `.ok` and `.describe()`."""
    bank = open_bank(store)
    return bank.verify() if bank.is_bank else bank.primary.verify()


def store_data_version(versions: Sequence[FeatureStore], fingerprint: str) -> tuple[int, str]:
    """(rows, a version string) of the versions an extraction writes (one, or a bank's
    members): `fingerprint`, the rows every version holds, and a digest of each version's last
    commit (the log's nonce: it names which item sits in which row and which failed), so a run
    that re-extracts or adds anything changes it, and a run that extracts nothing keeps it."""
    digest = hashlib.sha256()
    for version in versions:
        digest.update(f"{version.fingerprint}:{version.index_view.state_key()}".encode())
    if len(versions) == 1:
        rows = versions[0].index_view.counts()[0]
    else:  # the items every prompt's version holds, in columns
        held = versions[0].items()
        for version in versions[1:]:
            held = held.filter(pc.is_in(held, value_set=version.items()))
        rows = len(held)
    return rows, f"{fingerprint}-{rows}-{digest.hexdigest()[:12]}"


def store_integrity(dataset: Path | str, store: Path | str, config: ExtractorConfig) -> list[str]:
    """What is wrong with the store version(s) for `config` (each prompt's, for a bank): the
    store's own verification plus catalog coverage (every video has a current row or a failure
    row). Empty when sound."""

    @functools.cache  # listed once, for the first version that verifies
    def listing() -> tuple[Catalog, dict[str, str]]:
        return scan_videos(dataset, write=False), read_titles(dataset)

    def coverage(version: FeatureStore, member: ExtractorConfig) -> list[str]:
        catalog, titles = listing()
        return uncovered(version, catalog, titles, member)

    return _version_problems(store, config, coverage)


def uncovered(
    version: FeatureStore, catalog: Catalog, titles: dict[str, str], config: ExtractorConfig
) -> list[str]:
    """Catalog items with neither a current row (same video, same prompt) nor a failure row."""
    items = catalog.items.to_pylist()
    pending = version.index_view.pending(
        items,
        catalog.table.column("sha256").to_pylist(),
        [config.prompt_sha256(titles.get(i, "")) for i in items],
    ).column("item")
    unreadable = sorted(catalog.unreadable)
    known = version.lookup(pending.to_pylist() + unreadable, ["row", "stage"])
    failed = known.filter(known.column("row").is_null()).column("item")
    indexed = known.filter(known.column("row").is_valid()).column("item")
    stale = pending.filter(pc.invert(pc.is_in(pending, value_set=failed))).to_pylist()
    gone = pa.array(unreadable, pa.string())
    gone = gone.filter(pc.invert(pc.is_in(gone, value_set=pa.concat_arrays([
        failed.combine_chunks(), indexed.combine_chunks()]))))  # fmt: skip
    missing = sorted(set(stale) | set(gone.to_pylist()))
    if not missing:
        return []
    shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
    return [
        f"{len(missing)} catalog items have neither a row nor a failure row (new, or their "
        f"video or title changed): {shown}"
    ]


def _versions(store: Path | str, config: ExtractorConfig) -> list[FeatureStore] | None:
    """Each prompt's store version for `config`, or None while some prompt has none yet (then
    every video is unextracted)."""
    root = location(store)
    versions = []
    for member in config.members():
        if not (root / member.fingerprint() / EXTRACTOR_FILE).exists():
            return None
        versions.append(FeatureStore.open(root, member.fingerprint()))
    return versions


def _unknown_to(versions: list[FeatureStore] | None, items: pa.Array) -> np.ndarray:
    """(n,) bool: the `items` some version holds neither a row nor a failure row of (a lookup
    of these items only, in columns)."""
    unknown = np.zeros(len(items), dtype=bool)
    if versions is None:
        unknown[:] = True
        return unknown
    for version in versions:
        seen = version.lookup(items, ["row"])
        unknown |= ~pc.is_in(items, value_set=seen.column("item")).to_numpy(zero_copy_only=False)
    return unknown


LOOKUP_CHUNK = 100_000  # listed videos looked up in the store at once (pending_videos)


@dataclass
class PendingVideos:
    """What a listing found unextracted: at most `limit` (item, size) pairs, and whether the
    listing went to its end (`complete`: `videos` is every pending one) or stopped at the cap."""

    videos: list[tuple[str, int]]
    listed: int  # video objects listed before stopping
    complete: bool


def pending_videos(
    dataset: Path | str,
    store: Path | str,
    config: ExtractorConfig,
    limit: int | None = None,
    chunk: int = LOOKUP_CHUNK,
) -> PendingVideos:
    """The videos (local or s3:// dataset) that some prompt's version for `config` holds
    neither a committed row nor a failure row of, in listing order, up to `limit`. The listing
    comes a page (VIDEO_PAGE objects) at a time; `chunk` listed videos at a time are looked up
    in the store, in columns, and the listing stops once `limit` are found: memory is a chunk
    plus `limit` pairs, whatever the size of the dataset. Nothing is read or hashed but the
    listing, so a sensor can call it every tick; changed content of known items is the
    re-extraction job's business.

    Why chunks: a local directory lists in its own (hash) order, so any page's items are spread
    over the whole sorted index and a lookup reads every part of it; looking up `chunk` videos
    at once reads the index once per chunk instead of once per page. An object store lists in
    key order, so there a chunk touches only its own range of the index."""
    versions = _versions(store, config)
    if versions is None:  # no store to read: every page is pending as it comes
        chunk = 1
    found: list[tuple[str, int]] = []
    listed = 0
    pages: list[pa.Table] = []
    held = 0

    def look_up(pages: list[pa.Table]) -> bool:
        """Add the pending videos of `pages` to `found`; False once `limit` is reached."""
        table = pa.concat_tables(pages)
        items = table.column("item").combine_chunks()
        sizes = table.column("size").to_numpy()
        for i in np.flatnonzero(_unknown_to(versions, items)):
            if limit is not None and len(found) >= limit:
                return False
            found.append((items[int(i)].as_py(), int(sizes[i])))
        return True

    for page in video_pages(dataset):
        listed += page.num_rows
        pages.append(page)
        held += page.num_rows
        if held >= chunk:
            if not look_up(pages):
                return PendingVideos(found, listed, complete=False)
            pages, held = [], 0
    if pages and not look_up(pages):
        return PendingVideos(found, listed, complete=False)
    return PendingVideos(found, listed, complete=True)


def unextracted_videos(
    dataset: Path | str, store: Path | str, config: ExtractorConfig, limit: int | None = None
) -> list[tuple[str, int]]:
    """(item, size) of the video files some prompt's version for `config` holds neither a
    committed row nor a failure row for, at most `limit` of them (pending_videos)."""
    return pending_videos(dataset, store, config, limit).videos


def store_address(store: Path | str) -> str:
    """How an orchestrator names `store`: its absolute path, or its s3:// URL."""
    return location(store).address


def store_marker(store: Path | str, config: ExtractorConfig) -> str:
    """What names the committed state of the store versions for `config`: each prompt's
    fingerprint and its last commit's nonce (one small read each). The same marker means no
    row or failure row came or went since."""
    root = location(store)
    parts = []
    for member in config.members():
        path = root / member.fingerprint()
        if not (path / EXTRACTOR_FILE).exists():
            parts.append(f"{member.fingerprint()}:absent")
            continue
        version = FeatureStore.open(root, member.fingerprint())
        parts.append(f"{member.fingerprint()}:{version.index_view.state_key()}")
    return ",".join(parts)


def videos_directory_mark(dataset: Path | str) -> str | None:
    """The local videos/ directory's modification time (ns): it moves when a file is added,
    removed or renamed in it. None for an object store, which has no such thing (a listing is
    the only way to know)."""
    root = dataset_location(dataset)
    if not root.is_local:
        return None
    try:
        return str(os.stat(root.path / VIDEOS).st_mtime_ns)
    except OSError:
        return "absent"


@dataclass
class Coverage:
    """Catalog items (catalog.parquet, as the last catalog step recorded it) against the store
    versions for a config: how many have a row or a failure row in every prompt's version, and
    the first few that have not."""

    catalog: int
    covered: int
    missing: int
    first_missing: list[str]


def catalog_coverage(
    dataset: Path | str, store: Path | str, config: ExtractorConfig, shown: int = 10
) -> Coverage:
    """Coverage of the recorded catalog, looked up a page of items at a time (columns only)."""
    items = read_catalog(dataset).column("item").combine_chunks()
    versions = _versions(store, config)
    missing, first = 0, []
    for start in range(0, len(items), VIDEO_PAGE):
        page = items.slice(start, VIDEO_PAGE)
        unknown = np.flatnonzero(_unknown_to(versions, page))
        missing += len(unknown)
        first += [page[int(i)].as_py() for i in unknown[: max(0, shown - len(first))]]
    return Coverage(len(items), len(items) - missing, missing, first)


def uncovered_items(store: Path | str, config: ExtractorConfig, items: Sequence[str]) -> list[str]:
    """The `items` some prompt's version for `config` holds neither a row nor a failure row
    of (what a run asked for and did not leave covered)."""
    versions = _versions(store, config)
    found: list[str] = []
    for start in range(0, len(items), VIDEO_PAGE):
        page = pa.array(items[start : start + VIDEO_PAGE], pa.string())
        found += [page[int(i)].as_py() for i in np.flatnonzero(_unknown_to(versions, page))]
    return found


def store_verification(store: Path | str, config: ExtractorConfig) -> list[str]:
    """What is wrong with the store version(s) for `config` themselves (each prompt's, for a
    bank): layout, shapes, dtype, checksums, NaN/Inf. Empty when they verify. Catalog coverage
    is not judged here (catalog_coverage, store_integrity)."""
    return _version_problems(store, config)


def _version_problems(
    store: Path | str,
    config: ExtractorConfig,
    also: Callable[[FeatureStore, ExtractorConfig], list[str]] | None = None,
) -> list[str]:
    """Each prompt's version verified (labelled by prompt, for a bank), plus `also(version,
    the prompt's config)` for a version whose layout verifies."""
    problems: list[str] = []
    try:
        root = location(store)
        if config.is_bank and not (root / config.fingerprint() / EXTRACTOR_FILE).exists():
            problems.append(f"{root / config.fingerprint()}: no prompt bank version yet")
    except StoreError as exc:
        return [str(exc)]
    for i, member in enumerate(config.members()):
        label = f"prompt {i}: " if config.is_bank else ""
        path = root / member.fingerprint()
        try:
            if not (path / EXTRACTOR_FILE).exists():
                problems.append(f"{label}{path}: no store version for this extractor yet")
                continue
            version = FeatureStore.open(root, member.fingerprint())
            report = version.verify()
            found = list(report.problems)
            found += [f"item {item}: {why}" for item, why in report.bad_rows.items()]
            if also is not None and not report.problems:
                found += also(version, member)
        except StoreError as exc:
            found = [str(exc)]
        problems += [label + p for p in found]
    return problems
