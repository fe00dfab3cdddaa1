"""Upgrading format-1 versions (one chunk file a row) to format 2 (shards), without re-extracting:
the path for stores written before shards (`linkedout store upgrade STORE`).

A format-1 version's fingerprint hashes `store_format: 1`; its upgrade is the version the same
extractor makes now, so it hashes `store_format: 2` and the rest of its fingerprinted fields
unchanged: the next `linkedout extract` of that preset finds every row already there. Rows are
copied a shard at a time with their identities (video and prompt hashes) and checksums (the bytes
are the same, so the checksums are too; int8 rows move as stored), the failures and the
extraction runs with them. A prompt bank whose members are upgraded gets the bank of the
upgraded members. CURRENT follows what it named. The format-1 version is left as it was (delete
it once the upgrade verifies). Rerunning copies only what the format-2 version lacks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featurizer.config import fingerprint_of
from featurizer.errors import StoreError
from featurizer.store.address import location
from featurizer.store.bank import BANK_KIND, bank_extractor
from featurizer.store.layout import (
    EXTRACTOR_FILE,
    FORMAT_LEGACY,
    FORMAT_SHARDED,
    ITEM_CHECKSUM,
    SHARD_ROWS,
)
from featurizer.store.location import Location
from featurizer.store.reading import FeatureStore
from featurizer.store.versions import (
    create_version,
    list_versions,
    read_current,
    read_extractor,
    set_current,
)
from featurizer.store.writing import copy_rows


@dataclass
class UpgradeSummary:
    """What one upgrade did: format-1 fingerprint -> its format-2 fingerprint, rows copied."""

    root: Location
    upgraded: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    seconds: float = 0.0
    current: str | None = None  # CURRENT after the upgrade

    def describe(self) -> str:
        if not self.upgraded:
            return f"feature store {self.root}: no format-1 version to upgrade"
        lines = [
            f"upgraded {len(self.upgraded)} version(s) of {self.root} to format 2 (sharded), "
            f"{self.rows} rows copied in {self.seconds:.1f} s:"
        ]
        lines += [f"  {old} -> {new}" for old, new in self.upgraded.items()]
        if self.current:
            lines.append(f"  CURRENT -> {self.current}")
        return "\n".join(lines)


def upgrade(
    path: Location | Path | str, progress: Callable[[str], None] | None = None
) -> UpgradeSummary:
    """Upgrade the format-1 version at `path`, or every one under the root `path` (and the banks
    naming them); see the module docstring."""
    started = time.perf_counter()
    path = location(path)
    if (path / EXTRACTOR_FILE).exists():
        root, names = path.parent, [path.name]
    else:
        root, names = path, list_versions(path)
    summary = UpgradeSummary(root)
    for name in names:
        extractor = read_extractor(root / name)
        if extractor.get("kind") != BANK_KIND and _format(extractor) == FORMAT_LEGACY:
            new, rows = upgrade_version(FeatureStore(root / name), progress)
            summary.upgraded[name], summary.rows = new, summary.rows + rows
    for name in list_versions(root) if summary.upgraded else []:
        bank = bank_extractor(root / name)
        if bank and any(m in summary.upgraded for m in bank["members"]):
            summary.upgraded[name] = _upgrade_bank(root, bank, summary.upgraded)
    current = read_current(root)
    if current in summary.upgraded:
        set_current(root, summary.upgraded[current])
        summary.current = summary.upgraded[current]
    summary.seconds = time.perf_counter() - started
    return summary


def upgrade_version(
    source: FeatureStore, progress: Callable[[str], None] | None = None
) -> tuple[str, int]:
    """The format-2 copy of one format-1 version: (its fingerprint, rows copied now)."""
    e = source.extractor
    fields = {key: e.get(key) for key in e.get("fingerprinted", [])}
    if "store_format" not in fields:
        raise StoreError(
            f"feature store {source.path}: extractor.json does not fingerprint its format"
        )
    fields["store_format"] = FORMAT_SHARDED
    fingerprint = fingerprint_of(fields)
    root = source.path.parent
    if not (root / fingerprint / EXTRACTOR_FILE).exists():
        kept = {k: v for k, v in e.items() if k not in ("created_at", "fingerprint")}
        create_version(
            root,
            {
                **kept,
                **fields,
                "fingerprint": fingerprint,
                "store_format": FORMAT_SHARDED,
                "shard_rows": SHARD_ROWS,
                "checksum": ITEM_CHECKSUM,
                "upgraded_from": source.fingerprint,
            },
        )
    target = FeatureStore(root / fingerprint)
    index = source.index_table().to_pylist()
    have = target.index_table()
    done = dict(
        zip(have.column("item").to_pylist(), have.column("source_sha256").to_pylist(), strict=True)
    )
    todo = [
        r
        for r in sorted(index, key=lambda r: r["row"])
        if done.get(r["item"]) != r["source_sha256"]
    ]
    with target.writer() as writer:
        for failure in source.failures_table().to_pylist():
            if failure["item"] not in done:
                writer.fail(failure["item"], failure["stage"], failure["error"])
        for run in source.extraction_runs():
            writer.add_extraction_run(run)
        for start in range(0, len(todo), SHARD_ROWS):
            batch = todo[start : start + SHARD_ROWS]
            rows = np.array([r["row"] for r in batch], dtype=np.int64)
            row_writer = writer.row_writer()
            new_rows = writer.allocate(len(batch))
            items = [entry["item"] for entry in batch]
            checksums = copy_rows(source, rows, items, row_writer, new_rows)
            for entry, row, checksum in zip(batch, new_rows, checksums, strict=True):
                writer.commit(
                    entry["item"], row, entry["source_sha256"], entry["n_old"], entry["n_new"],
                    prompt_sha256=entry["prompt_sha256"], checksum=checksum,
                )  # fmt: skip
            writer.publish()
            if progress is not None:
                progress(
                    f"{source.fingerprint} -> {fingerprint}: {start + len(batch)}/{len(todo)} rows"
                )
    return fingerprint, len(todo)


def _upgrade_bank(root: Location, bank: dict[str, Any], upgraded: dict[str, str]) -> str:
    """The bank naming the upgraded members in place of the format-1 ones."""
    members = [upgraded.get(m, m) for m in bank["members"]]
    fields = {"bank": members, "store_format": FORMAT_SHARDED}
    fingerprint = fingerprint_of(fields)
    extractor = {**bank, **fields, "members": members, "fingerprint": fingerprint}
    (root / fingerprint / EXTRACTOR_FILE).create_bytes(
        (json.dumps(extractor, indent=2) + "\n").encode()
    )
    return fingerprint


def _format(extractor: dict[str, Any]) -> int:
    return int(extractor.get("store_format", FORMAT_LEGACY))
