"""The feature store: one version directory per extractor fingerprint, rows of (L, K, D) float16.

Layout (a contract: training, the CLI and the Dagster checks read it)::

    STORE/
      <fingerprint>/
        features.zarr      zarr v3 group; array "features": (N, L, K, D) float16,
                           chunks (1, L, K, D), no compressor, fill value NaN
        index.parquet      item, row, source_sha256, n_old, n_new, extracted_at
        failures.parquet   item, stage (decode|extract|write), error, at
        extractor.json     the fingerprinted settings (config.fingerprint_fields()), plus
                           hidden_size, L, K, G, the old/new token split, created_at
        .lock              held by the one writer of this version
      CURRENT              the fingerprint training reads by default

Commit protocol. Workers write whole rows (one chunk each, so writers never share a chunk);
the single writer process (the driver) then records them, flushes their chunks to disk (one
syncfs on Linux) and publishes index.parquet by write-temp, fsync, rename, fsync-dir. The index rename is the commit: readers trust only rows
named in the published index and never take the lock. A crash leaves at most rows that no
index names; the next writer allocates from max(committed row) + 1, so it overwrites them.

Rows are never overwritten while an index names them: a changed video (new source_sha256) gets
a new row and its old row becomes garbage, unreferenced and never read (no compaction yet;
garbage is bounded by the re-extracted and crashed items). The fill value is NaN, so a
committed row whose chunk is missing reads as NaN and verify() flags it.

Failures. failures.parquet holds one row per item (the latest failure). A failure never blocks a
retry: pending() lists every item not committed with its current sha256, failed or not, and an
item's failure row is removed when it succeeds. An item that fails after its video changed is
dropped from the index (its stale features describe a video that no longer exists), so no item
is ever both in the index and in the failures. failures.parquet is published just before the
index; a crash between the two renames can leave one item in both, which verify() reports and
the next run repairs.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from featurizer.config import ExtractorConfig

FEATURES_DIR = "features.zarr"
ARRAY_NAME = "features"
INDEX_FILE = "index.parquet"
FAILURES_FILE = "failures.parquet"
EXTRACTOR_FILE = "extractor.json"
LOCK_FILE = ".lock"
CURRENT_FILE = "CURRENT"
DTYPE = np.dtype("float16")
STAGES = ("decode", "extract", "write")

INDEX_SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("row", pa.int64()),
        ("source_sha256", pa.string()),
        ("n_old", pa.int32()),
        ("n_new", pa.int32()),
        ("extracted_at", pa.timestamp("us", tz="UTC")),
    ]
)
FAILURES_SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("stage", pa.string()),
        ("error", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)


class StoreError(Exception):
    """A feature-store problem the user can act on; the message is one line naming the path."""


class StoreBusyError(StoreError):
    """Another process holds the writer lock of a store version."""


class MissingItemsError(StoreError, KeyError):
    """Items asked for that the committed index does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------
# Reading


