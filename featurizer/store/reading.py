"""One store version for its readers: FeatureStore (its extractor, its committed index in columns,
its rows, checked). Its writer and its verification are featurizer.store.writing and
.verification; its index is featurizer.store.index; where its rows lie, a row backend: shards
(format 2, featurizer.store.shards) or one chunk file a row (format 1, featurizer.store.legacy).
Reading never takes the lock or the lease."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from featurizer.config import ExtractorConfig
from featurizer.errors import MissingItemsError, StoreError, shown
from featurizer.store import legacy
from featurizer.store.address import location
from featurizer.store.index import VersionIndex
from featurizer.store.layout import (
    ARRAY_NAME,
    DTYPE,
    FEATURES_DIR,
    FORMAT_LEGACY,
    ITEM_CHECKSUM,
    SHARD_ROWS,
    ShardGeometry,
    geometries,
)
from featurizer.store.lease import hold
from featurizer.store.location import Location
from featurizer.store.rows import dequantize_int8, int8_row_checksum, row_checksum
from featurizer.store.shards import ShardRows
from featurizer.store.verification import VerifyReport, verify_version
from featurizer.store.versions import bank_primary, create_version_of, read_extractor, version_path
from featurizer.store.writing import StoreWriter

CHECK_BLOCK_BYTES = 8 << 20  # a checked read hashes a block while it reads the next


class FeatureStore:
    """One store version: ``root / fingerprint``. Reading never takes the lock."""

    def __init__(self, path: Location | Path | str) -> None:
        self._path = location(path)
        self._extractor = read_extractor(self._path)
        self._index = VersionIndex(self._path, self.format == FORMAT_LEGACY)
        self._rows: Any = None  # the row backend, made on first use
        self._n_rows: int | None = None  # rows allocated, as last read

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def create_or_open(
        cls, root: Location | Path | str, config: ExtractorConfig, hidden_size: int
    ) -> FeatureStore:
        """The version of `config` under `root`, created (empty) if missing, validated if not.
        A prompt bank's config has a version per prompt: create each of its members()."""
        if config.is_bank:
            raise ValueError(
                "a prompt bank is one store version per prompt: create_or_open each of "
                "config.members() (featurizer.store.bank.create_bank names them)"
            )
        root = location(root)
        path = root / config.fingerprint()
        if not (path / "extractor.json").exists():
            create_version_of(root, config, hidden_size)
        store = cls(path)
        store._check_matches(config, hidden_size)
        return store

    @classmethod
    def open(cls, root: Location | Path | str, fingerprint: str | None = None) -> FeatureStore:
        """An existing version: `fingerprint`, or the one named in root/CURRENT. `root` may also
        be a version directory itself (then `fingerprint` must be None or its name). A prompt
        bank (featurizer.store.bank) opens as its first prompt's version."""
        path = version_path(root, fingerprint)
        primary = bank_primary(path)
        return cls(path.parent / primary if primary else path)

    # -- properties ----------------------------------------------------------------------------

    @property
    def path(self) -> Location:
        """Where the version lives (a local directory or an object-store prefix)."""
        return self._path

    @property
    def fingerprint(self) -> str:
        return str(self._extractor["fingerprint"])

    @property
    def format(self) -> int:
        """1: legacy, one chunk file a row (read-only); 2: sharded (featurizer.store.layout)."""
        return int(self._extractor.get("store_format", FORMAT_LEGACY))

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
    def int8(self) -> bool:
        """Rows stored as int8 values with per-token scales (a compact view), read as float16."""
        return self._extractor.get("dtype") == "int8"

    @property
    def binds_items(self) -> bool:
        """Row checksums are seeded with their item's id (featurizer.store.rows)."""
        return self._extractor.get("checksum") == ITEM_CHECKSUM

    def checksum_of(self, parts: Sequence[np.ndarray], item: str | None) -> int:
        """The checksum of `item`'s row as read: [features], or [scales, values] for int8."""
        key = item if self.binds_items else None
        if len(parts) == 2:  # int8: [scales, values]; the checksum hashes the values first
            return int8_row_checksum(parts[1], parts[0], key)
        return row_checksum(parts[0], key)

    @property
    def geometries(self) -> list[ShardGeometry]:
        """The version's arrays as sharded (format 2; scales first for int8)."""
        rows = int(self._extractor.get("shard_rows", SHARD_ROWS))
        return [
            ShardGeometry(g.name, g.chunk_shape, g.dtype, rows)
            for g in geometries(self.shape_per_item, self.int8)
        ]

    @property
    def row_bytes(self) -> int:
        """Bytes one item's row takes as stored: L*K*D*2, or L*K*D int8 + L*K*2 of scales."""
        return sum(g.row_bytes for g in geometries(self.shape_per_item, self.int8))

    def metadata(self, name: str = ARRAY_NAME) -> dict[str, Any]:
        """The zarr.json of array `name`, as a dict; StoreError naming it when unreadable."""
        file = self._path / FEATURES_DIR / name / "zarr.json"
        try:
            value = json.loads(file.read_bytes())
        except FileNotFoundError:
            raise StoreError(
                f"feature store {self._path}: no array {FEATURES_DIR}/{name}"
            ) from None
        except ValueError as exc:
            raise StoreError(f"feature store file {file} is unreadable: {exc}") from None
        if not isinstance(value, dict) or not isinstance(value.get("shape"), list):
            raise StoreError(f"feature store file {file} is unreadable: not array metadata")
        return value

    @property
    def n_rows(self) -> int:
        """Rows allocated in the array (committed or not)."""
        self._n_rows = self._row_backend().n_rows
        return self._n_rows

    def where(self, row: int) -> str:
        """The object(s) or file(s) that hold `row`."""
        return self._row_backend().where(row)

    # -- index ---------------------------------------------------------------------------------

    @property
    def index_view(self) -> VersionIndex:
        """The committed index, in columns (featurizer.store.index)."""
        return self._index

    def index(self) -> dict[str, int]:
        """item -> row for committed items: a Python dict, for small versions and tests; at
        scale, rows_of() and index_table() answer in columns."""
        table = self.index_table()
        return dict(
            zip(table.column("item").to_pylist(), table.column("row").to_pylist(), strict=True)
        )

    def index_table(self) -> pa.Table:
        """Every committed item's entry (INDEX_SCHEMA), sorted by item."""
        self._index.refresh()
        return self._index.committed()

    def failures_table(self) -> pa.Table:
        """Every failed item's entry (FAILURES_SCHEMA), sorted by item."""
        self._index.refresh()
        return self._index.failures()

    def items(self, failed: bool = False) -> pa.Array:
        """The committed items (or, with `failed`, the failed ones), sorted, as one column."""
        self._index.refresh()
        state = self._index.state()
        rows = state.column("row")
        return (
            state.column("item")
            .filter(rows.is_null() if failed else rows.is_valid())
            .combine_chunks()
        )

    def rows_of(self, items: Iterable[str] | pa.Array) -> np.ndarray:
        """(n,) int64: each item's committed row, -1 where it has none."""
        self._index.refresh()
        return self._index.rows_of(items)

    def lookup(
        self, items: Iterable[str] | pa.Array, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """The index entries (committed or failed) of `items` only, reading only what they can
        be in."""
        self._index.refresh()
        return self._index.lookup(items, columns)

    def extraction_runs(self) -> list[dict[str, Any]]:
        """The timing records of the runs that extracted into this version, oldest first."""
        self._index.refresh()
        return self._index.runs()

    def pending(
        self, sources: Mapping[str, str], prompts: Mapping[str, str] | None = None
    ) -> list[str]:
        """Items of `sources` (item -> sha256 of the video) not committed with that identity, in
        the order given; see pending_reasons(). Recorded failures are retried."""
        return list(self.pending_reasons(sources, prompts))

    def pending_reasons(
        self, sources: Mapping[str, str], prompts: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """item -> why it needs extracting, in the order of `sources` (item -> sha256 of the
        video): "new" (not committed), "video changed", or, where `prompts` (item -> sha256 of
        its prompt text) is given, "prompt changed" or "prompt unknown" (a row committed before
        prompt identities were recorded: nothing shows it was extracted from this prompt).
        VersionIndex.pending answers the same in columns, for catalogs of millions."""
        self._index.refresh()
        return self._index.pending_reasons(sources, prompts)

    # -- features ------------------------------------------------------------------------------

    def read(self, items: Sequence[str]) -> np.ndarray:
        """(n, L, K, D) float16 features of committed `items`, in the order given."""
        rows = self.rows_of(items)
        if (rows < 0).any():
            missing = [item for item, row in zip(items, rows, strict=True) if row < 0]
            raise MissingItemsError(
                f"feature store {self._path}: {len(missing)} item(s) not in the index: "
                f"{shown(missing)}"
            )
        return self.read_rows(rows)

    def read_rows(self, rows: np.ndarray | Sequence[int], *, check: bool = True) -> np.ndarray:
        """(n, L, K, D) float16 features of array rows, in the order given (no index check).

        A row the committed index names is checked against its checksum unless `check` is
        False; a mismatch, or a row whose shard object (chunk file) is missing or too short,
        raises StoreError naming the item and the object. A row no index names is read unchecked
        if it was written, as NaN if not."""
        if self.int8:
            values, scales = self.read_rows_int8(rows, check=check)
            return dequantize_int8(values, scales, np.empty(values.shape, dtype=DTYPE))
        (out,) = self._read_checked(rows, check)
        return out

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
        if not self.int8:
            raise StoreError(f"feature store {self._path}: rows are float16, not int8")
        scales, values = self._read_checked(rows, check, None if out is None else out[::-1])
        return values, scales

    def read_raw(self, rows: Sequence[int], outs: Sequence[np.ndarray]) -> dict[int, str]:
        """The stored bytes of `rows` into `outs` (one array per geometry: scales, then values
        for int8), unchecked; row -> what is wrong for the rows that could not be read ("is
        missing": the row was never written)."""
        rows = [int(r) for r in rows]
        index = self._index.row_index()
        return self._read_at(index, rows, index.find(np.asarray(rows, dtype=np.int64)), outs)

    def _read_at(
        self, index: Any, rows: list[int], positions: np.ndarray, outs: Sequence[np.ndarray]
    ) -> dict[int, str]:
        """read_raw of rows whose positions in the row index are known."""
        offsets = {
            r: int(index.offsets[p]) if p >= 0 and index.has_offset[p] else None
            for r, p in zip(rows, positions.tolist(), strict=True)
        }
        return self._row_backend().read(rows, offsets, list(outs))

    def _read_checked(
        self, rows: np.ndarray | Sequence[int], check: bool, out: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Rows into one array per geometry (scales, then values, for int8), checked."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        geoms = geometries(self.shape_per_item, self.int8)
        outs = list(out) if out is not None else [
            np.empty((rows.size, *g.chunk_shape), dtype=g.dtype) for g in geoms
        ]  # fmt: skip
        if rows.size == 0:
            return outs
        # a read of committed rows asks the storage nothing but their bytes: the index and the
        # array's size are looked up again only for a row they do not know (a new commit)
        index = self._index.row_index()
        positions = index.find(rows)
        if (positions < 0).any() and self._index.refresh():
            index = self._index.row_index()
            positions = index.find(rows)
        row_list = rows.tolist()
        low, high = min(row_list), max(row_list)
        n_rows = self._n_rows if self._n_rows is not None else self.n_rows
        if high >= n_rows:
            n_rows = self.n_rows
        if low < 0 or high >= n_rows:
            raise StoreError(
                f"feature store {self._path}: rows out of range [0, {n_rows}): "
                f"{rows[(rows < 0) | (rows >= n_rows)][:5].tolist()}"
            )
        row_bytes = sum(o[0].nbytes for o in outs)
        step = max(1, CHECK_BLOCK_BYTES // row_bytes) if check else len(row_list)
        blocks = [range(i, min(i + step, len(row_list))) for i in range(0, len(row_list), step)]

        def read(block: range) -> dict[int, str]:
            part = slice(block.start, block.stop)
            return self._read_at(index, row_list[part], positions[part], [o[part] for o in outs])

        # checked, the rows are read a block ahead of the hash (both release the GIL)
        reader = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-read")
            if len(blocks) > 1
            else None
        )
        try:
            results = reader.map(read, blocks) if reader else map(read, blocks)
            for block, problems in zip(blocks, results, strict=True):
                for i in block:
                    self._check_row(
                        index, row_list[i], int(positions[i]), [o[i] for o in outs],
                        problems.get(row_list[i]), check,
                    )  # fmt: skip
        finally:
            if reader is not None:
                reader.shutdown(cancel_futures=True)
        return outs

    def _check_row(
        self,
        index: Any,
        row: int,
        position: int,
        parts: list[np.ndarray],
        problem: str | None,
        check: bool,
    ) -> None:
        """Raise for a row that could not be read or does not match its checksum; a row never
        written, and named by no item, reads as the fill values."""
        if problem == "is missing" and position < 0:
            for part in parts:
                part[...] = np.nan if part.dtype == DTYPE else 0
            return
        if problem:
            if problem == "is missing":
                problem = f"{self.where(row)} is missing"
            raise StoreError(self._bad_row_message(row, position, problem))
        if not check or position < 0:
            return
        if not index.has_checksum[position]:
            if self.format != FORMAT_LEGACY:  # every format-2 row is committed with one
                raise StoreError(
                    self._bad_row_message(row, position, "the index gives no checksum")
                )
            return
        if self.checksum_of(parts, index.item(position)) != int(index.checksums[position]):
            raise StoreError(
                self._bad_row_message(
                    row,
                    position,
                    f"{self.where(row)} does not match the checksum recorded at commit",
                )
            )

    def _row_backend(self) -> Any:
        if self._rows is None:
            self._rows = (
                legacy.LegacyRows(self._path.path, self.int8)
                if self.format == FORMAT_LEGACY
                else ShardRows(self._path, self.geometries, self.metadata)
            )
        return self._rows

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def writer(self, wait: float = 0.0) -> Iterator[StoreWriter]:
        """The one writer of this version: waits up to `wait` seconds for the lock (a local
        version) or the lease (an object-store version), else raises StoreBusyError. Publishes
        on exit, also when the block raises (then a failing publish does not hide the block's
        exception). Format-1 versions are read-only: `linkedout store upgrade` converts them."""
        if self.format == FORMAT_LEGACY:
            raise StoreError(
                f"feature store {self._path} is in format 1 (one file a row), which is read-only "
                "now: `linkedout store upgrade` rewrites it into format 2 without re-extracting"
            )
        with hold(self._path, wait) as fence:
            w = StoreWriter(self, fence)
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
                w.close(settle=True)
            finally:
                w.close()

    # -- checks and summaries ------------------------------------------------------------------

    def verify(
        self,
        check_values: bool = True,
        items: Sequence[str] | pa.Array | None = None,
        changed_only: bool = False,
    ) -> VerifyReport:
        """Integrity checks; see VerifyReport. With `check_values`, reads every committed row
        (or only those of `items`, or, `changed_only`, those whose shard object was modified
        after their commit) and checks its checksum."""
        return verify_version(self, check_values, items, changed_only)

    def info(self) -> str:
        """A human-readable summary of this version (featurizer.store.summary)."""
        from featurizer.store.summary import describe_version

        return describe_version(self)

    # -- internals -----------------------------------------------------------------------------

    def _bad_row_message(self, row: int, position: int, problem: str) -> str:
        index = self._index.row_index()
        who = (
            f"item {index.item(position)} (row {row})" if position >= 0
            else f"row {row} (no committed item)"
        )  # fmt: skip
        return (
            f"feature store {self._path}: {who}: {problem}; `linkedout extract` extracts it "
            "again (`linkedout store verify` lists every bad row)"
        )

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
