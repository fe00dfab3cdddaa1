"""Verification of one store version: what its files promise, checked against what they hold.

Two kinds of findings (VerifyReport):

- problems of the whole version: extractor.json not matching its fingerprint, the array's
  dtype, shape, chunks or codecs, an index that is missing beside feature rows or unreadable,
  unknown failure stages. Re-extracting items cannot repair these.
- bad rows, per item, each naming the item's chunk file: a row outside the array, two items on
  one row, no source identity, an item both committed and failed, and from the bytes: a chunk
  file missing, of the wrong size, or not matching the checksum recorded at commit (NaN/Inf
  for rows written before checksums). `extract` re-extracts exactly these items.

The value pass reads the committed rows' chunk files in row order into one reused buffer, one
read per file, and hashes each row where it lies: its cost is the read of the bytes (a few
percent more; bench/store.py). A matching checksum also stands for "finite": the writer refuses
NaN/Inf before it takes the checksum, so only rows without one are scanned for NaN/Inf.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featurizer.errors import StoreError
from featurizer.store.io import read_chunk
from featurizer.store.layout import (
    ARRAY_NAME,
    DTYPE,
    FEATURES_DIR,
    INT8,
    STAGES,
    chunk_path,
    direct_io,
)
from featurizer.store.rows import all_finite, int8_row_checksum, row_checksum

if TYPE_CHECKING:
    from featurizer.store.reading import FeatureStore

MAX_LISTED = 50  # bad rows describe() lists one by one


@dataclass
class VerifyReport:
    """What verify() found (see the module docstring); ok when it found nothing."""

    path: Path
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

    try:
        array = store.array
    except StoreError as exc:
        report.problems.append(str(exc))
        return report
    L, K, D = store.shape_per_item
    n_layout_problems = len(report.problems)
    dtype = INT8 if store.int8 else DTYPE
    if array.dtype != dtype:
        report.problems.append(f"features dtype is {array.dtype}, expected {dtype}")
    if store.int8:
        _check_scales(store, report)
    if tuple(array.shape[1:]) != (L, K, D):
        report.problems.append(
            f"features shape {array.shape} does not end in (L, K, D)={(L, K, D)}"
        )
    if tuple(array.chunks) != (1, L, K, D):
        report.problems.append(f"features chunks {array.chunks}, expected {(1, L, K, D)}")
    if array.compressors:
        report.problems.append(f"features are compressed ({array.compressors}); expected none")
    if len(report.problems) > n_layout_problems:
        check_values = False  # an array of another layout cannot be read as rows

    try:
        failures = store.failures_table()
    except StoreError as exc:
        report.problems.append(str(exc))
        failures = None
    if failures is not None:
        report.n_failures = failures.num_rows
        stages = set(failures.column("stage").to_pylist()) - set(STAGES)
        if stages:
            report.problems.append(f"failures has unknown stage(s) {sorted(stages)}")
    try:
        index = store.index_table()
    except StoreError as exc:  # missing beside feature rows, or unreadable
        report.problems.append(str(exc))
        return report

    entries = list(
        zip(
            index.column("item").to_pylist(),
            index.column("row").to_pylist(),
            index.column("source_sha256").to_pylist(),
            index.column("checksum").to_pylist(),
            strict=True,
        )
    )
    report.n_rows = len(entries)
    n_array_rows = array.shape[0]
    failed = set(failures.column("item").to_pylist()) if failures is not None else set()
    seen_items: set[str] = set()
    row_owner: dict[int, str] = {}
    readable: list[tuple[str, int, int | None]] = []
    for item, row, sha, checksum in entries:
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
        else:
            readable.append((item, row, checksum))
        row_owner.setdefault(row, item)

    if check_values:
        wanted = None if items is None else set(items)
        todo = [entry for entry in readable if wanted is None or entry[0] in wanted]
        _check_values(store, array, store.path / FEATURES_DIR / ARRAY_NAME, todo, report)
    return report


def _check_values(
    store: FeatureStore,
    array: Any,
    array_dir: Path,
    entries: list[tuple[str, int, int | None]],
    report: VerifyReport,
) -> None:
    """Read each (item, row, checksum) row, in row order, and record the bad ones."""
    entries = sorted(entries, key=lambda entry: entry[1])
    row_shape = tuple(array.shape[1:])
    nbytes = int(np.prod(row_shape)) * DTYPE.itemsize
    start = time.perf_counter()
    if store.int8:
        nbytes = int(np.prod(row_shape)) + int(np.prod(row_shape[:2])) * DTYPE.itemsize
        _check_int8_values(store, entries, report)
    elif direct_io(array):
        buffer = np.empty(row_shape, dtype=DTYPE)
        view = memoryview(buffer).cast("B")
        for item, row, expected in entries:
            path = chunk_path(array_dir, array, row)
            problem = read_chunk(path, view)
            if problem:
                if problem == "is missing":
                    problem += " (the row was never written)"
                report.bad_rows[item] = f"row {row}: chunk file {path} {problem}"
                continue
            report.n_checked += 1
            why = _value_problem(view, buffer, expected)
            if why:
                report.bad_rows[item] = f"row {row}: chunk file {path} {why}"
    else:  # another codec chain: through zarr, about 64 MB a read
        batch = max(1, (64 << 20) // nbytes)
        for first in range(0, len(entries), batch):
            part = entries[first : first + batch]
            block = store.read_rows([row for _, row, _ in part], check=False)
            for (item, row, expected), features in zip(part, block, strict=True):
                report.n_checked += 1
                why = _value_problem(np.ascontiguousarray(features, "<f2"), features, expected)
                if why:
                    report.bad_rows[item] = (
                        f"row {row}: chunk {chunk_path(array_dir, array, row)} {why}"
                    )
    report.seconds = time.perf_counter() - start
    report.bytes_read = report.n_checked * nbytes


def _check_scales(store: FeatureStore, report: VerifyReport) -> None:
    """An int8 version's scales array: (N, L, K) float16 in (1, L, K) raw chunks."""
    L, K, _ = store.shape_per_item
    try:
        scales = store.scales
    except StoreError as exc:
        report.problems.append(str(exc))
        return
    if scales.dtype != DTYPE or tuple(scales.shape[1:]) != (L, K):
        report.problems.append(
            f"scales are {scales.dtype}{scales.shape}, expected float16 (N, {L}, {K})"
        )
    elif tuple(scales.chunks) != (1, L, K) or scales.shape[0] != store.array.shape[0]:
        report.problems.append(
            f"scales chunks {scales.chunks} over {scales.shape[0]} rows, expected {(1, L, K)} "
            f"over the features' {store.array.shape[0]}"
        )


