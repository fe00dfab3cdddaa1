"""The feature store: one version directory per extractor fingerprint, rows of (L, K, D) float16.

Layout (a contract: training, the CLI and the Dagster checks read it)::

    STORE/
      <fingerprint>/
        features.zarr      zarr v3 group; array "features": (N, L, K, D) float16,
                           chunks (1, L, K, D), no compressor, fill value NaN
        index.parquet      item, row, source_sha256, n_old, n_new, extracted_at,
                           prompt_sha256, checksum
        failures.parquet   item, stage (decode|extract|write), error, at
        extractor.json     the fingerprinted settings (config.fingerprint_fields()), plus
                           hidden_size, L, K, G, the old/new token split, created_at
        .lock              held by the one writer of this version
      CURRENT              the fingerprint training reads by default: the name of a version
                           directly under STORE, nothing else

Commit protocol. Workers write whole rows (one chunk each, so writers never share a chunk);
the single writer process (the driver) then records them, flushes their chunks to disk (one
syncfs on Linux) and publishes index.parquet by write-temp, fsync, rename, fsync-dir. The index rename is the commit: readers trust only rows
named in the published index and never take the lock. A crash leaves at most rows that no
index names; the next writer allocates from max(committed row) + 1, so it overwrites them.

Identity and integrity. An index row names the item's source identity: `source_sha256` (the
video file's bytes) and `prompt_sha256` (the item's prompt text, title filled in; see
ExtractorConfig.item_prompt), so a changed video or title makes the item pending again; and the
`checksum` of the row's bytes (featurizer.store_rows), taken by the worker from the array it
wrote. Reads check it (read_rows), verify() checks it for every row and names each bad item and
its chunk file. A version is created with an empty index.parquet, so an index that is missing
while chunk files exist has been lost: the version is a failed store (every read raises
StoreError), never an empty one. Rows written before checksums existed (no `checksum` value)
stay readable; verify() checks them for NaN/Inf only.

Rows are never overwritten while an index names them: a changed video (new source_sha256) gets
a new row and its old row becomes garbage, unreferenced and never read (no compaction yet;
garbage is bounded by the re-extracted and crashed items). The fill value is NaN, so a
committed row whose chunk is missing reads as NaN and verify() flags it.

Failures. failures.parquet holds one row per item (the latest failure). A failure never blocks a
retry: pending() lists every item not committed with its current identity, failed or not, and an
item's failure row is removed when it succeeds. An item that fails after its video changed is
dropped from the index (its stale features describe a video that no longer exists), so no item
is ever both in the index and in the failures. failures.parquet is published just before the
index; a crash between the two renames can leave one item in both, which verify() reports and
the next run repairs.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from featurizer.config import ExtractorConfig
from featurizer.errors import MissingItemsError, StoreBusyError, StoreError
from featurizer.store_rows import (
    CHECKSUM,
    DTYPE,
    all_finite,
    chunk_path,
    direct_io,
    is_raw_little_endian,
    read_chunk,
    row_checksum,
)
from featurizer.store_verify import VerifyReport, verify_version

__all__ = [
    "FeatureStore",
    "MissingItemsError",
    "RowWriter",
    "StoreBusyError",
    "StoreError",
    "StoreWriter",
    "VerifyReport",
    "list_versions",
    "read_current",
    "set_current",
]

FEATURES_DIR = "features.zarr"
ARRAY_NAME = "features"
INDEX_FILE = "index.parquet"
FAILURES_FILE = "failures.parquet"
EXTRACTOR_FILE = "extractor.json"
LOCK_FILE = ".lock"
CURRENT_FILE = "CURRENT"
STAGES = ("decode", "extract", "write")

INDEX_SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("row", pa.int64()),
        ("source_sha256", pa.string()),
        ("n_old", pa.int32()),
        ("n_new", pa.int32()),
        ("extracted_at", pa.timestamp("us", tz="UTC")),
        # Added later: null in rows written before them (read as "unknown").
        ("prompt_sha256", pa.string()),
        ("checksum", pa.uint64()),  # CHECKSUM of the row's bytes
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
_EXTRACTOR_KEYS = ("fingerprint", "hidden_size", "L", "K", "G")


# ---------------------------------------------------------------------------------------------
# Reading


class FeatureStore:
    """One store version: ``root / fingerprint``. Reading never takes the lock."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._extractor = _read_extractor(self._path)
        self._array: Any = None
        self._array_key: tuple[int, int, int] | None = None
        self._index_loaded = False
        self._index_key: tuple[int, int, int] | None = None
        self._index_table = pa.Table.from_pylist([], schema=INDEX_SCHEMA)
        self._index: dict[str, int] = {}
        self._row_items: dict[int, str] = {}
        self._row_checksums: dict[int, int] = {}

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
        _check_version_name(root, fingerprint, "a fingerprint")
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

    def chunk_path(self, row: int) -> Path:
        """The chunk file that holds `row` (whether or not it exists)."""
        return chunk_path(self._path / FEATURES_DIR / ARRAY_NAME, self.array, row)

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

    def pending(
        self, sources: Mapping[str, str], prompts: Mapping[str, str] | None = None
    ) -> list[str]:
        """Items of `sources` (item -> sha256 of the video) not committed with that identity, in
        the order given; see pending_reasons(). Recorded failures are retried (see the module
        docstring)."""
        return list(self.pending_reasons(sources, prompts))

    def pending_reasons(
        self, sources: Mapping[str, str], prompts: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """item -> why it needs extracting, in the order of `sources` (item -> sha256 of the
        video): "new" (not committed), "video changed", or, where `prompts` (item -> sha256 of
        its prompt text) is given, "prompt changed" or "prompt unknown" (a row committed before
        prompt identities were recorded: nothing shows it was extracted from this prompt)."""
        table = self.index_table()
        committed = dict(
            zip(
                table.column("item").to_pylist(),
                zip(
                    table.column("source_sha256").to_pylist(),
                    table.column("prompt_sha256").to_pylist(),
                    strict=True,
                ),
                strict=True,
            )
        )
        reasons: dict[str, str] = {}
        for item, sha in sources.items():
            stored = committed.get(item)
            if stored is None:
                reasons[item] = "new"
            elif stored[0] != sha:
                reasons[item] = "video changed"
            elif prompts is not None and stored[1] is None:
                reasons[item] = "prompt unknown"
            elif prompts is not None and stored[1] != prompts.get(item):
                reasons[item] = "prompt changed"
        return reasons

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

    def read_rows(self, rows: np.ndarray | Sequence[int], *, check: bool = True) -> np.ndarray:
        """(n, L, K, D) float16 features of array rows, in the order given (no index check).

        A row the committed index names is checked against its checksum unless `check` is
        False; a mismatch, or a chunk file that is missing or of the wrong size, raises
        StoreError naming the item and the file. Rows no index names (garbage) are read
        unchecked; a never-written one reads as NaN."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0:
            return np.empty((0, *self.shape_per_item), dtype=DTYPE)
        array = self.array
        if rows.min() < 0 or rows.max() >= array.shape[0]:
            raise StoreError(
                f"feature store {self._path}: rows out of range [0, {array.shape[0]}): "
                f"{rows[(rows < 0) | (rows >= array.shape[0])][:5].tolist()}"
            )
        self._refresh_index()
        if not direct_io(array):
            return self._read_rows_zarr(rows, check)
        out = np.empty((rows.size, *array.shape[1:]), dtype=DTYPE)
        for i, row in enumerate(rows.tolist()):
            buffer = memoryview(out[i]).cast("B")
            path = self.chunk_path(row)
            problem = read_chunk(path, buffer)
            expected = self._row_checksums.get(row) if check else None
            if problem == "is missing" and expected is None:
                out[i] = np.nan  # the fill value: a row never written
            elif problem:
                raise StoreError(self._bad_row_message(row, f"chunk file {path} {problem}"))
            elif expected is not None and row_checksum(buffer) != expected:
                raise StoreError(
                    self._bad_row_message(
                        row, f"chunk file {path} does not match the checksum recorded at commit"
                    )
                )
        return out

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

    def verify(self, check_values: bool = True, items: Sequence[str] | None = None) -> VerifyReport:
        """Integrity checks; see VerifyReport. With `check_values`, reads every committed row
        (or only those of `items`) and checks its checksum (NaN/Inf for rows without one)."""
        return verify_version(self, check_values=check_values, items=items)

    def info(self) -> str:
        """A human-readable summary of this version."""
        e = self._extractor
        L, K, D = self.shape_per_item
        index = self.index_table()
        n_items = index.num_rows
        n_checksums = n_items - index.column("checksum").null_count
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
                f"  checksums     {n_checksums} of {n_items} committed rows ({CHECKSUM})",
                f"  on disk       {_human(disk)} ({_human(features_disk)} features)",
                f"  per item      {_human(raw)} raw (L*K*D*2), {_human(per_item)} per chunk file "
                f"({len(chunks)} chunk files)",
            ]
        )

    # -- internals -----------------------------------------------------------------------------

    def _refresh_index(self) -> None:
        key = _file_key(self._path / INDEX_FILE)
        if self._index_loaded and key == self._index_key:
            return
        table = _read_index(self._path)
        items, rows = table.column("item").to_pylist(), table.column("row").to_pylist()
        checksums = table.column("checksum").to_pylist()
        self._index_table = table
        self._index = dict(zip(items, rows, strict=True))
        self._row_items = dict(zip(rows, items, strict=True))
        self._row_checksums = {
            row: checksum
            for row, checksum in zip(rows, checksums, strict=True)
            if checksum is not None
        }
        self._index_key = key
        self._index_loaded = True

    def _bad_row_message(self, row: int, problem: str) -> str:
        item = self._row_items.get(row)
        who = f"item {item} (row {row})" if item is not None else f"row {row} (no committed item)"
        return (
            f"feature store {self._path}: {who}: {problem}; `linkedout extract` extracts it "
            "again (`linkedout store verify` lists every bad row)"
        )

    def _read_rows_zarr(self, rows: np.ndarray, check: bool) -> np.ndarray:
        """read_rows for arrays whose chunks are not raw rows (another codec chain)."""
        array = self.array
        unique, inverse = np.unique(rows, return_inverse=True)
        try:
            if unique[-1] - unique[0] + 1 == unique.size:  # contiguous: one slice
                block = array[int(unique[0]) : int(unique[-1]) + 1]
            else:
                block = array.oindex[unique]
        except (ValueError, OSError) as exc:  # e.g. a chunk that does not decode to its shape
            raise StoreError(
                f"feature store {self._path}: rows {unique[:5].tolist()} of "
                f"{self._path / FEATURES_DIR / ARRAY_NAME}: {' '.join(str(exc).split())[:300]}"
            ) from None
        if check:
            for row, features in zip(unique.tolist(), block, strict=True):
                expected = self._row_checksums.get(row)
                if expected is not None and row_checksum(features) != expected:
                    raise StoreError(
                        self._bad_row_message(
                            row, f"chunk {self.chunk_path(row)} does not match its checksum"
                        )
                    )
        return np.ascontiguousarray(block[inverse])

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

    def write(self, row: int, features: np.ndarray) -> int:
        """Write one item's (L, K, D) float16 features to `row`; returns the row's checksum,
        taken from the bytes written, for StoreWriter.commit. Raises StoreError (one line) for a
        wrong shape, an unallocated row or NaN/Inf (e.g. a float16 overflow)."""
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
            data = np.ascontiguousarray(features, dtype="<f2")
        if not all_finite(data):
            raise StoreError(
                f"feature store {self.path}: row {row} holds NaN/Inf (float16 overflow?)"
            )
        checksum = row_checksum(data)
        if is_raw_little_endian(array):
            self._write_chunk_file(row, data)
        else:
            array[row] = data
        if self.durable:
            self._sync_chunk(row)
        return checksum

    def _write_chunk_file(self, row: int, data: np.ndarray) -> None:
        """The row's chunk file written directly. With the store's codec chain (bytes,
        little-endian, no compressor) a chunk file is exactly the row's raw bytes, so this is the
        file zarr itself would write, without its per-chunk event-loop round trip (which cost
        up to half of the write rate). Written to a temp name and renamed, like zarr's store."""
        chunk = chunk_path(Path(self.path) / FEATURES_DIR / ARRAY_NAME, self._array, row)
        chunk.parent.mkdir(parents=True, exist_ok=True)
        tmp = chunk.with_name(f".{chunk.name}.{os.getpid()}.partial")
        with open(tmp, "wb") as f:
            f.write(memoryview(data).cast("B"))
        os.replace(tmp, chunk)

    def _sync_chunk(self, row: int) -> None:
        array_dir = Path(self.path) / FEATURES_DIR / ARRAY_NAME
        chunk = chunk_path(array_dir, self._array, row)
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
        index = _read_index(self._path)  # a lost index stops the writer: see the module doc
        failures = _read_table(self._path / FAILURES_FILE, FAILURES_SCHEMA)
        self._index: dict[str, dict[str, Any]] = {r["item"]: r for r in index.to_pylist()}
        self._failures: dict[str, dict[str, Any]] = {r["item"]: r for r in failures.to_pylist()}
        # Rows past the array's end were never allocated (an index edited or gone wrong):
        # they do not push new rows out.
        n_rows = store.array.shape[0]
        rows = [r["row"] for r in self._index.values() if 0 <= r["row"] < n_rows]
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
    ) -> None:
        """Record that `row` (allocated in this session, fully written) holds `item`, extracted
        from the video with `source_sha256` and the prompt text with `prompt_sha256`; `checksum`
        is what RowWriter.write returned (without it the row is read back here to take it).
        Visible to readers after the next publish(). Clears the item's failure row."""
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
            checksum = self._checksum_of_written(item, row)
        self._index[item] = {
            "item": item,
            "row": int(row),
            "source_sha256": source_sha256,
            "n_old": int(n_old),
            "n_new": int(n_new),
            "extracted_at": _now(),
            "prompt_sha256": prompt_sha256,
            "checksum": int(checksum),
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

    def _checksum_of_written(self, item: str, row: int) -> int:
        """The checksum of what `row` holds on disk, for a commit whose writer did not pass it;
        refuses a row never written or holding NaN/Inf (the checksum would certify it)."""
        features = self.store.read_rows([row], check=False)[0]
        if not all_finite(features):
            raise StoreError(
                f"feature store {self._path}: item {item}: row {row} holds NaN/Inf or was "
                "never written; not committed"
            )
        return row_checksum(features)


# ---------------------------------------------------------------------------------------------
# Versions and CURRENT


def set_current(root: Path, fingerprint: str) -> None:
    """Point root/CURRENT at `fingerprint` (atomically)."""
    root = Path(root)
    _check_version_name(root, fingerprint, "CURRENT")
    if not (root / fingerprint / EXTRACTOR_FILE).is_file():
        raise StoreError(f"feature store {root / fingerprint} not found; cannot make it CURRENT")
    _atomic_write_bytes(root / CURRENT_FILE, (fingerprint + "\n").encode())


def read_current(root: Path) -> str | None:
    """The fingerprint root/CURRENT names, or None without one. Raises StoreError when it names
    anything but a directory name (a path, "..", a hidden name): CURRENT never leads a reader
    outside the store root."""
    path = Path(root) / CURRENT_FILE
    if not path.is_file():
        return None
    try:
        name = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"feature store file {path} is unreadable: {exc}") from None
    if not name:
        return None
    _check_version_name(Path(root), name, CURRENT_FILE)
    return name


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
        except (OSError, ValueError, AttributeError):
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


