"""Writing a store version: RowWriter (the workers' side: whole rows into their own chunk
files) and StoreWriter (the driver's side: allocation, commits, failures, publishing the
index). The protocol they follow is in featurizer.store's docstring."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from featurizer.errors import StoreError
from featurizer.store.io import fsync_path, now, publish_table, sync_rows
from featurizer.store.layout import (
    ARRAY_NAME,
    FAILURES_FILE,
    FAILURES_SCHEMA,
    FEATURES_DIR,
    INDEX_FILE,
    INDEX_SCHEMA,
    INT8,
    SCALES_NAME,
    STAGES,
    chunk_path,
    is_raw_little_endian,
    open_array,
    read_index,
    read_table,
)
from featurizer.store.rows import all_finite, int8_row_checksum, quantize_int8, row_checksum

if TYPE_CHECKING:
    from featurizer.store.reading import FeatureStore


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
        self._scales: Any = None  # an int8 version's scales array

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "durable": self.durable}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["durable"])  # type: ignore[misc]

    def write(self, row: int, features: np.ndarray) -> int:
        """Write one item's (L, K, D) float16 features to `row`; returns the row's checksum,
        taken from the bytes written, for StoreWriter.commit. Raises StoreError (one line) for a
        wrong shape, an unallocated row or NaN/Inf (e.g. a float16 overflow)."""
        if self._array is None or row >= self._array.shape[0]:
            self._array = open_array(Path(self.path), mode="r+").with_config(
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
        if array.dtype == INT8:
            return self._write_int8(row, data)
        checksum = row_checksum(data)
        if is_raw_little_endian(array):
            self._write_chunk_file(row, data)
        else:
            array[row] = data
        if self.durable:
            self._sync_chunk(row)
        return checksum

    def _write_int8(self, row: int, data: np.ndarray) -> int:
        """An int8 version's row: int8 values and their per-token scales, two chunk files (the
        values last, so a row whose values exist has its scales)."""
        if not is_raw_little_endian(self._array):
            raise StoreError(f"feature store {self.path}: int8 rows need the raw chunk layout")
        if self._scales is None or row >= self._scales.shape[0]:
            self._scales = open_array(Path(self.path), mode="r+", name=SCALES_NAME)
        values, scales = quantize_int8(data)
        self._write_chunk_file(row, scales, self._scales, SCALES_NAME)
        self._write_chunk_file(row, values)
        if self.durable:
            self._sync_chunk(row, self._scales, SCALES_NAME)
            self._sync_chunk(row)
        return int8_row_checksum(values, scales)

    def _write_chunk_file(
        self, row: int, data: np.ndarray, array: Any = None, name: str = ARRAY_NAME
    ) -> None:
        """The row's chunk file (of array `name`, by default the features) written directly.
        With the store's codec chain (bytes, little-endian, no compressor) a chunk file is
        exactly the row's raw bytes, so this is the file zarr itself would write, without its
        per-chunk event-loop round trip (which cost up to half of the write rate). Written to a
        temp name and renamed, like zarr's store."""
        array = self._array if array is None else array
        chunk = chunk_path(Path(self.path) / FEATURES_DIR / name, array, row)
        chunk.parent.mkdir(parents=True, exist_ok=True)
        tmp = chunk.with_name(f".{chunk.name}.{os.getpid()}.partial")
        with open(tmp, "wb") as f:
            f.write(memoryview(data).cast("B"))
        os.replace(tmp, chunk)

    def _sync_chunk(self, row: int, array: Any = None, name: str = ARRAY_NAME) -> None:
        array_dir = Path(self.path) / FEATURES_DIR / name
        chunk = chunk_path(array_dir, self._array if array is None else array, row)
        fsync_path(chunk)
        for parent in chunk.relative_to(array_dir).parents:
            fsync_path(array_dir / parent, directory=True)


class StoreWriter:
    """The driver's side of one writing session; get it from ``FeatureStore.writer()``.

    allocate rows -> hand ``row_writer()`` to workers -> ``commit`` / ``fail`` each item ->
    ``publish`` (periodically; always on exit)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self._path = store.path
        index = read_index(self._path)  # a lost index stops the writer: see the module doc
        failures = read_table(self._path / FAILURES_FILE, FAILURES_SCHEMA)
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
            names = [ARRAY_NAME, SCALES_NAME] if self.store.int8 else [ARRAY_NAME]
            for name in names:
                array = open_array(self._path, mode="r+", name=name)
                if array.shape[0] < self._next_row:
                    array.resize((self._next_row, *array.shape[1:]))
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
            "extracted_at": now(),
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
            "at": now(),
        }
        self._index.pop(item, None)
        self._dirty = True

    def publish(self) -> None:
        """Flush the rows committed since the last publish to disk, then atomically publish
        failures.parquet and index.parquet (the commit point)."""
        if not self._dirty:
            return
        if self._unsynced_rows:
            sync_rows(self._path, self._unsynced_rows)
            self._unsynced_rows = []
        failures = pa.Table.from_pylist(list(self._failures.values()), schema=FAILURES_SCHEMA)
        index = pa.Table.from_pylist(
            sorted(self._index.values(), key=lambda r: r["row"]), schema=INDEX_SCHEMA
        )
        publish_table(failures, self._path / FAILURES_FILE)
        publish_table(index, self._path / INDEX_FILE)
        self._dirty = False

    def _checksum_of_written(self, item: str, row: int) -> int:
        """The checksum of what `row` holds on disk, for a commit whose writer did not pass it;
        refuses a row never written or holding NaN/Inf (the checksum would certify it)."""
        if self.store.int8:
            raise StoreError(
                f"feature store {self._path}: item {item}: an int8 row is committed with the "
                "checksum RowWriter.write returned; not committed"
            )
        features = self.store.read_rows([row], check=False)[0]
        if not all_finite(features):
            raise StoreError(
                f"feature store {self._path}: item {item}: row {row} holds NaN/Inf or was "
                "never written; not committed"
            )
        return row_checksum(features)