def _check_int8_values(
    store: FeatureStore, entries: list[tuple[str, int, int | None]], report: VerifyReport
) -> None:
    """Each int8 row's value and scale chunk files against the row's checksum."""
    L, K, D = store.shape_per_item
    values, scales = np.empty((L, K, D), dtype=INT8), np.empty((L, K), dtype=DTYPE)
    values_bytes, scales_bytes = memoryview(values).cast("B"), memoryview(scales).cast("B")
    for item, row, expected in entries:
        for path, buffer in (
            (store.chunk_path(row), values_bytes),
            (store.scales_chunk_path(row), scales_bytes),
        ):
            problem = read_chunk(path, buffer)
            if problem:
                report.bad_rows[item] = f"row {row}: chunk file {path} {problem}"
                break
        else:
            report.n_checked += 1
            if expected is None or int8_row_checksum(values_bytes, scales_bytes) != expected:
                report.bad_rows[item] = (
                    f"row {row}: chunk files {store.chunk_path(row)} and "
                    f"{store.scales_chunk_path(row)} do not match the checksum recorded at commit"
                )


def _value_problem(data: Any, features: np.ndarray, expected: int | None) -> str:
    if expected is None:  # written before checksums: at least no NaN/Inf (or a never-written row)
        return "" if all_finite(features) else "holds NaN/Inf (a row without checksum)"
    if row_checksum(data) != expected:
        return "does not match the checksum recorded at commit"
    return ""


def _hash_fields(fields: dict[str, Any]) -> str:
    """Must match ExtractorConfig.fingerprint()."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