class FeatureStore:
    """One store version: ``root / fingerprint``. Reading never takes the lock."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._extractor = _read_extractor(self._path)
        self._array: Any = None
        self._array_key: tuple[int, int, int] | None = None
        self._index_key: tuple[int, int, int] | None = None
        self._index_table = pa.Table.from_pylist([], schema=INDEX_SCHEMA)
        self._index: dict[str, int] = {}

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def create_or_open(cls, root: Path, config: ExtractorConfig, hidden_size: int) -> FeatureStore:
        """The version of `config` under `root`, created (empty) if missing, validated if not."""
        root = Path(root)
        fingerprint = config.fingerprint()
        path = root / fingerprint
        if not (path / EXTRACTOR_FILE).is_file():
            _create_version(root, config, hidden_size)
        store = cls(path)
        store._check_matches(config, hidden_size)
        return store

    @classmethod
    def open(cls, root: Path, fingerprint: str | None = None) -> FeatureStore:
        """An existing version: `fingerprint`, or the one named in root/CURRENT. `root` may also
        be a version directory itself (then `fingerprint` must be None or its name)."""
        root = Path(root)
        if (root / EXTRACTOR_FILE).is_file() and fingerprint in (None, root.name):
            return cls(root)
        if fingerprint is None:
            fingerprint = read_current(root)
            if fingerprint is None:
                versions = ", ".join(list_versions(root)) or "none"
                raise StoreError(
                    f"feature store {root}: no {CURRENT_FILE} file; pass a fingerprint "
                    f"(versions: {versions})"
                )
        path = root / fingerprint
        if not (path / EXTRACTOR_FILE).is_file():
            versions = ", ".join(list_versions(root)) or "none"
            raise StoreError(
                f"feature store {path} not found (no {EXTRACTOR_FILE}; versions: {versions})"
            )
        return cls(path)

    # -- properties ----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def fingerprint(self) -> str:
        return str(self._extractor["fingerprint"])

    @property
    def shape_per_item(self) -> tuple[int, int, int]:
        """(L, K, D): tapped layers, tokens per layer, hidden size."""
        e = self._extractor
        return (int(e["L"]), int(e["K"]), int(e["hidden_size"]))

    @property
    def extractor(self) -> dict[str, Any]:
        """The content of extractor.json (a copy)."""
        return json.loads(json.dumps(self._extractor))

    @property
    def array(self) -> Any:
        """The zarr array "features", opened read-only; reopened after another process resized
        it (its zarr.json changed)."""
        key = _file_key(self._path / FEATURES_DIR / ARRAY_NAME / "zarr.json")
        if self._array is None or key != self._array_key:
            self._array = _open_array(self._path, mode="r")
            self._array_key = key
        return self._array

    # -- index ---------------------------------------------------------------------------------

    def index(self) -> dict[str, int]:
        """item -> row for committed items (a copy)."""
        self._refresh_index()
        return dict(self._index)

    def index_table(self) -> pa.Table:
        self._refresh_index()
        return self._index_table

    def failures_table(self) -> pa.Table:
        return _read_table(self._path / FAILURES_FILE, FAILURES_SCHEMA)

    def pending(self, sources: Mapping[str, str]) -> list[str]:
        """Items of `sources` (item -> sha256 of the video) not committed with that sha256, in
        the order given. Recorded failures are retried (see the module docstring)."""
        table = self.index_table()
        committed = dict(
            zip(
                table.column("item").to_pylist(),
                table.column("source_sha256").to_pylist(),
                strict=True,
            )
        )
        return [item for item, sha in sources.items() if committed.get(item) != sha]

    # -- features ------------------------------------------------------------------------------

    def read(self, items: Sequence[str]) -> np.ndarray:
        """(n, L, K, D) float16 features of committed `items`, in the order given."""
        index = self.index()
        missing = [item for item in items if item not in index]
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise MissingItemsError(
                f"feature store {self._path}: {len(missing)} item(s) not in the index: {shown}"
            )
        return self.read_rows(np.array([index[item] for item in items], dtype=np.int64))

    def read_rows(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """(n, L, K, D) float16 features of array rows, in the order given (no index check)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0:
            return np.empty((0, *self.shape_per_item), dtype=DTYPE)
        array = self.array
        if rows.min() < 0 or rows.max() >= array.shape[0]:
            raise StoreError(
                f"feature store {self._path}: rows out of range [0, {array.shape[0]}): "
                f"{rows[(rows < 0) | (rows >= array.shape[0])][:5].tolist()}"
            )
        unique, inverse = np.unique(rows, return_inverse=True)
        if unique[-1] - unique[0] + 1 == unique.size:  # contiguous: one slice
            block = array[int(unique[0]) : int(unique[-1]) + 1]
        else:
            block = array.oindex[unique]
        return np.ascontiguousarray(block[inverse])

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def writer(self, wait: float = 0.0) -> Iterator[StoreWriter]:
        """The one writer of this version: waits up to `wait` seconds for the lock, else raises
        StoreBusyError. Publishes on exit, also when the block raises (then a failing publish
        does not hide the block's exception)."""
        lock = filelock.FileLock(str(self._path / LOCK_FILE), thread_local=False)
        try:
            lock.acquire(timeout=max(wait, 0.0))
        except filelock.Timeout:
            raise StoreBusyError(
                f"feature store {self._path} is busy: another extraction holds "
                f"{self._path / LOCK_FILE} (waited {wait:g} s)"
            ) from None
        try:
            w = StoreWriter(self)
            try:
                yield w
            except BaseException:
                # Keep what is done; if even that fails (the disk that broke the block is
                # full), the last published index stands and the block's error is the news.
                with suppress(OSError, StoreError):
                    w.publish()
                raise
            else:
                w.publish()
            finally:
                w._closed = True
        finally:
            lock.release()

    # -- checks and summaries ------------------------------------------------------------------

    def verify(self, check_values: bool = True) -> VerifyReport:
        """Integrity checks; see VerifyReport. Reads every committed row if `check_values`."""
        problems: list[str] = []
        e = self._extractor
        fields = {key: e.get(key) for key in e.get("fingerprinted", [])}
        expected = _hash_fields(fields)
        if e.get("fingerprint") != self._path.name:
            problems.append(f"extractor.json fingerprint {e.get('fingerprint')!r} != directory")
        if expected != self._path.name:
            problems.append(f"extractor.json fields hash to {expected}, not {self._path.name}")

        array = self.array
        L, K, D = self.shape_per_item
        if array.dtype != DTYPE:
            problems.append(f"features dtype is {array.dtype}, expected float16")
        if tuple(array.shape[1:]) != (L, K, D):
            problems.append(f"features shape {array.shape} does not end in (L, K, D)={(L, K, D)}")
        if tuple(array.chunks) != (1, L, K, D):
            problems.append(f"features chunks {array.chunks}, expected {(1, L, K, D)}")
        if array.compressors:
            problems.append(f"features are compressed ({array.compressors}); expected none")

        index = self.index_table()
        items = index.column("item").to_pylist()
        rows = np.asarray(index.column("row").to_numpy(zero_copy_only=False), dtype=np.int64)
        shas = index.column("source_sha256").to_pylist()
        if len(set(items)) != len(items):
            problems.append(f"index has {len(items) - len(set(items))} duplicate item(s)")
        if len(np.unique(rows)) != len(rows):
            problems.append(f"index has {len(rows) - len(np.unique(rows))} duplicate row(s)")
        bad = [(i, int(r)) for i, r in zip(items, rows, strict=True) if not 0 <= r < array.shape[0]]
        if bad:
            problems.append(
                f"{len(bad)} index row(s) outside [0, {array.shape[0]}), "
                f"e.g. {bad[0][0]}: {bad[0][1]}"
            )
        no_sha = [i for i, s in zip(items, shas, strict=True) if not s]
        if no_sha:
            problems.append(f"{len(no_sha)} index item(s) without source_sha256, e.g. {no_sha[0]}")

        failures = self.failures_table()
        failed = set(failures.column("item").to_pylist())
        both = sorted(failed & set(items))
        if both:
            problems.append(f"{len(both)} item(s) both in index and failures, e.g. {both[0]}")
        stages = set(failures.column("stage").to_pylist()) - set(STAGES)
        if stages:
            problems.append(f"failures has unknown stage(s) {sorted(stages)}")

        if check_values and not bad and len(rows):
            order = np.argsort(rows)
            batch = max(1, (64 << 20) // (L * K * D * DTYPE.itemsize))  # about 64 MB a read
            non_finite: list[str] = []
            for start in range(0, len(order), batch):
                take = order[start : start + batch]
                block = self.read_rows(rows[take])
                finite = np.isfinite(block).reshape(len(take), -1).all(axis=1)
                non_finite += [items[i] for i in take[~finite]]
            if non_finite:
                problems.append(
                    f"{len(non_finite)} committed row(s) hold NaN/Inf (or were never written), "
                    f"e.g. {non_finite[0]}"
                )
        return VerifyReport(
            path=self._path, problems=problems, n_rows=len(items), n_failures=failures.num_rows
        )

    def info(self) -> str:
        """A human-readable summary of this version."""
        e = self._extractor
        L, K, D = self.shape_per_item
        n_items = self.index_table().num_rows
        n_failures = self.failures_table().num_rows
        n_rows = self.array.shape[0]
        disk = _du(self._path)
        features_disk = _du(self._path / FEATURES_DIR)
        chunks = _chunk_sizes(self._path)
        raw = L * K * D * DTYPE.itemsize
        per_item = sum(chunks) / len(chunks) if chunks else 0.0
        current = read_current(self._path.parent)
        return "\n".join(
            [
                f"feature store {self._path}"
                + (" (CURRENT)" if current == self.fingerprint else ""),
                f"  fingerprint   {self.fingerprint}  (created {e.get('created_at')})",
                f"  model         {e.get('model')} @ {e.get('revision')}",
                f"  layers        {e.get('layers')}  (L={L})",
                f"  tokens        K={K}: {K - int(e['G'])} merged old ({e.get('merge')}) "
                f"+ G={e['G']} new",
                f"  frames        {e.get('frames')} at {e.get('resolution')}px",
                f"  hidden size   D={D}",
                f"  items         {n_items} committed, {n_failures} failed, "
                f"{n_rows} rows allocated",
                f"  on disk       {_human(disk)} ({_human(features_disk)} features)",
                f"  per item      {_human(raw)} raw (L*K*D*2), {_human(per_item)} per chunk file "
                f"({len(chunks)} chunk files)",
            ]
        )

    # -- internals -----------------------------------------------------------------------------

    def _refresh_index(self) -> None:
        key = _file_key(self._path / INDEX_FILE)
        if key == self._index_key:
            return
        table = _read_table(self._path / INDEX_FILE, INDEX_SCHEMA)
        self._index_table = table
        items, rows = table.column("item").to_pylist(), table.column("row").to_pylist()
        self._index = dict(zip(items, rows, strict=True))
        self._index_key = key

    def _check_matches(self, config: ExtractorConfig, hidden_size: int) -> None:
        e = self._extractor
        for key, value in config.fingerprint_fields().items():
            if e.get(key) != value:
                raise StoreError(
                    f"feature store {self._path}: extractor.json {key}={e.get(key)!r} "
                    f"does not match the config's {value!r}"
                )
        if int(e["hidden_size"]) != hidden_size:
            raise StoreError(
                f"feature store {self._path}: hidden_size {e['hidden_size']} in extractor.json, "
                f"but the model has {hidden_size}"
            )
        shape = (len(config.layers), config.k_tokens, hidden_size)
        array = self.array
        if tuple(array.shape[1:]) != shape or array.dtype != DTYPE:
            raise StoreError(
                f"feature store {self._path}: features array is {array.dtype}{array.shape}, "
                f"expected float16 (N, {shape[0]}, {shape[1]}, {shape[2]})"
            )


@dataclass
class VerifyReport:
    """What verify() found: index rows unique and in range, dtype/shape/chunks, no NaN/Inf in
    committed rows, a sha256 for every item, extractor.json matching the fingerprint, no item
    both committed and failed."""

    path: Path
    problems: list[str] = field(default_factory=list)
    n_rows: int = 0  # committed items
    n_failures: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = (
            f"{'OK' if self.ok else 'FAILED'}: feature store {self.path}: "
            f"{self.n_rows} committed rows, {self.n_failures} failures"
        )
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


# ---------------------------------------------------------------------------------------------
# Writing


class RowWriter:
    """Writes whole rows of one store version; picklable (workers, Ray actors). The rows must
    have been allocated by the StoreWriter; the array is opened on first use."""

    def __init__(self, path: Path | str, durable: bool = False) -> None:
        self.path = str(path)
        # fsync each chunk file and its new directories as it is written. Not needed where the
        # driver shares the workers' filesystem: StoreWriter.publish() flushes every committed
        # row's chunk first, in one syncfs, which keeps the rows-before-index order at a
        # fraction of the cost (one fsync per 3 MB row halves a disk's write rate).
        self.durable = durable
        self._array: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "durable": self.durable}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["durable"])  # type: ignore[misc]

    def write(self, row: int, features: np.ndarray) -> None:
        """Write one item's (L, K, D) float16 features to `row`. Raises StoreError (one line)
        for a wrong shape, an unallocated row or NaN/Inf (e.g. a float16 overflow)."""
        if self._array is None or row >= self._array.shape[0]:
            self._array = _open_array(Path(self.path), mode="r+").with_config(
                {"write_empty_chunks": True}
            )
        array = self._array
        features = np.asarray(features)
        if features.shape != tuple(array.shape[1:]):
            raise StoreError(
                f"feature store {self.path}: row {row} has shape {features.shape}, "
                f"expected {tuple(array.shape[1:])}"
            )
        if not 0 <= row < array.shape[0]:
            raise StoreError(
                f"feature store {self.path}: row {row} not allocated (rows: {array.shape[0]})"
            )
        with np.errstate(over="ignore"):
            features = features.astype(DTYPE, copy=False)
        if not np.isfinite(features).all():
            raise StoreError(
                f"feature store {self.path}: row {row} holds NaN/Inf (float16 overflow?)"
            )
        if _is_raw_little_endian(array):
            self._write_chunk_file(row, features)
        else:
            array[row] = features
        if self.durable:
            self._sync_chunk(row)

    def _write_chunk_file(self, row: int, features: np.ndarray) -> None:
        """The row's chunk file written directly. With the store's codec chain (bytes,
        little-endian, no compressor) a chunk file is exactly the row's raw bytes, so this is the
        file zarr itself would write, without its per-chunk event-loop round trip (which cost
        up to half of the write rate). Written to a temp name and renamed, like zarr's store."""
        key = self._array.metadata.encode_chunk_key((row,) + (0,) * (self._array.ndim - 1))
        chunk = Path(self.path) / FEATURES_DIR / ARRAY_NAME / key
        chunk.parent.mkdir(parents=True, exist_ok=True)
        tmp = chunk.with_name(f".{chunk.name}.{os.getpid()}.partial")
        with open(tmp, "wb") as f:
            f.write(np.ascontiguousarray(features, dtype="<f2").tobytes())
        os.replace(tmp, chunk)

    def _sync_chunk(self, row: int) -> None:
        key = self._array.metadata.encode_chunk_key((row,) + (0,) * (self._array.ndim - 1))
        array_dir = Path(self.path) / FEATURES_DIR / ARRAY_NAME
        chunk = array_dir / key
        _fsync_path(chunk)
        for parent in chunk.relative_to(array_dir).parents:
            _fsync_path(array_dir / parent, directory=True)


