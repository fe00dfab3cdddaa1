"""Compaction of a format-2 version (`linkedout store compact`): the committed rows of partial
shard objects rewritten into full ones, and the objects nothing names any more deleted once no
reader may still hold an index naming them (Delta Lake's OPTIMIZE and VACUUM).

Incremental runs leave partial shards: a run that adds 10 videos writes a shard of 10 rows, and
a sensor adding a few videos a run leaves one such object per run and prompt. Compaction:

1. deletes the shard objects no committed row names that were retired more than `retain`
   seconds ago (by an earlier compaction), or were written more than `retain` seconds ago and
   never named (a crashed or stale writer's garbage);
2. reads the committed rows of every shard that holds fewer than SHARD_ROWS of them, in row
   order, and writes them into fresh full shards (created, never replaced), each row's bytes
   unchanged and its checksum checked again; each moved item is committed at its new row with
   the same identity and checksum, and the emptied shards are retired, in one commit per new
   shard: a reader sees the same rows, byte for byte, before, during and after;
3. folds the index log into a checkpoint.

It holds the version's writer (the lock or the lease) throughout, so no extraction runs
meanwhile; readers never block. Memory: one shard's rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from featurizer.errors import StoreError
from featurizer.store.layout import now
from featurizer.store.reading import FeatureStore
from featurizer.store.writing import StoreWriter, copy_rows

RETAIN_SECONDS = 3600.0  # how long a reader may hold an index naming a retired shard
PARTIAL_SHARE = 0.25  # extract compacts at its end above this share of partial shards
MIN_SAVED = 4  # ... and when that leaves at least this many fewer shard objects


@dataclass
class CompactSummary:
    version: str
    moved: int = 0  # rows rewritten
    partial_before: int = 0  # partial shards before
    shards_written: int = 0
    deleted: int = 0  # shard objects deleted
    retired: int = 0  # shard objects retired now (deleted by a later compaction)
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"compacted {self.version}: {self.moved} rows of {self.partial_before} partial shards "
            f"into {self.shards_written} shards; {self.retired} shards retired, {self.deleted} "
            f"deleted ({self.seconds:.1f} s)"
        )


def partial_shards(store: FeatureStore) -> tuple[int, int]:
    """(partial shards, shards) among the shard objects committed rows live in."""
    counts = _live_counts(store)
    rows = store.geometries[-1].rows
    return int(((counts > 0) & (counts < rows)).sum()), int((counts > 0).sum())


def worth_compacting(store: FeatureStore) -> bool:
    """More than PARTIAL_SHARE of the shards are partial, and compacting them would leave at
    least MIN_SAVED fewer objects (one run's few partial shards are not worth a rewrite)."""
    counts = _live_counts(store)
    rows = store.geometries[-1].rows
    partial = counts[(counts > 0) & (counts < rows)]
    shards = int((counts > 0).sum())
    saved = len(partial) - -(-int(partial.sum()) // rows)
    return len(partial) > PARTIAL_SHARE * shards and saved >= MIN_SAVED


def _live_counts(store: FeatureStore) -> np.ndarray:
    """(shards,) int64: committed rows per shard."""
    index = store.index_view.row_index()
    shards = index.rows // store.geometries[-1].rows
    return np.bincount(shards, minlength=int(shards.max()) + 1 if len(shards) else 0)


def compact(
    store: FeatureStore,
    retain: float = RETAIN_SECONDS,
    progress: Callable[[str], None] | None = None,
) -> CompactSummary:
    """Compact `store` (the module docstring); `retain`: seconds a retired or never-named shard
    object is kept before it is deleted."""
    started = time.perf_counter()
    summary = CompactSummary(version=str(store.path))
    geoms = store.geometries
    features = geoms[-1]
    with store.writer() as writer:
        store.index_view.refresh()
        summary.deleted = _vacuum(store, retain)
        counts = _live_counts(store)
        partial = np.flatnonzero((counts > 0) & (counts < features.rows))
        summary.partial_before = len(partial)
        if len(partial) > 1:
            table = store.index_table()
            shard_of = table.column("row").to_numpy() // features.rows
            moving = table.filter(pa.array(np.isin(shard_of, partial))).sort_by("row")
            for start in range(0, moving.num_rows, features.rows):
                batch = moving.slice(start, features.rows)
                _move(store, writer, batch)
                summary.moved += batch.num_rows
                summary.shards_written += 1
                if progress is not None:
                    progress(f"compacting {store.path}: {summary.moved}/{moving.num_rows} rows")
            writer.retire(partial.tolist())
            summary.retired = len(partial)
        writer.fold()
        if retain <= 0:  # nobody may hold the old index: what was just retired goes now
            store.index_view.refresh()
            summary.deleted += _vacuum(store, retain)
    summary.seconds = time.perf_counter() - started
    return summary


def _move(store: FeatureStore, writer: StoreWriter, batch: pa.Table) -> None:
    """Rewrite the committed rows of `batch` (index entries) into one fresh shard; commit each
    item at its new row, its bytes and checksum unchanged."""
    rows = batch.column("row").to_numpy()
    entries = batch.to_pylist()
    new_rows = writer.allocate(len(rows))
    row_writer = writer.row_writer()
    items = [entry["item"] for entry in entries]
    checksums = copy_rows(store, rows, items, row_writer, new_rows)  # read checked
    offsets = row_writer.flush()
    for entry, row, checksum in zip(entries, new_rows, checksums, strict=True):
        if checksum != entry["checksum"]:
            raise StoreError(
                f"feature store {store.path}: item {entry['item']}: its row does not keep its "
                "checksum when copied; nothing moved (`linkedout store verify` checks the store)"
            )
        writer.recommit(entry, row, offsets[row])
    writer.publish()


def _vacuum(store: FeatureStore, retain: float) -> int:
    """Delete the shard objects no committed row names, retired (or, never named, written)
    more than `retain` seconds ago. Returns how many objects it deleted."""
    geoms = store.geometries
    features = geoms[-1]
    named = set((store.index_view.row_index().rows // features.rows).tolist())
    retired: dict[int, float] = {}
    for record in store.index_view.head().retired:
        retired[int(record["shard"])] = datetime.fromisoformat(record["at"]).timestamp()
    horizon = now().timestamp() - retain
    prefixes = [g.key(0).rsplit("/c/", 1)[0] + "/c/" for g in geoms]
    deleted = 0
    for key, _, modified in store.path.listing():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            continue
        shard = int(key[len(prefix) :].split("/")[0])
        if shard not in named and retired.get(shard, modified) <= horizon:
            (store.path / key).delete()
            deleted += 1
    return deleted
