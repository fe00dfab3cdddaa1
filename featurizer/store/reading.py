"""Reading one store version: FeatureStore (its extractor, index, failures and rows; its
writer and its verification are featurizer.store.writing and .verification)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import pyarrow as pa

from featurizer.config import ExtractorConfig
from featurizer.errors import MissingItemsError, StoreBusyError, StoreError
from featurizer.store.io import file_key, read_chunk
from featurizer.store.layout import (
    ARRAY_NAME,
    CHECKSUM,
    DTYPE,
    EXTRACTOR_FILE,
    FAILURES_FILE,
    FAILURES_SCHEMA,
    FEATURES_DIR,
    INDEX_FILE,
    INDEX_SCHEMA,
    INT8,
    LOCK_FILE,
    SCALES_NAME,
    chunk_path,
    direct_io,
    open_array,
    read_index,
    read_table,
)
from featurizer.store.rows import dequantize_int8, int8_row_checksum, row_checksum
from featurizer.store.verification import VerifyReport, verify_version
from featurizer.store.versions import (
    _bank_primary,
    _create_version,
    _read_extractor,
    read_current,
    version_path,
)
from featurizer.store.writing import StoreWriter


class FeatureStore:
    """One store version: ``root / fingerprint``. Reading never takes the lock."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._extractor = _read_extractor(self._path)
        self._array: Any = None
        self._array_key: tuple[int, int, int] | None = None
        self._scales: Any = None
        self._scales_key: tuple[int, int, int] | None = None
        self._index_loaded = False
        self._index_key: tuple[int, int, int] | None = None
        self._index_table = pa.Table.from_pylist([], schema=INDEX_SCHEMA)
        self._index: dict[str, int] = {}
        self._row_items: dict[int, str] = {}
        self._row_checksums: dict[int, int] = {}

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def create_or_open(cls, root: Path, config: ExtractorConfig, hidden_size: int) -> FeatureStore:
        """The version of `config` under `root`, created (empty) if missing, validated if not.
        A prompt bank's config has a version per prompt: create each of its members()."""
        if config.is_bank:
            raise ValueError(
                "a prompt bank is one store version per prompt: create_or_open each of "
                "config.members() (featurizer.store.bank.create_bank names them)"
            )
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
        be a version directory itself (then `fingerprint` must be None or its name). A prompt
        bank (featurizer.store.bank) opens as its first prompt's version."""
        path = version_path(root, fingerprint)
        primary = _bank_primary(path)
        return cls(path.parent / primary if primary else path)

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
        key = file_key(self._path / FEATURES_DIR / ARRAY_NAME / "zarr.json")
        if self._array is None or key != self._array_key:
            self._array = open_array(self._path, mode="r")
            self._array_key = key
        return self._array

    def chunk_path(self, row: int) -> Path:
        """The chunk file that holds `row` (whether or not it exists)."""
        return chunk_path(self._path / FEATURES_DIR / ARRAY_NAME, self.array, row)

    @property
    def row_bytes(self) -> int:
        """Bytes one item's row takes as stored: L*K*D*2, or L*K*D int8 + L*K*2 of scales."""
        L, K, D = self.shape_per_item
        if self.int8:
            return L * K * D * INT8.itemsize + L * K * DTYPE.itemsize
        return L * K * D * DTYPE.itemsize

    @property
    def int8(self) -> bool:
        """Rows stored as int8 values with per-token scales (a compact view), read as float16."""
        return self._extractor.get("dtype") == "int8"

    @property
    def scales(self) -> Any:
        """An int8 version's zarr array "scales" (N, L, K) float16, opened read-only."""
        key = file_key(self._path / FEATURES_DIR / SCALES_NAME / "zarr.json")
        if self._scales is None or key != self._scales_key:
            self._scales = open_array(self._path, mode="r", name=SCALES_NAME)
            self._scales_key = key
        return self._scales

    def scales_chunk_path(self, row: int) -> Path:
        """The chunk file of an int8 `row`'s scales (whether or not it exists)."""
        return chunk_path(self._path / FEATURES_DIR / SCALES_NAME, self.scales, row)

    # -- index ---------------------------------------------------------------------------------

    def index(self) -> dict[str, int]:
        """item -> row for committed items (a copy)."""
        self._refresh_index()
        return dict(self._index)

    def index_table(self) -> pa.Table:
        self._refresh_index()
        return self._index_table

    def failures_table(self) -> pa.Table:
        return read_table(self._path / FAILURES_FILE, FAILURES_SCHEMA)

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
        if self.int8:
            return self._read_rows_int8(rows, check)
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

    def _read_rows_int8(self, rows: np.ndarray, check: bool) -> np.ndarray:
        """read_rows for an int8 version: read_rows_int8, dequantized to float16."""
        values, scales = self.read_rows_int8(rows, check=check)
        return dequantize_int8(values, scales, np.empty(values.shape, dtype=DTYPE))

    def read_rows_int8(
        self,
        rows: np.ndarray | Sequence[int],
        *,
        check: bool = True,
        out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """An int8 version's rows as stored: (n, L, K, D) int8 values and (n, L, K) float16
        per-token scales (into `out` if given), checked as read_rows checks. Half the bytes of
        the float16 rows: training moves them as they are and dequantizes on its device. A
        never-written row reads as values 0, scales NaN (NaN once dequantized)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        array = self.array
        if not self.int8:
            raise StoreError(f"feature store {self._path}: rows are float16, not int8")
        if not direct_io(array):
            raise StoreError(f"feature store {self._path}: int8 rows need the raw chunk layout")
        if rows.size and (rows.min() < 0 or rows.max() >= array.shape[0]):
            raise StoreError(
                f"feature store {self._path}: rows out of range [0, {array.shape[0]}): "
                f"{rows[(rows < 0) | (rows >= array.shape[0])][:5].tolist()}"
            )
        self._refresh_index()
        if out is None:
            out = (
                np.empty((rows.size, *array.shape[1:]), dtype=INT8),  # (n, L, K, D)
                np.empty((rows.size, *array.shape[1:3]), dtype=DTYPE),  # (n, L, K)
            )
        values, scales = out
        for i, row in enumerate(rows.tolist()):
            path, scales_path = self.chunk_path(row), self.scales_chunk_path(row)
            values_bytes = memoryview(values[i]).cast("B")
            scales_bytes = memoryview(scales[i]).cast("B")
            problem = read_chunk(path, values_bytes)
            expected = self._row_checksums.get(row) if check else None
            if problem == "is missing" and expected is None:
                values[i], scales[i] = 0, np.nan  # never written
                continue
            if problem:
                raise StoreError(self._bad_row_message(row, f"chunk file {path} {problem}"))
            problem = read_chunk(scales_path, scales_bytes)
            if problem:
                raise StoreError(
                    self._bad_row_message(row, f"scales chunk file {scales_path} {problem}")
                )
            if expected is not None and int8_row_checksum(values_bytes, scales_bytes) != expected:
                raise StoreError(
                    self._bad_row_message(
                        row,
                        f"chunk files {path} and {scales_path} do not match the checksum "
                        "recorded at commit",
                    )
                )
        return values, scales

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
        raw = self.row_bytes
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
                *_derived_line(e),
                f"  items         {n_items} committed, {n_failures} failed, "
                f"{n_rows} rows allocated",
                f"  checksums     {n_checksums} of {n_items} committed rows ({CHECKSUM})",
                f"  on disk       {_human(disk)} ({_human(features_disk)} features)",
                f"  per item      {_human(raw)} raw "
                f"({'L*K*D int8 + L*K*2 scales' if self.int8 else 'L*K*D*2'}), "
                f"{_human(per_item)} per chunk file "
                f"({len(chunks)} chunk files)",
            ]
        )

    # -- internals -----------------------------------------------------------------------------

    def _refresh_index(self) -> None:
        key = file_key(self._path / INDEX_FILE)
        if self._index_loaded and key == self._index_key:
            return
        table = read_index(self._path)
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


def _derived_line(extractor: dict[str, Any]) -> list[str]:
    d = extractor.get("derived_from")
    if not d:
        return []
    return [
        f"  derived from  {d['fingerprint']}: layers {d['layers']}, K={d['k_tokens']} ({d['merge']})"
    ]


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