class StoreWriter:
    """The driver's side of one writing session; get it from ``FeatureStore.writer()``.

    allocate rows -> hand ``row_writer()`` to workers -> ``commit`` / ``fail`` each item ->
    ``publish`` (periodically; always on exit)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self._path = store.path
        index = _read_table(self._path / INDEX_FILE, INDEX_SCHEMA)
        failures = _read_table(self._path / FAILURES_FILE, FAILURES_SCHEMA)
        self._index: dict[str, dict[str, Any]] = {r["item"]: r for r in index.to_pylist()}
        self._failures: dict[str, dict[str, Any]] = {r["item"]: r for r in failures.to_pylist()}
        rows = [r["row"] for r in self._index.values()]
        self._next_row = max(rows) + 1 if rows else 0
        self._allocated: set[int] = set()
        self._row_items: dict[int, str] = {}  # rows committed in this session -> item
        self._unsynced_rows: list[int] = []  # committed since the last publish
        self._dirty = False
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"feature store {self._path}: the writer is closed (lock released)")

    def allocate(self, n: int) -> list[int]:
        """n fresh rows, after every committed row (overwriting rows no index names); grows
        the array when needed. Rows never return to a pool: unused ones are garbage."""
        if n < 0:
            raise ValueError(f"allocate: n must be >= 0, got {n}")
        self._check_open()
        rows = list(range(self._next_row, self._next_row + n))
        self._next_row += n
        if n:
            array = _open_array(self._path, mode="r+")
            if array.shape[0] < self._next_row:
                array.resize((self._next_row, *array.shape[1:]))
        self._allocated.update(rows)
        return rows

    def row_writer(self, durable: bool = False) -> RowWriter:
        return RowWriter(self._path, durable=durable)

    def commit(self, item: str, row: int, source_sha256: str, n_old: int, n_new: int) -> None:
        """Record that `row` (allocated in this session, fully written) holds `item`. Visible to
        readers after the next publish(). Clears the item's failure row."""
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
        self._index[item] = {
            "item": item,
            "row": int(row),
            "source_sha256": source_sha256,
            "n_old": int(n_old),
            "n_new": int(n_new),
            "extracted_at": _now(),
        }
        self._row_items[int(row)] = item
        self._unsynced_rows.append(int(row))
        self._failures.pop(item, None)
        self._dirty = True

    def fail(self, item: str, stage: str, error: str) -> None:
        """Record that `item` failed at `stage` (decode|extract|write); replaces an earlier
        failure and drops a stale committed row of the item (see the module docstring)."""
        if stage not in STAGES:
            raise ValueError(f"fail: stage must be one of {STAGES}, got {stage!r}")
        self._check_open()
        self._failures[item] = {
            "item": item,
            "stage": stage,
            "error": " ".join(str(error).split())[:2000],
            "at": _now(),
        }
        self._index.pop(item, None)
        self._dirty = True

    def publish(self) -> None:
        """Flush the rows committed since the last publish to disk, then atomically publish
        failures.parquet and index.parquet (the commit point)."""
        if not self._dirty:
            return
        if self._unsynced_rows:
            _sync_rows(self._path, self._unsynced_rows)
            self._unsynced_rows = []
        failures = pa.Table.from_pylist(list(self._failures.values()), schema=FAILURES_SCHEMA)
        index = pa.Table.from_pylist(
            sorted(self._index.values(), key=lambda r: r["row"]), schema=INDEX_SCHEMA
        )
        _publish_table(failures, self._path / FAILURES_FILE)
        _publish_table(index, self._path / INDEX_FILE)
        self._dirty = False


