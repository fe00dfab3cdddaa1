"""Writing a format-2 store version: RowWriter (the workers' side: a shard's rows gathered and
written as one object, once) and StoreWriter (the driver's side: allocation, commits, failures,
publishing the next index snapshot). The protocol they follow is in featurizer.store.commit.

Allocation is by shards: every allocate() starts a fresh shard, so the rows of two allocations
never share one, and the rows of one allocation are written by one RowWriter (one worker). A
shard object is created whole, once, and never replaced (a create-only write): two writers of
one shard object would lose each other's rows (zarr-python issue 3682), and a stale writer whose
lease lapsed (featurizer.store.lease) must not overwrite what another writer committed. A write
that finds its shard taken raises ShardTakenError: its rows need a fresh shard. Allocation skips
shard objects that exist (left by a crash or a stale writer: garbage no index names)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from featurizer.errors import ShardTakenError, StoreError
from featurizer.store.address import location
from featurizer.store.commit import Snapshot, lost_index, read_latest, write_snapshot
from featurizer.store.layout import FEATURES_DIR, STAGES, ShardGeometry, now
from featurizer.store.lease import Fence
from featurizer.store.location import Location
from featurizer.store.rows import all_finite, int8_row_checksum, quantize_int8, row_checksum

if TYPE_CHECKING:
    from featurizer.store.reading import FeatureStore


class RowWriter:
    """Gathers rows of one version's shards and writes each shard whole on flush(); picklable
    (Ray actors). write() returns a row's checksum, flush() each written row's offset in its
    shard, both for StoreWriter.commit."""

    def __init__(
        self,
        path: Location | str,
        geoms: list[ShardGeometry],
        fence: Fence | None = None,
        bind: bool = True,
    ) -> None:
        self.path = location(path)
        self.geoms = geoms  # scales first for an int8 version
        self.fence = fence or Fence()
        self.bind = bind  # checksums bind the item (rows.ITEM_CHECKSUM); False: legacy xxh3_64
        self.checksums: dict[int, int] = {}
        self._pending: dict[int, dict[int, list[np.ndarray]]] = {}  # shard -> row -> arrays
        self._written: set[int] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "geoms": self.geoms, "fence": self.fence, "bind": self.bind}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["geoms"], state["fence"], state["bind"])  # type: ignore[misc]

    @property
    def int8(self) -> bool:
        return len(self.geoms) == 2

    def write(self, row: int, features: np.ndarray, *, item: str) -> int:
        """Gather `item`'s (L, K, D) float16 features for `row`; returns the row's checksum (of
        the item and the bytes). Raises StoreError (one line) for a wrong shape, a row of a
        shard already written, or NaN/Inf (e.g. a float16 overflow)."""
        expected = self.geoms[-1].chunk_shape
        features = np.asarray(features)
        if features.shape != expected:
            raise StoreError(
                f"feature store {self.path}: row {row} has shape {features.shape}, "
                f"expected {expected}"
            )
        if row < 0:
            raise StoreError(f"feature store {self.path}: row {row} is not a row")
        shard = self.geoms[-1].shard_of(row)
        if shard in self._written:
            raise StoreError(
                f"feature store {self.path}: row {row}: its shard {shard} was already written; "
                "the rows of a shard are written together, once"
            )
        with np.errstate(over="ignore"):
            data = np.ascontiguousarray(features, dtype="<f2")
        if not all_finite(data):
            raise StoreError(
                f"feature store {self.path}: row {row} holds NaN/Inf (float16 overflow?)"
            )
        key = item if self.bind else None
        if self.int8:
            values, scales = quantize_int8(data)
            self._pending.setdefault(shard, {})[row] = [scales, values]
            checksum = int8_row_checksum(values, scales, key)
        else:
            self._pending.setdefault(shard, {})[row] = [data]
            checksum = row_checksum(data, key)
        self.checksums[row] = checksum
        return checksum

    def write_int8(self, row: int, values: np.ndarray, scales: np.ndarray, *, item: str) -> int:
        """Gather an int8 version's row of `item` as stored elsewhere already: (L, K, D) int8
        values and (L, K) float16 scales (an upgrade copies them as they are); returns its
        checksum."""
        if not self.int8:
            raise StoreError(f"feature store {self.path}: rows are float16, not int8")
        shard = self.geoms[-1].shard_of(row)
        if shard in self._written:
            raise StoreError(
                f"feature store {self.path}: row {row}: its shard {shard} was already written"
            )
        values = np.ascontiguousarray(values, dtype=np.int8)
        scales = np.ascontiguousarray(scales, dtype="<f2")
        self._pending.setdefault(shard, {})[row] = [scales, values]
        self.checksums[row] = int8_row_checksum(values, scales, item if self.bind else None)
        return self.checksums[row]

    def flush(self) -> dict[int, int]:
        """Create every gathered shard as one object per array (scales, then values): row ->
        its offset in its features shard, for the rows written now. Checks the writer's fence
        first (StoreFencedError once its lease is lost); ShardTakenError when a shard object
        exists already (its rows need a fresh shard: the module docstring)."""
        offsets: dict[int, int] = {}
        pending, self._pending = sorted(self._pending.items()), {}
        for shard, rows in pending:
            self.fence.check_now()
            for g, geometry in enumerate(self.geoms):
                parts, at = geometry.build(shard, {row: arrays[g] for row, arrays in rows.items()})
                shard_object = self.path / geometry.key(shard)
                if not shard_object.create_bytes(parts):
                    raise ShardTakenError(
                        f"feature store {self.path}: shard object {shard_object} exists already "
                        f"(written by another writer or an earlier try); rows "
                        f"{min(rows)}..{max(rows)} need a fresh shard"
                    )
            offsets.update(at)  # the last geometry is the features array
            self._written.add(shard)
        return offsets


class StoreWriter:
    """The driver's side of one writing session; get it from ``FeatureStore.writer()``.

    allocate rows -> hand ``row_writer()`` to a worker (one per allocation) -> ``commit`` /
    ``fail`` each item -> ``publish`` (periodically; always on exit)."""

    def __init__(self, store: FeatureStore, fence: Fence | None = None) -> None:
        self.store = store
        self._path = store.path
        self._fence = fence or Fence()
        snapshot = read_latest(self._path)
        if snapshot is None:
            raise lost_index(self._path)
        self._snapshot: Snapshot = snapshot
        index = snapshot.index.to_pylist()
        self._index: dict[str, dict[str, Any]] = {r["item"]: r for r in index}
        self._failures: dict[str, dict[str, Any]] = {
            r["item"]: r for r in snapshot.failures.to_pylist()
        }
        self._runs = list(snapshot.runs)
        self._geoms = store.geometries
        self._shard_rows = self._geoms[0].rows
        allocated = store.n_rows
        rows = [r["row"] for r in index if 0 <= r["row"] < allocated]
        # after every committed row, at a shard boundary (allocate() skips shard objects that
        # exist: never committed, left by a crash or a stale writer)
        self._next_row = self._shard_start(max(rows) + 1) if rows else 0
        self._n_rows = allocated
        self._allocated: set[int] = set()
        self._row_items: dict[int, str] = {}  # rows committed in this session -> item
        self._unpublished: set[str] = set()  # items committed or failed since the last publish
        self._row_writers: list[RowWriter] = []
        self._published_shards: set[int] = set()
        self._dirty = False
        self._closed = False

    def _shard_start(self, row: int) -> int:
        return -(-row // self._shard_rows) * self._shard_rows

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"feature store {self._path}: the writer is closed (lock released)")
        self._fence.check()

    def _shard_taken(self, shard: int) -> bool:
        return any((self._path / g.key(shard)).exists() for g in self._geoms)

    def allocate(self, n: int) -> list[int]:
        """n fresh rows from a fresh shard, after every committed row (shards no index names
        are written again); rows never return to a pool: unused ones are garbage."""
        if n < 0:
            raise ValueError(f"allocate: n must be >= 0, got {n}")
        self._check_open()
        if n:
            while self._shard_taken(self._next_row // self._shard_rows):
                self._next_row += self._shard_rows
        rows = list(range(self._next_row, self._next_row + n))
        if n:
            self._next_row = self._shard_start(self._next_row + n)
            self._n_rows = max(self._n_rows, self._next_row)
            self._dirty = True
        self._allocated.update(rows)
        return rows

    @property
    def committed_items(self) -> list[str]:
        """Items committed in this session (and not failed since), in commit order."""
        return [
            item
            for row, item in self._row_items.items()
            if self._index.get(item, {}).get("row") == row
        ]

    @property
    def unpublished(self) -> set[str]:
        """Items committed or failed in this session that no published snapshot holds yet."""
        return set(self._unpublished)

    def row_writer(self) -> RowWriter:
        """A writer of rows allocated so far (one per allocation: see the module docstring).
        Rows it has written and not flushed are flushed by publish()."""
        writer = RowWriter(self._path, self._geoms, self._fence, bind=self.store.binds_items)
        self._row_writers.append(writer)
        return writer

    def commit(
        self,
        item: str,
        row: int,
        source_sha256: str,
        n_old: int,
        n_new: int,
        *,
        prompt_sha256: str | None = None,
        checksum: int | None = None,
        offset: int | None = None,
    ) -> None:
        """Record that `row` (allocated in this session, written whole) holds `item`,
        extracted from the video with `source_sha256` and the prompt text with `prompt_sha256`.
        `checksum` and `offset` are what RowWriter.write and .flush returned (for a row written
        by a writer of this session they are found there). Visible to readers after the next
        publish(). Clears the item's failure row."""
        self._check_open()
        if row not in self._allocated:
            raise StoreError(
                f"feature store {self._path}: item {item}: "
                f"row {row} was not allocated by this writer"
            )
        if not source_sha256:
            raise StoreError(f"feature store {self._path}: item {item}: empty source_sha256")
        taken = self._row_items.get(row)
        if taken is not None and taken != item:
            raise StoreError(
                f"feature store {self._path}: item {item}: row {row} was already committed "
                f"for {taken} (rows are never reused)"
            )
        if checksum is None:
            checksum = next(
                (w.checksums[row] for w in self._row_writers if row in w.checksums), None
            )
            if checksum is None:
                raise StoreError(
                    f"feature store {self._path}: item {item}: row {row} was not written by a "
                    "writer of this session and no checksum was given; not committed"
                )
        self._index[item] = {
            "item": item,
            "row": int(row),
            "source_sha256": source_sha256,
            "n_old": int(n_old),
            "n_new": int(n_new),
            "extracted_at": now(),
            "prompt_sha256": prompt_sha256,
            "checksum": int(checksum),
            "offset": None if offset is None else int(offset),
        }
        self._row_items[int(row)] = item
        self._failures.pop(item, None)
        self._unpublished.add(item)
        self._dirty = True

    def fail(self, item: str, stage: str, error: str) -> None:
        """Record that `item` failed at `stage` (decode|extract|write); replaces an earlier
        failure and drops a stale committed row of the item (see featurizer.store)."""
        if stage not in STAGES:
            raise ValueError(f"fail: stage must be one of {STAGES}, got {stage!r}")
        self._check_open()
        self._failures[item] = {
            "item": item,
            "stage": stage,
            "error": " ".join(str(error).split())[:2000],
            "at": now(),
        }
        self._index.pop(item, None)
        self._unpublished.add(item)
        self._dirty = True

    def add_extraction_run(self, record: dict[str, Any]) -> None:
        """A run's timing record, committed with the next snapshot."""
        self._runs.append(record)
        self._dirty = True

    def publish(self) -> None:
        """Rows first: write the shards gathered by this session's row writers and check that
        the shard of every row committed since the last publish is there; then grow the arrays'
        metadata to the rows allocated; then commit the next index snapshot. After a storage
        error, `unpublished` names the items it left uncommitted."""
        if not self._dirty:
            return
        offsets: dict[int, int] = {}
        for writer in self._row_writers:
            offsets.update(writer.flush())
        features = self._geoms[-1]
        new_shards = set()
        for entry in self._index.values():
            if entry["offset"] is None and entry["row"] in offsets:
                entry["offset"] = offsets[entry["row"]]
            if entry["row"] in self._row_items and self._row_items[entry["row"]] == entry["item"]:
                new_shards.add(features.shard_of(entry["row"]))
                if entry["offset"] is None:
                    raise StoreError(
                        f"feature store {self._path}: item {entry['item']}: row {entry['row']} "
                        "was committed but its shard was never written; not published"
                    )
        for shard in sorted(new_shards - self._published_shards):
            for geometry in self._geoms:
                if not (self._path / geometry.key(shard)).exists():
                    raise StoreError(
                        f"feature store {self._path}: shard object {self._path / geometry.key(shard)} "
                        "is missing: its rows are not committed"
                    )
        self._published_shards |= new_shards
        self._fence.check_now()
        self._grow_arrays()
        seq = self._snapshot.seq + 1
        index = sorted(self._index.values(), key=lambda r: r["row"])
        write_snapshot(self._path, seq, index, list(self._failures.values()), self._runs)
        self._snapshot = Snapshot(seq, self._snapshot.table, self._runs)
        self._unpublished.clear()
        self._dirty = False

    def close(self) -> None:
        self._closed = True

    def _grow_arrays(self) -> None:
        """Each array's zarr.json records the rows allocated (zarr readers see them all)."""
        for geometry in self._geoms:
            meta_file = self._path / FEATURES_DIR / geometry.name / "zarr.json"
            metadata = json.loads(meta_file.read_bytes())
            if metadata["shape"][0] < self._n_rows:
                metadata["shape"][0] = self._n_rows
                meta_file.write_bytes(json.dumps(metadata, indent=2).encode())
