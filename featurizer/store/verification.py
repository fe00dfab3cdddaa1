"""Verification of one store version: what its objects promise, checked against what they hold,
through FeatureStore's public reads (its index in columns, its raw rows).

Two kinds of findings (VerifyReport):

- problems of the whole version: extractor.json not matching its fingerprint, the arrays'
  metadata (dtype, shape, chunks, shards, codecs), an index that is missing, unreadable or does
  not hold together (a log file that does not follow the commit before it, a checkpoint its log
  does not confirm), unknown failure stages. Re-extracting items cannot repair these. Files in
  index/ that are no index file are noted and ignored.
- bad rows, per item, each naming the object that holds the row: a row outside the array, two
  items on one row, no source identity, an item both committed and failed, a format-2 row whose
  offset or checksum the index does not give, or whose offset its shard's own index disagrees
  with (zarr reads by the shard's index), and from the bytes: a shard object (format 1: a chunk
  file) missing or too short, or a row not matching the checksum recorded at commit, which binds
  the item to its bytes (rows written before checksums: NaN/Inf only). `extract` re-extracts
  exactly these items.

The index checks run in columns (numpy and Arrow), about a second a million items. The value
pass reads the committed rows in row order, a block of shards at a time, and hashes each row
where it lies while the next block is read: its cost is about the read of the bytes
(bench/store.py). `changed_only` restricts the value pass to the shard objects modified after
the commit that named them (what `extract` checks before each run: a store of millions of rows
is not read whole every run; `store verify` reads it whole).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurizer.config import fingerprint_of
from featurizer.errors import StoreError
from featurizer.store.index import committed as committed_entries
from featurizer.store.index import failed as failed_entries
from featurizer.store.index import strings
from featurizer.store.layout import ARRAY_NAME, FORMAT_LEGACY, STAGES, geometries
from featurizer.store.location import Location
from featurizer.store.rows import all_finite

if TYPE_CHECKING:
    from featurizer.store.reading import FeatureStore

MAX_LISTED = 50  # bad rows describe() lists one by one
VALUE_PASS_BYTES = 32 << 20  # two blocks of rows: one read while the other is hashed
MODIFIED_SLACK_S = 2.0  # clock skew between a writer and the storage's modification times


@dataclass
class VerifyReport:
    """What verify() found (see the module docstring); ok when it found nothing."""

    path: Location | Any
    problems: list[str] = field(default_factory=list)  # of the whole version
    bad_rows: dict[str, str] = field(default_factory=dict)  # item -> what is wrong with its row
    notes: list[str] = field(default_factory=list)  # worth saying, not wrong
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
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def verify_version(
    store: FeatureStore,
    check_values: bool = True,
    items: Sequence[str] | pa.Array | None = None,
    changed_only: bool = False,
) -> VerifyReport:
    """Every check of the module docstring on `store`; the value pass (reading the rows) only
    with `check_values`. With `items`, the checks of those items' rows only (the checks that
    compare every row with every other, such as two items on one row, need the whole index and
    are left out)."""
    report = VerifyReport(path=store.path)
    e = store.extractor
    fields = {key: e.get(key) for key in e.get("fingerprinted", [])}
    expected = fingerprint_of(fields)
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

    index = store.index_view
    try:
        index.refresh()
        if items is None:
            entries = index.entries()
        else:
            entries = index.lookup(strings(items))
    except StoreError as exc:  # missing, unreadable, or not holding together
        report.problems.append(str(exc))
        return report
    if store.format != FORMAT_LEGACY:
        strays = index.head().strays
        if strays:
            report.notes.append(
                f"ignored {len(strays)} file(s) that are no index file: {', '.join(strays[:5])}"
            )
    failures, rows = failed_entries(entries), committed_entries(entries)
    report.n_failures, report.n_rows = failures.num_rows, rows.num_rows
    stages = set(failures.column("stage").to_pylist()) - set(STAGES)
    if stages:
        report.problems.append(f"failures has unknown stage(s) {sorted(stages)}")

    readable = _check_entries(store, rows, failures, n_array_rows, report, whole=items is None)
    if check_values:
        if changed_only:
            readable = _changed_since_commit(store, readable)
        if store.format != FORMAT_LEGACY:
            _check_shard_indexes(store, readable, report)
            readable = readable.filter(
                pc.invert(pc.is_in(readable.column("item"), value_set=_bad_items(report)))
            )
        _check_values(store, readable, report)
    return report


def _bad_items(report: VerifyReport) -> pa.Array:
    return pa.array(list(report.bad_rows), pa.string())


def _check_entries(
    store: FeatureStore,
    rows: pa.Table,
    failures: pa.Table,
    n_array_rows: int,
    report: VerifyReport,
    whole: bool,
) -> pa.Table:
    """The index checks, in columns; returns the committed entries whose rows can be read."""
    item = rows.column("item").combine_chunks()
    row = rows.column("row").to_numpy()
    sharded = store.format != FORMAT_LEGACY
    bad = np.zeros(len(row), dtype=bool)

    def flag(mask: np.ndarray, why: Any) -> None:
        for i in np.flatnonzero(mask & ~bad):
            report.bad_rows.setdefault(str(item[i].as_py()), why(i))
        bad[mask] = True

    if whole and len(item):  # a log folds to one entry an item; format 1's index may not
        counts = pc.value_counts(item)
        twice = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        if len(twice):
            flag(
                pc.is_in(item, value_set=twice).to_numpy(zero_copy_only=False),
                lambda i: f"row {row[i]}: the index names the item more than once",
            )
    flag((row < 0) | (row >= n_array_rows),
         lambda i: f"row {row[i]} is outside the array's rows [0, {n_array_rows})")  # fmt: skip
    if whole and len(row):
        unique, first, counts = np.unique(row, return_index=True, return_counts=True)
        shared = unique[counts > 1]
        if len(shared):
            owners = {r: [] for r in shared.tolist()}
            for i in np.flatnonzero(np.isin(row, shared)):
                owners[int(row[i])].append(str(item[i].as_py()))
            for r, who in owners.items():
                for name in who:
                    other = next(o for o in who if o != name)
                    report.bad_rows.setdefault(name, f"row {r} is also the row of item {other}")
            bad |= np.isin(row, shared)
    source = rows.column("source_sha256")
    flag(pc.fill_null(pc.equal(source, ""), True).to_numpy(zero_copy_only=False),
         lambda i: f"row {row[i]}: no source_sha256 in the index")  # fmt: skip
    flag(
        pc.is_in(item, value_set=failures.column("item").combine_chunks()).to_numpy(
            zero_copy_only=False
        ),
        lambda i: f"row {row[i]}: the item also has a failure row",
    )
    if sharded:
        flag(rows.column("offset").is_null().to_numpy(zero_copy_only=False),
             lambda i: f"row {row[i]}: the index gives no offset in its shard")  # fmt: skip
        flag(rows.column("checksum").is_null().to_numpy(zero_copy_only=False),
             lambda i: f"row {row[i]}: the index gives no checksum")  # fmt: skip
    return rows.filter(pa.array(~bad))


def _changed_since_commit(store: FeatureStore, rows: pa.Table) -> pa.Table:
    """The entries whose shard object was modified after the commit that named it."""
    features = store.geometries[-1]
    prefix = features.key(0).rsplit("/c/", 1)[0] + "/c/"
    modified = {
        int(key[len(prefix) :].split("/")[0]): when
        for key, _, when in store.path.listing()
        if key.startswith(prefix)
    }
    if not modified or rows.num_rows == 0:
        return rows.slice(0, 0)
    committed_at = pc.coalesce(rows.column("at"), rows.column("extracted_at"))
    seconds = pc.divide(
        pc.cast(pc.cast(committed_at, pa.timestamp("us", tz="UTC")), pa.int64()), 1e6
    )
    shard = rows.column("row").to_numpy() // features.rows
    when = np.array([modified.get(int(s), np.inf) for s in shard])
    changed = when > seconds.fill_null(0).to_numpy() + MODIFIED_SLACK_S
    return rows.filter(pa.array(changed))


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


def _check_shard_indexes(store: FeatureStore, rows: pa.Table, report: VerifyReport) -> None:
    """Each shard object's own index must give the committed rows the offsets the store's index
    gives them (zarr reads a row by its shard's index, this package by the store's)."""
    if rows.num_rows == 0:
        return
    item = rows.column("item").to_pylist()
    row = rows.column("row").to_numpy()
    offset = rows.column("offset").to_numpy()
    features_bytes = store.geometries[-1].row_bytes
    for geometry in store.geometries:
        shard_of = row // geometry.rows
        for shard in np.unique(shard_of).tolist():
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
            for i in np.flatnonzero(shard_of == shard):
                r = int(row[i])
                position = int(offset[i]) // features_bytes
                want = (position * geometry.row_bytes, geometry.row_bytes)
                if problem:
                    report.bad_rows.setdefault(item[i], f"row {r}: {problem}")
                elif slots.get(r % geometry.rows) != want:
                    report.bad_rows.setdefault(
                        item[i],
                        f"row {r}: shard object {shard_object}'s index gives it "
                        f"{slots.get(r % geometry.rows)}, the store's index {want}",
                    )
                elif want[0] + want[1] > size - geometry.index_bytes:
                    report.bad_rows.setdefault(
                        item[i], f"row {r}: shard object {shard_object} is truncated"
                    )


def _check_values(store: FeatureStore, rows: pa.Table, report: VerifyReport) -> None:
    """Read each committed row, in row order, a block at a time, and record the bad ones. Two
    blocks of VALUE_PASS_BYTES / 2: the next one is read in a thread while this one is hashed
    (the read and xxh3 both release the GIL), so the pass costs about the read."""
    rows = rows.sort_by("row")
    items = rows.column("item").to_pylist()
    row = rows.column("row").to_numpy()
    checksum = rows.column("checksum")
    expected = checksum.fill_null(0).to_numpy()
    has = checksum.is_valid().to_numpy(zero_copy_only=False)
    geoms = geometries(store.shape_per_item, store.int8)
    row_bytes = sum(g.row_bytes for g in geoms)
    block = max(1, VALUE_PASS_BYTES // 2 // row_bytes)
    buffers = [[np.empty((block, *g.chunk_shape), dtype=g.dtype) for g in geoms] for _ in range(2)]
    parts = [range(first, min(first + block, len(row))) for first in range(0, len(row), block)]
    start = time.perf_counter()

    def read(k: int) -> tuple[list[np.ndarray], dict[int, str]]:
        views = [out[: len(parts[k])] for out in buffers[k % 2]]
        return views, store.read_raw(row[parts[k].start : parts[k].stop].tolist(), views)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-read") as reader:
        pending = reader.submit(read, 0) if parts else None
        for k, part in enumerate(parts):
            views, problems = pending.result()  # type: ignore[union-attr]
            pending = reader.submit(read, k + 1) if k + 1 < len(parts) else None
            for j, i in enumerate(part):
                r, item = int(row[i]), items[i]
                problem = problems.get(r)
                if problem:
                    if problem == "is missing":
                        problem = f"{store.where(r)} is missing (the row was never written)"
                    report.bad_rows[item] = f"row {r}: {problem}"
                    continue
                report.n_checked += 1
                parts_of = [v[j] for v in views]
                if not has[i]:  # written before checksums (format 1 only): at least no NaN/Inf
                    if not all_finite(parts_of[-1]):
                        report.bad_rows[item] = (
                            f"row {r}: {store.where(r)} holds NaN/Inf (a row without checksum)"
                        )
                elif store.checksum_of(parts_of, item) != int(expected[i]):
                    report.bad_rows[item] = (
                        f"row {r}: {store.where(r)} does not match the checksum recorded at "
                        "commit for this item"
                    )
    report.seconds = time.perf_counter() - start
    report.bytes_read = report.n_checked * row_bytes