# ---------------------------------------------------------------------------------------------
# Versions and CURRENT


def set_current(root: Path, fingerprint: str) -> None:
    """Point root/CURRENT at `fingerprint` (atomically)."""
    root = Path(root)
    if not (root / fingerprint / EXTRACTOR_FILE).is_file():
        raise StoreError(f"feature store {root / fingerprint} not found; cannot make it CURRENT")
    _atomic_write_bytes(root / CURRENT_FILE, (fingerprint + "\n").encode())


def read_current(root: Path) -> str | None:
    path = Path(root) / CURRENT_FILE
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def list_versions(root: Path) -> list[str]:
    """Fingerprints of the versions under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.name.startswith(".") or not (path / EXTRACTOR_FILE).is_file():
            continue
        try:
            created = str(json.loads((path / EXTRACTOR_FILE).read_text()).get("created_at", ""))
        except (OSError, ValueError):
            created = ""
        found.append((created, path.name))
    return [name for _, name in sorted(found)]


def write_throughput_probe(
    root: Path, n_items: int = 16, shape: tuple[int, int, int] = (6, 64, 4096)
) -> float:
    """Bytes per second of RowWriter.write into a fresh store under `root` (a scratch dir)."""
    L, K, D = shape
    config = ExtractorConfig(model="throughput-probe", layers=tuple(range(L)), k_tokens=K)
    store = FeatureStore.create_or_open(Path(root), config, hidden_size=D)
    row = np.random.default_rng(0).standard_normal(shape).astype(DTYPE)
    with store.writer() as w:
        rows = w.allocate(n_items)
        writer = w.row_writer()
        start = time.perf_counter()
        for r in rows:
            writer.write(r, row)
        elapsed = time.perf_counter() - start
    return n_items * row.nbytes / elapsed


# ---------------------------------------------------------------------------------------------
# Helpers


def _create_version(root: Path, config: ExtractorConfig, hidden_size: int) -> None:
    """Build the version in a hidden temp dir, then rename it into place: a version directory
    is complete or absent, and concurrent creators agree (the loser opens the winner's)."""
    fingerprint = config.fingerprint()
    L, K, G = len(config.layers), config.k_tokens, config.new_tokens
    fields = config.fingerprint_fields()
    extractor = {
        "fingerprint": fingerprint,
        **fields,
        "fingerprinted": sorted(fields),
        "hidden_size": int(hidden_size),
        "L": L,
        "K": K,
        "G": G,
        "token_split": {"old": [0, K - G], "new": [K - G, K]},  # half-open row ranges within K
        "dtype": "float16",
        "created_at": _now().isoformat(),
    }
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{fingerprint}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        group = zarr.open_group(str(tmp / FEATURES_DIR), mode="w", zarr_format=3)
        group.create_array(
            ARRAY_NAME,
            shape=(0, L, K, hidden_size),
            chunks=(1, L, K, hidden_size),
            dtype=DTYPE,
            compressors=None,  # DESIGN §9: zstd is ~10x slower and fp16 barely compresses
            fill_value=float("nan"),
            dimension_names=["item", "layer", "token", "hidden"],
        )
        _atomic_write_bytes(tmp / EXTRACTOR_FILE, (json.dumps(extractor, indent=2) + "\n").encode())
        try:
            os.rename(tmp, root / fingerprint)
        except OSError:
            if not (root / fingerprint / EXTRACTOR_FILE).is_file():
                raise StoreError(
                    f"feature store {root / fingerprint} exists but is not a store version "
                    f"(no {EXTRACTOR_FILE}); move it away"
                ) from None
        else:
            _fsync_path(root, directory=True)
    finally:
        if tmp.exists():
            _rmtree(tmp)


def _read_extractor(path: Path) -> dict[str, Any]:
    file = path / EXTRACTOR_FILE
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise StoreError(f"feature store {path} not found (no {EXTRACTOR_FILE})") from None
    except ValueError as exc:
        raise StoreError(
            f"feature store {path}: {EXTRACTOR_FILE} is not valid JSON ({exc})"
        ) from None


def _is_raw_little_endian(array: Any) -> bool:
    """Whether a chunk is stored as its raw little-endian bytes (one `bytes` codec, no
    compressor or filter), so a writer may produce the chunk file itself."""
    codecs = getattr(array.metadata, "codecs", ())
    if len(codecs) != 1 or type(codecs[0]).__name__ != "BytesCodec":
        return False
    return str(getattr(codecs[0], "endian", "little")).endswith("little")


def _open_array(path: Path, mode: str) -> Any:
    try:
        return zarr.open_array(str(path / FEATURES_DIR), path=ARRAY_NAME, mode=mode)
    except FileNotFoundError:
        raise StoreError(f"feature store {path}: no array {FEATURES_DIR}/{ARRAY_NAME}") from None


def _hash_fields(fields: dict[str, Any]) -> str:
    """Must match ExtractorConfig.fingerprint()."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def _read_table(path: Path, schema: pa.Schema) -> pa.Table:
    if not path.is_file():
        return pa.Table.from_pylist([], schema=schema)
    try:
        return pq.read_table(path, schema=schema)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"feature store file {path} is unreadable: {exc}") from None


def _publish_table(table: pa.Table, path: Path) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    _atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_path(path.parent, directory=True)


def _sync_rows(path: Path, rows: list[int]) -> None:
    """Make the chunk files of `rows` durable. On Linux one syncfs(2) flushes the whole
    filesystem the store lives on (also the pages other processes, the actors, wrote); elsewhere
    each chunk file and its directory is fsynced."""
    if _syncfs(path):
        return
    array = _open_array(path, mode="r")
    array_dir = path / FEATURES_DIR / ARRAY_NAME
    for row in rows:
        chunk = array_dir / array.metadata.encode_chunk_key((row,) + (0,) * (array.ndim - 1))
        if chunk.exists():
            _fsync_path(chunk)
            _fsync_path(chunk.parent, directory=True)


def _syncfs(path: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            return libc.syncfs(fd) == 0
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return False


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _chunk_sizes(path: Path) -> list[int]:
    """Sizes of the written chunk files (one per written row), without zarr's metadata."""
    chunk_dir = path / FEATURES_DIR / ARRAY_NAME / "c"
    return [f.stat().st_size for f in chunk_dir.rglob("*") if f.is_file()]


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def _now() -> datetime:
    return datetime.now(timezone.utc)
