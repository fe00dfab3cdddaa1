"""What a store holds against a dataset's catalog, without extracting anything: `store info` and
`store verify`, the integrity check, the videos the sensor sees as new, and the data version
Dagster records. Each accepts a prompt bank (featurizer.store.bank) as well as one version."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featurizer.config import ExtractorConfig
from featurizer.store import FeatureStore, StoreError, location
from featurizer.store.bank import PromptBank
from featurizer.store.layout import EXTRACTOR_FILE
from pipelines.catalog import scan_videos
from pipelines.errors import PipelineError


def open_bank(store: Path | str) -> PromptBank:
    """The bank (or plain version, as a bank of one) at `store`: a root (its CURRENT) or a
    version directory, local or s3://."""
    try:
        return PromptBank.open(store)
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


def store_info(store: Path | str) -> str:
    bank = open_bank(store)
    try:
        return bank.info() if bank.is_bank else bank.primary.info()
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


def store_verify(store: Path | str) -> Any:
    """A VerifyReport (or a bank's BankVerifyReport): `.ok` and `.describe()`."""
    bank = open_bank(store)
    try:
        return bank.verify() if bank.is_bank else bank.primary.verify()
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


def store_data_version(versions: Sequence[FeatureStore], fingerprint: str) -> tuple[int, str]:
    """(rows, a version string) of the versions an extraction writes (one, or a bank's
    members): `fingerprint`, the rows every version holds, and a digest of which item sits in
    which row and which failed, so a run that re-extracts or adds anything changes it, and a
    run that extracts nothing keeps it."""
    digest = hashlib.sha256()
    held: set[str] | None = None
    for version in versions:
        index = version.index_table()
        items = index.column("item").to_pylist()
        digest.update(version.fingerprint.encode())
        digest.update(repr(items).encode())
        digest.update(repr(index.column("row").to_pylist()).encode())
        digest.update(repr(sorted(version.failures_table().column("item").to_pylist())).encode())
        held = set(items) if held is None else held & set(items)
    rows = len(held or ())
    return rows, f"{fingerprint}-{rows}-{digest.hexdigest()[:12]}"


def store_integrity(dataset: Path, store: Path | str, config: ExtractorConfig) -> list[str]:
    """What is wrong with the store version(s) for `config` (each prompt's, for a bank): the
    store's own verification plus catalog coverage (every video has a current row or a failure
    row). Empty when sound."""
    problems: list[str] = []
    members = config.members()
    try:
        root = location(store)
        if config.is_bank and not (root / config.fingerprint() / EXTRACTOR_FILE).exists():
            problems.append(f"{root / config.fingerprint()}: no prompt bank version yet")
    except StoreError as exc:
        return [str(exc)]
    catalog = titles = None
    for i, member in enumerate(members):
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
            if not report.problems:
                if catalog is None:
                    catalog = scan_videos(Path(dataset), write=False)
                    titles = read_titles(Path(dataset))
                found += uncovered(version, catalog, titles or {}, member)
        except StoreError as exc:
            found = [str(exc)]
        problems += [label + p for p in found]
    return problems


def uncovered(
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


def unextracted_videos(
    dataset: Path, store: Path | str, config: ExtractorConfig
) -> list[tuple[str, int]]:
    """(item, size) of every video file that some prompt's version for `config` holds neither
    a committed row nor a failure row for. Costs one `stat` per file and no hashing, so a
    sensor can call it every tick; changed content of known items is the re-extraction job's
    business."""
    video_dir = Path(dataset) / "videos"
    if not video_dir.is_dir():
        return []
    known: set[str] | None = None
    root = location(store)
    for member in config.members():
        seen: set[str] = set()
        if (root / member.fingerprint() / EXTRACTOR_FILE).exists():
            version = FeatureStore.open(root, member.fingerprint())
            seen = set(version.index()) | set(version.failures_table().column("item").to_pylist())
        known = seen if known is None else known & seen
    known = known or set()
    found = []
    for entry in sorted(os.scandir(video_dir), key=lambda e: e.name):
        item = entry.name[: -len(".mp4")]
        if entry.name.endswith(".mp4") and not entry.name.startswith(".") and item not in known:
            try:
                found.append((item, entry.stat().st_size))
            except OSError:
                found.append((item, -1))
    return found


def read_titles(dataset: Path) -> dict[str, str]:
    """titles.csv's titles (the prompt's side information); none without the file."""
    from pipelines.ingest import read_titles as read

    return read(dataset) if (Path(dataset) / "titles.csv").exists() else {}