def _check_version_name(root: Path, name: str, what: str) -> None:
    """A version is a directory directly under the store root: `name` must be one plain path
    component (no separator, not "." or "..", not hidden)."""
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise StoreError(
            f"feature store {root}: {what} names {name!r}, which is not a version directory "
            "directly under the store root"
        )


def _create_version(root: Path, config: ExtractorConfig, hidden_size: int) -> None:
    """Build the version in a hidden temp dir, then rename it into place: a version directory
    is complete or absent, and concurrent creators agree (the loser opens the winner's). It is
    born with an empty index, so a missing index later means a lost one."""
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
        "checksum": CHECKSUM,
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
        _publish_table(pa.Table.from_pylist([], schema=INDEX_SCHEMA), tmp / INDEX_FILE)
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
        extractor = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"feature store {path} not found (no {EXTRACTOR_FILE})") from None
    except (ValueError, OSError) as exc:
        raise StoreError(f"feature store file {file} is not valid JSON: {exc}") from None
    missing = [k for k in _EXTRACTOR_KEYS if not isinstance(extractor, dict) or k not in extractor]
    if missing:
        raise StoreError(f"feature store file {file} lacks {', '.join(missing)}")
    return extractor


def _open_array(path: Path, mode: str) -> Any:
    meta = path / FEATURES_DIR / ARRAY_NAME / "zarr.json"
    try:
        return zarr.open_array(str(path / FEATURES_DIR), path=ARRAY_NAME, mode=mode)
    except FileNotFoundError:
        raise StoreError(f"feature store {path}: no array {FEATURES_DIR}/{ARRAY_NAME}") from None
    except (ValueError, TypeError, KeyError, AttributeError, zarr.errors.BaseZarrError) as exc:
        # a zarr.json that is not JSON, or JSON that is not array metadata
        raise StoreError(
            f"feature store file {meta} is unreadable: {' '.join(str(exc).split())[:200]}"
        ) from None


def _read_index(path: Path) -> pa.Table:
    """The committed index of the version at `path`. A missing index.parquet is an empty
    index only while no chunk file exists; beside chunk files it was lost (StoreError)."""
    file = path / INDEX_FILE
    if not file.is_file():
        if _has_chunk_files(path):
            raise StoreError(
                f"feature store {path}: {INDEX_FILE} is missing but {FEATURES_DIR} holds feature "
                "rows, so nothing says which item a row belongs to: the store is FAILED, not "
                f"empty; restore {INDEX_FILE}, or move {path} away and extract again"
            )
        return pa.Table.from_pylist([], schema=INDEX_SCHEMA)
    table = _read_table(file, INDEX_SCHEMA)
    for column in ("item", "row"):
        if table.column(column).null_count:
            raise StoreError(
                f"feature store file {file} is unreadable: column {column!r} is missing or empty"
            )
    return table


def _has_chunk_files(path: Path) -> bool:
    chunks = path / FEATURES_DIR / ARRAY_NAME / "c"
    try:
        with os.scandir(chunks) as entries:
            return next(entries, None) is not None
    except (FileNotFoundError, NotADirectoryError):
        return False


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
        chunk = chunk_path(array_dir, array, row)
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
