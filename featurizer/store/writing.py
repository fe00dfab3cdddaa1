"""Writing a format-2 store version: RowWriter (the workers' side: a shard's rows gathered and
written as one object, once) and StoreWriter (the driver's side: allocation, commits, failures,
publishing each commit as a delta of the index log, featurizer.store.log).

Allocation is by shards: every allocate() starts a fresh shard, so the rows of two allocations
never share one, and the rows of one allocation are written by one RowWriter (one worker). A
shard object is created whole, once, and never replaced (a create-only write): two writers of
one shard object would lose each other's rows (zarr-python issue 3682), and a stale writer whose
lease lapsed (featurizer.store.lease) must not overwrite what another writer committed. A write
that finds its shard taken raises ShardTakenError: its rows need a fresh shard. Allocation skips
shard objects that exist (left by a crash or a stale writer: garbage no index names)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from featurizer.errors import ShardTakenError, StoreError
from featurizer.store import log
from featurizer.store.address import location
from featurizer.store.layout import FEATURES_DIR, INDEX_SCHEMA, STAGES, ShardGeometry, now
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
        self.on_write: Any = None  # the session's, to flush it at its next publish
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
        if self.on_write is not None:
            self.on_write(self)
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
        if self.on_write is not None:
            self.on_write(self)
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
        self.checksums.clear()  # what commits needed: they come before the rows are written
        return offsets


def copy_rows(
    source: FeatureStore,
    rows: np.ndarray,
    items: Sequence[str],
    row_writer: RowWriter,
    new_rows: Sequence[int],
) -> list[int]:
    """Gather `source`'s rows (as stored: int8 stays int8, read checked) into `row_writer` at
    `new_rows`, each for its item; returns their checksums (compaction and upgrade copy rows)."""
    if source.int8:
        values, scales = source.read_rows_int8(rows)
        return [
            row_writer.write_int8(r, v, s, item=item)
            for r, v, s, item in zip(new_rows, values, scales, items, strict=True)
        ]
    return [
        row_writer.write(r, f, item=item)
        for r, f, item in zip(new_rows, source.read_rows(rows), items, strict=True)
    ]


class StoreWriter:
    """The driver's side of one writing session; get it from ``FeatureStore.writer()``.

    allocate rows -> hand ``row_writer()`` to a worker (one per allocation) -> ``commit`` /
    ``fail`` each item -> ``publish`` (periodically; always on exit). A publish appends one
    delta to the version's log (featurizer.store.log): what it holds in memory is what changed
    since the last publish, and a few numbers per session, never the whole index."""

    def __init__(self, store: FeatureStore, fence: Fence | None = None) -> None:
        self.store = store
        self._path = store.path
        self._fence = fence or Fence()
        head = log.read_head(self._path)
        if head is None:
            raise log.lost_index(self._path)
        self._head = head
        self._geoms = store.geometries
        self._shard_rows = self._geoms[0].rows
        # after every row any commit named, at a shard boundary (allocate() also skips shard
        # objects that exist: never committed, left by a crash or a stale writer)
        self._next_row = self._shard_start(head.max_row + 1)
        self._n_rows = store.n_rows
        self._first_row = self._next_row  # the rows this session allocates: first_row onward
        self._allocated = np.zeros(0, dtype=bool)  # by row - first_row
        self._committed_rows = np.zeros(0, dtype=bool)
        self._pending: dict[str, dict[str, Any]] = {}  # item -> its entry, since the last publish
        self._pending_rows: dict[int, str] = {}  # row -> item, since the last publish
        self._runs: list[dict[str, Any]] = []
        self._retired: list[dict[str, Any]] = []
        self._session: list[pa.Table] = []  # (item, committed) of each publish, in order
        self._active: list[RowWriter] = []  # row writers with rows to flush at the next publish
        self._published_shards: set[int] = set()
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
        are skipped, never written again); rows never return to a pool: unused ones are
        garbage."""
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
            grow = self._next_row - self._first_row - len(self._allocated)
            self._allocated = np.concatenate([self._allocated, np.zeros(grow, dtype=bool)])
            self._allocated[rows[0] - self._first_row : rows[-1] + 1 - self._first_row] = True
        return rows

    def _was_allocated(self, row: int) -> bool:
        at = int(row) - self._first_row
        return 0 <= at < len(self._allocated) and bool(self._allocated[at])

    @property
    def committed_items(self) -> pa.Array:
        """Items committed in this session (and not failed since), in commit order, published
        or not."""
        pending = list(self._pending.values())
        now_ = pa.table({
            "item": pa.array([e["item"] for e in pending], pa.string()),
            "committed": pa.array([e["row"] is not None for e in pending], pa.bool_()),
        })  # fmt: skip
        table = pa.concat_tables([*self._session, now_])
        table = table.append_column("order", pa.array(np.arange(table.num_rows)))
        last = log.latest(table.rename_columns(["item", "committed", "seq"]))
        kept = last.filter(last.column("committed")).sort_by("seq")
        return kept.column("item").combine_chunks()

    @property
    def unpublished(self) -> set[str]:
        """Items committed or failed in this session that no published commit holds yet."""
        return set(self._pending)

    def row_writer(self) -> RowWriter:
        """A writer of rows allocated so far (one per allocation: see the module docstring).
        Rows it has written and not flushed are flushed by publish()."""
        writer = RowWriter(self._path, self._geoms, self._fence, bind=self.store.binds_items)
        writer.on_write = self._activate
        return writer

    def _activate(self, writer: RowWriter) -> None:
        if writer not in self._active:  # a few since the last publish: a short scan
            self._active.append(writer)

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
        publish(). Clears the item's failure."""
        self._check_open()
        if not self._was_allocated(row):
            raise StoreError(
                f"feature store {self._path}: item {item}: "
                f"row {row} was not allocated by this writer"
            )
        if not source_sha256:
            raise StoreError(f"feature store {self._path}: item {item}: empty source_sha256")
        taken = self._pending_rows.get(int(row))
        at = int(row) - self._first_row
        if (taken is not None and taken != item) or (
            taken is None and at < len(self._committed_rows) and self._committed_rows[at]
        ):
            raise StoreError(
                f"feature store {self._path}: item {item}: row {row} was already committed "
                f"for {taken or 'another item'} (rows are never reused)"
            )
        if checksum is None:
            checksum = next(
                (w.checksums[row] for w in reversed(self._active) if row in w.checksums), None
            )
            if checksum is None:
                raise StoreError(
                    f"feature store {self._path}: item {item}: row {row} was not written by a "
                    "writer of this session and no checksum was given; not committed"
                )
        self._pending[item] = {
            "item": item,
            "row": int(row),
            "source_sha256": source_sha256,
            "n_old": int(n_old),
            "n_new": int(n_new),
            "extracted_at": now(),
            "prompt_sha256": prompt_sha256,
            "checksum": int(checksum),
            "offset": None if offset is None else int(offset),
            "stage": None,
            "error": None,
            "at": None,  # the commit's time, set when it is published
        }
        self._pending_rows[int(row)] = item

    def recommit(self, entry: dict[str, Any], row: int, offset: int) -> None:
        """Record that `entry`'s item (its committed entry, from index_table()) now lives in
        `row` (allocated and written in this session, the same bytes) at `offset`: compaction
        moving a row, its identity and checksum unchanged."""
        self._check_open()
        if not self._was_allocated(row):
            raise StoreError(f"feature store {self._path}: row {row} was not allocated here")
        self._pending[entry["item"]] = {
            **{k: entry.get(k) for k in INDEX_SCHEMA.names},
            "row": int(row),
            "offset": int(offset),
            "stage": None,
            "error": None,
            "at": None,
        }
        self._pending_rows[int(row)] = entry["item"]

    def fail(self, item: str, stage: str, error: str) -> None:
        """Record that `item` failed at `stage` (decode|extract|write); replaces an earlier
        failure and drops a stale committed row of the item (see featurizer.store)."""
        if stage not in STAGES:
            raise ValueError(f"fail: stage must be one of {STAGES}, got {stage!r}")
        self._check_open()
        before = self._pending.get(item)
        if before is not None and before["row"] is not None:
            self._pending_rows.pop(before["row"], None)
        self._pending[item] = {
            **dict.fromkeys(INDEX_SCHEMA.names),
            "item": item,
            "stage": stage,
            "error": " ".join(str(error).split())[:2000],
            "at": now(),
        }

    def add_extraction_run(self, record: dict[str, Any]) -> None:
        """A run's timing record, committed with the next publish."""
        self._runs.append(record)

    def retire(self, shards: Sequence[int]) -> None:
        """Shard objects whose rows every item has left (compaction): deleted by a later
        compaction once no reader may still hold an index naming them."""
        at = now().isoformat()
        self._retired += [{"shard": int(s), "at": at} for s in shards]

    def publish(self) -> None:
        """Rows first: write the shards gathered by this session's row writers and check that
        the shard of every row committed since the last publish is there; then grow the arrays'
        metadata to the rows allocated; then commit one delta to the log. After a storage error,
        `unpublished` names the items it left uncommitted."""
        if not (self._pending or self._runs or self._retired):
            return
        offsets: dict[int, int] = {}
        for writer in self._active:
            offsets.update(writer.flush())
        self._active = []
        features = self._geoms[-1]
        new_shards = set()
        for entry in self._pending.values():
            if entry["row"] is None:
                continue
            if entry["offset"] is None and entry["row"] in offsets:
                entry["offset"] = offsets[entry["row"]]
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
        stamp = now()  # the commit's time: every shard it names was written before it
        for entry in self._pending.values():
            if entry["row"] is not None:
                entry["at"] = stamp
        entries = pa.Table.from_pylist(list(self._pending.values()), schema=_DELTA_SCHEMA)
        self._head = log.append(self._head, entries, self._runs, self._retired)
        self._record_session(entries)
        self._pending, self._pending_rows, self._runs, self._retired = {}, {}, [], []

    def _record_session(self, entries: pa.Table) -> None:
        rows = entries.column("row")
        committed = rows.is_valid()
        self._session.append(pa.table({"item": entries.column("item"), "committed": committed}))
        size = len(self._allocated)
        if len(self._committed_rows) < size:
            self._committed_rows = np.concatenate(
                [self._committed_rows, np.zeros(size - len(self._committed_rows), bool)]
            )
        at = rows.drop_null().to_numpy() - self._first_row
        self._committed_rows[at[(at >= 0) & (at < size)]] = True

    def fold(self) -> None:
        """Fold the index log into a checkpoint now (compaction: the index in one file)."""
        self._check_open()
        self.publish()
        if self._head.cover:
            self._fence.check_now()
            self._head = log.fold(self._head)

    def close(self, settle: bool = False) -> None:
        """End the session; with `settle` (it ended well), fold a small index (log.settle)."""
        if settle and not self._closed:
            self._fence.check_now()
            self._head = log.settle(self._head)
        self._closed = True

    def _grow_arrays(self) -> None:
        """Each array's zarr.json records the rows allocated (zarr readers see them all)."""
        for geometry in self._geoms:
            meta_file = self._path / FEATURES_DIR / geometry.name / "zarr.json"
            metadata = json.loads(meta_file.read_bytes())
            if metadata["shape"][0] < self._n_rows:
                metadata["shape"][0] = self._n_rows
                meta_file.write_bytes(json.dumps(metadata, indent=2).encode())


_DELTA_SCHEMA = pa.schema([f for f in log.ENTRY_SCHEMA if f.name != "seq"])
