"""Verification of one store version: what its objects promise, checked against what they hold.

Two kinds of findings (VerifyReport):

- problems of the whole version: extractor.json not matching its fingerprint, the arrays'
  metadata (dtype, shape, chunks, shards, codecs), an index that is missing beside feature rows
  or unreadable, unknown failure stages. Re-extracting items cannot repair these.
- bad rows, per item, each naming the object that holds the row: a row outside the array, two
  items on one row, no source identity, an item both committed and failed, a format-2 row
  whose offset the index does not give or its shard's own index does not agree with (zarr
  reads by the shard's index), and from the bytes: a shard object (format 1: a chunk file)
  missing or too short, or a row not matching the checksum recorded at commit (NaN/Inf for
  rows written before checksums). `extract` re-extracts exactly these items.

The value pass reads the committed rows in row order, a block of shards at a time (one ranged
read per shard and array), and hashes each row where it lies while the next block is read: its
cost is about the read of the bytes (bench/store.py). A matching checksum also stands for
"finite": the writer refuses NaN/Inf before it takes the checksum, so only rows without one are
scanned for NaN/Inf.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from featurizer.errors import StoreError
from featurizer.store.layout import (
    ARRAY_NAME,
    FORMAT_LEGACY,
    STAGES,
    geometries,
)
from featurizer.store.location import Location
from featurizer.store.rows import all_finite

if TYPE_CHECKING:
    from featurizer.store.reading import FeatureStore

MAX_LISTED = 50  # bad rows describe() lists one by one
VALUE_PASS_BYTES = 32 << 20  # two blocks of rows: one read while the other is hashed


@dataclass
class VerifyReport:
    """What verify() found (see the module docstring); ok when it found nothing."""

    path: Location | Any
    problems: list[str] = field(default_factory=list)  # of the whole version
    bad_rows: dict[str, str] = field(default_factory=dict)  # item -> what is wrong with its row
    n_rows: int = 0  # committed items
    n_failures: int = 0
    n_checked: int = 0  # rows whose bytes were read
    bytes_read: int = 0
    seconds: float = 0.0  # of the value pass

    @property
    def ok(self) -> bool:
        return not self.problems and not self.bad_rows

    @property
    def rate(self) -> float:
        """Bytes per second of the value pass."""
        return self.bytes_read / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        head = (
            f"{'OK' if self.ok else 'FAILED'}: feature store {self.path}: "
            f"{self.n_rows} committed rows, {self.n_failures} failures"
        )
        if self.n_checked:
            head += (
                f"; checked {self.n_checked} rows ({self.bytes_read / 1e9:.2f} GB) in "
                f"{self.seconds:.1f} s, {self.rate / 1e9:.2f} GB/s"
            )
        lines = [head, *(f"  - {p}" for p in self.problems)]
        if self.bad_rows:
            lines.append(
                f"  - {len(self.bad_rows)} bad row(s), extracted again by the next extract:"
            )
            for item, why in list(self.bad_rows.items())[:MAX_LISTED]:
                lines.append(f"    - item {item}: {why}")
            if len(self.bad_rows) > MAX_LISTED:
                lines.append(f"    - ... and {len(self.bad_rows) - MAX_LISTED} more")
        return "\n".join(lines)


def verify_version(
    store: FeatureStore, check_values: bool = True, items: Sequence[str] | None = None
) -> VerifyReport:
    """Every check of the module docstring on `store`; the value pass (reading the rows) only
    with `check_values`, and then only over `items` where given."""
    report = VerifyReport(path=store.path)
    e = store.extractor
    fields = {key: e.get(key) for key in e.get("fingerprinted", [])}
    expected = _hash_fields(fields)
    if e.get("fingerprint") != store.path.name:
        report.problems.append(f"extractor.json fingerprint {e.get('fingerprint')!r} != directory")
    if expected != store.path.name:
        report.problems.append(f"extractor.json fields hash to {expected}, not {store.path.name}")

    n_layout = len(report.problems)
    try:
        n_array_rows = _check_arrays(store, report)
    except StoreError as exc:
        report.problems.append(str(exc))
        return report
    if len(report.problems) > n_layout:
        check_values = False  # arrays of another layout cannot be read as rows

    try:
        failures = store.failures_table()
        index = store.index_table()
    except StoreError as exc:  # missing beside feature rows, or unreadable
        report.problems.append(str(exc))
        return report
    report.n_failures = failures.num_rows
    stages = set(failures.column("stage").to_pylist()) - set(STAGES)
    if stages:
        report.problems.append(f"failures has unknown stage(s) {sorted(stages)}")

    entries = list(
        zip(
            index.column("item").to_pylist(),
            index.column("row").to_pylist(),
            index.column("source_sha256").to_pylist(),
            index.column("checksum").to_pylist(),
            index.column("offset").to_pylist(),
            strict=True,
        )
    )
    report.n_rows = len(entries)
    failed = set(failures.column("item").to_pylist())
    seen_items: set[str] = set()
    row_owner: dict[int, str] = {}
    readable: list[tuple[str, int, int | None]] = []
    sharded = store.format != FORMAT_LEGACY
    for item, row, sha, checksum, offset in entries:
        where = f"row {row}"
        if item in seen_items:
            report.bad_rows[item] = f"{where}: the index names the item more than once"
            readable = [entry for entry in readable if entry[0] != item]
            continue
        seen_items.add(item)
        if not 0 <= row < n_array_rows:
            report.bad_rows[item] = f"{where} is outside the array's rows [0, {n_array_rows})"
        elif row in row_owner:
            other = row_owner[row]
            report.bad_rows[item] = f"{where} is also the row of item {other}"
            report.bad_rows.setdefault(other, f"{where} is also the row of item {item}")
        elif not sha:
            report.bad_rows[item] = f"{where}: no source_sha256 in the index"
        elif item in failed:
            report.bad_rows[item] = f"{where}: the item also has a failure row"
        elif sharded and offset is None:
            report.bad_rows[item] = f"{where}: the index gives no offset in its shard"
        elif sharded and checksum is None:  # every format-2 row is committed with one
            report.bad_rows[item] = f"{where}: the index gives no checksum"
        else:
            readable.append((item, row, checksum))
        row_owner.setdefault(row, item)

    if check_values:
        wanted = None if items is None else set(items)
        todo = [entry for entry in readable if wanted is None or entry[0] in wanted]
        if sharded:
            _check_shard_indexes(store, todo, report)
            todo = [entry for entry in todo if entry[0] not in report.bad_rows]
        _check_values(store, todo, report)
    return report


def _check_arrays(store: FeatureStore, report: VerifyReport) -> int:
    """The arrays' metadata against the version's row layout; returns the rows allocated."""
    L, K, D = store.shape_per_item
    if store.format == FORMAT_LEGACY:
        from featurizer.store.legacy import is_raw, open_array

        array = open_array(store.path.path, ARRAY_NAME)
        for name, shape in [(ARRAY_NAME, (L, K, D))] + ([("scales", (L, K))] if store.int8 else []):
            a = open_array(store.path.path, name)
            if tuple(a.shape[1:]) != shape or tuple(a.chunks) != (1, *shape):
                report.problems.append(
                    f"{name} shape {a.shape} in chunks {a.chunks}, expected (N, {shape}) in "
                    f"chunks {(1, *shape)}"
                )
        if not is_raw(array) and store.int8:
            report.problems.append("int8 rows need the raw chunk layout")
        if array.compressors:
            report.problems.append(f"features are compressed ({array.compressors}); expected none")
        return int(array.shape[0])
    n_rows = None
    for geometry in store.geometries:
        meta = store.metadata(geometry.name)
        fill = 0 if geometry.dtype.kind == "i" else "NaN"
        expected = geometry.zarr_metadata(meta["shape"][0], fill)
        for key in ("data_type", "chunk_grid", "codecs", "chunk_key_encoding"):
            if meta.get(key) != expected[key]:
                report.problems.append(
                    f"{geometry.name}: zarr.json {key} is {json.dumps(meta.get(key))}, expected "
                    f"{json.dumps(expected[key])}"
                )
        if meta["shape"][1:] != expected["shape"][1:]:
            report.problems.append(
                f"{geometry.name}: shape {meta['shape']}, expected (N, {expected['shape'][1:]})"
            )
        if n_rows is not None and meta["shape"][0] != n_rows:
            report.problems.append(f"{geometry.name}: {meta['shape'][0]} rows, not {n_rows}")
        n_rows = int(meta["shape"][0])
    return int(n_rows or 0)


def _check_shard_indexes(
    store: FeatureStore, entries: list[tuple[str, int, int | None]], report: VerifyReport
) -> None:
    """Each shard object's own index must give the committed rows the offsets the store's index
    gives them (zarr reads a row by its shard's index, this package by the store's)."""
    offsets = dict(
        zip(
            store.index_table().column("row").to_pylist(),
            store.index_table().column("offset").to_pylist(),
            strict=True,
        )
    )
    for geometry in store.geometries:
        by_shard: dict[int, list[tuple[str, int, int | None]]] = {}
        for entry in entries:
            by_shard.setdefault(geometry.shard_of(entry[1]), []).append(entry)
        features_bytes = store.geometries[-1].row_bytes
        for shard, members in by_shard.items():
            shard_object = store.path / geometry.key(shard)
            size = shard_object.size()
            problem = ""
            slots: dict[int, tuple[int, int]] = {}
            if size is None:
                problem = f"shard object {shard_object} is missing"
            elif size < geometry.index_bytes:
                problem = f"shard object {shard_object} holds {size} bytes (truncated)"
            else:
                try:
                    slots = geometry.parse_index(
                        shard_object.read_range(size - geometry.index_bytes, geometry.index_bytes)
                    )
                except (ValueError, StoreError) as exc:
                    problem = f"shard object {shard_object}: {exc}"
            for item, row, _ in members:
                position = int(offsets[row]) // features_bytes
                want = (position * geometry.row_bytes, geometry.row_bytes)
                if problem:
                    report.bad_rows.setdefault(item, f"row {row}: {problem}")
                elif slots.get(row % geometry.rows) != want:
                    report.bad_rows.setdefault(
                        item,
                        f"row {row}: shard object {shard_object}'s index gives it "
                        f"{slots.get(row % geometry.rows)}, the store's index {want}",
                    )
                elif want[0] + want[1] > size - geometry.index_bytes:
                    report.bad_rows.setdefault(
                        item, f"row {row}: shard object {shard_object} is truncated"
                    )


def _check_values(
    store: FeatureStore, entries: list[tuple[str, int, int | None]], report: VerifyReport
) -> None:
    """Read each (item, row, checksum) row, in row order, a block at a time, and record the
    bad ones. Two blocks of VALUE_PASS_BYTES / 2: the next one is read in a thread while this
    one is hashed (the read and xxh3 both release the GIL), so the pass costs about the read."""
    entries = sorted(entries, key=lambda entry: entry[1])
    geoms = geometries(store.shape_per_item, store.int8)
    row_bytes = sum(g.row_bytes for g in geoms)
    block = max(1, VALUE_PASS_BYTES // 2 // row_bytes)
    buffers = [[np.empty((block, *g.chunk_shape), dtype=g.dtype) for g in geoms] for _ in range(2)]
    parts = [entries[first : first + block] for first in range(0, len(entries), block)]
    start = time.perf_counter()
    store._refresh_index()

    def read(k: int) -> tuple[list[np.ndarray], dict[int, str]]:
        views = [out[: len(parts[k])] for out in buffers[k % 2]]
        return views, store._read_raw([row for _, row, _ in parts[k]], views)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-read") as reader:
        pending = reader.submit(read, 0) if parts else None
        for k, part in enumerate(parts):
            views, problems = pending.result()  # type: ignore[union-attr]
            pending = reader.submit(read, k + 1) if k + 1 < len(parts) else None
            for i, (item, row, expected) in enumerate(part):
                problem = problems.get(row)
                if problem:
                    if problem == "is missing":
                        problem = f"{store.where(row)} is missing (the row was never written)"
                    report.bad_rows[item] = f"row {row}: {problem}"
                    continue
                report.n_checked += 1
                why = _value_problem(store, [v[i] for v in views], item, expected)
                if why:
                    report.bad_rows[item] = f"row {row}: {store.where(row)} {why}"
    report.seconds = time.perf_counter() - start
    report.bytes_read = report.n_checked * row_bytes


def _value_problem(
    store: FeatureStore, parts: list[np.ndarray], item: str, expected: int | None
) -> str:
    if expected is None:  # written before checksums (format 1 only): at least no NaN/Inf
        return "" if all_finite(parts[-1]) else "holds NaN/Inf (a row without checksum)"
    if store.checksum_of(parts, item) != expected:
        return "does not match the checksum recorded at commit for this item"
    return ""


def _hash_fields(fields: dict[str, Any]) -> str:
    """Must match ExtractorConfig.fingerprint()."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
