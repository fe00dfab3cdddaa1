"""What a store holds against a dataset's catalog, without extracting anything: `store info` and
`store verify`, the integrity check, the videos the sensor sees as new, and the data version
Dagster records. Each accepts a prompt bank (featurizer.store.bank) as well as one version."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurizer.config import ExtractorConfig
from featurizer.store import FeatureStore, StoreError, location
from featurizer.store.bank import PromptBank
from featurizer.store.layout import EXTRACTOR_FILE
from pipelines.dataset.catalog import Catalog, scan_videos
from pipelines.dataset.ingest import read_titles
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
                    catalog = scan_videos(dataset, write=False)
                    titles = read_titles(dataset)
                found += uncovered(version, catalog, titles or {}, member)
        except StoreError as exc:
            found = [str(exc)]
        problems += [label + p for p in found]
    return problems


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
    files = sorted(
        (
            e
            for e in os.scandir(video_dir)
            if e.name.endswith(".mp4") and not e.name.startswith(".")
        ),
        key=lambda e: e.name,
    )
    items = pa.array([e.name[: -len(".mp4")] for e in files], pa.string())
    unknown = np.zeros(len(items), dtype=bool)
    root = location(store)
    for member in config.members():  # an item some prompt's version lacks (row or failure)
        if not (root / member.fingerprint() / EXTRACTOR_FILE).exists():
            unknown[:] = True
            break
        seen = FeatureStore.open(root, member.fingerprint()).lookup(items, ["row"])
        unknown |= ~pc.is_in(items, value_set=seen.column("item")).to_numpy(zero_copy_only=False)
    found = []
    for i in np.flatnonzero(unknown):
        try:
            found.append((files[i].name[: -len(".mp4")], files[i].stat().st_size))
        except OSError:
            found.append((files[i].name[: -len(".mp4")], -1))
    return found
