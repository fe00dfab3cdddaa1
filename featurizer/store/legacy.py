"""Format 1, read-only: the layout every version had before shards (featurizer.store.layout), on
a local disk. Versions in it stay readable by training, evaluation, `store info` and `store
verify`; `linkedout store upgrade` rewrites one into format 2 without re-extracting.

    <version>/features.zarr/features/c/<row>/0/0/0   one chunk file per row: its raw bytes
    <version>/features.zarr/scales/c/<row>/0/0       int8 versions: the row's scales
    <version>/index.parquet                          committed rows (published by rename)
    <version>/failures.parquet

A missing index.parquet beside chunk files means the index was lost: the version is FAILED, not
empty. A committed row whose chunk file is missing reads as an error; a row no index names is
garbage and never read.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurizer.errors import StoreError
from featurizer.store.layout import (
    ARRAY_NAME,
    EXTRACTION_RUNS_FILE,
    FAILURES_FILE,
    FAILURES_SCHEMA,
    FEATURES_DIR,
    INDEX_FILE,
    INDEX_SCHEMA,
    SCALES_NAME,
)


def read_index(path: Path) -> pa.Table:
    """The committed index of the format-1 version at `path` (see the module docstring)."""
    file = path / INDEX_FILE
    if not file.is_file():
        if _has_chunk_files(path):
            raise StoreError(
                f"feature store {path}: {INDEX_FILE} is missing but {FEATURES_DIR} holds feature "
                "rows, so nothing says which item a row belongs to: the store is FAILED, not "
                f"empty; restore {INDEX_FILE}, or move {path} away and extract again"
            )
        return pa.Table.from_pylist([], schema=INDEX_SCHEMA)
    table = read_table(file, INDEX_SCHEMA)
    for column in ("item", "row"):
        if table.column(column).null_count:
            raise StoreError(
                f"feature store file {file} is unreadable: column {column!r} is missing or empty"
            )
    return table


def read_failures(path: Path) -> pa.Table:
    return read_table(path / FAILURES_FILE, FAILURES_SCHEMA)


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The extraction runs' records (extraction_runs.jsonl), oldest first."""
    file = path / EXTRACTION_RUNS_FILE
    lines = file.read_text().splitlines() if file.is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """A parquet table with `schema` (columns it lacks read as null); empty when the file is
    absent, StoreError naming the file when it is unreadable."""
    if not path.is_file():
        return pa.Table.from_pylist([], schema=schema)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"feature store file {path} is unreadable: {exc}") from None
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=schema)


def _has_chunk_files(path: Path) -> bool:
    chunks = path / FEATURES_DIR / ARRAY_NAME / "c"
    try:
        with os.scandir(chunks) as entries:
            return next(entries, None) is not None
    except (FileNotFoundError, NotADirectoryError):
        return False


def open_array(path: Path, name: str = ARRAY_NAME) -> Any:
    """The zarr array `name` of the format-1 version at `path`, read-only; StoreError naming its
    zarr.json when unreadable."""
    import zarr

    meta = path / FEATURES_DIR / name / "zarr.json"
    try:
        return zarr.open_array(str(path / FEATURES_DIR), path=name, mode="r")
    except FileNotFoundError:
        raise StoreError(f"feature store {path}: no array {FEATURES_DIR}/{name}") from None
    except (ValueError, TypeError, KeyError, AttributeError, zarr.errors.BaseZarrError) as exc:
        raise StoreError(
            f"feature store file {meta} is unreadable: {' '.join(str(exc).split())[:200]}"
        ) from None


def is_raw(array: Any) -> bool:
    """Whether a chunk file is its row's raw little-endian bytes (one `bytes` codec, no
    compressor or filter) on a little-endian machine, so that it is read directly."""
    codecs = getattr(array.metadata, "codecs", ())
    if len(codecs) != 1 or type(codecs[0]).__name__ != "BytesCodec":
        return False
    endian = getattr(codecs[0], "endian", None)  # None for one-byte values (int8)
    return (endian is None or str(endian).endswith("little")) and sys.byteorder == "little"


def chunk_path(path: Path, array: Any, row: int, name: str = ARRAY_NAME) -> Path:
    """The chunk file of `row` in array `name` (whether or not it exists)."""
    key = array.metadata.encode_chunk_key((int(row),) + (0,) * (array.ndim - 1))
    return path / FEATURES_DIR / name / key


class LegacyRows:
    """Reads format-1 rows into buffers, one chunk file each (featurizer.store.reading uses it
    as it uses the sharded reader)."""

    def __init__(self, path: Path, int8: bool) -> None:
        self.path = path
        self.names = [SCALES_NAME, ARRAY_NAME] if int8 else [ARRAY_NAME]
        self.arrays = [open_array(path, name) for name in self.names]

    @property
    def n_rows(self) -> int:
        return int(self.arrays[-1].shape[0])

    def where(self, row: int) -> str:
        return " and ".join(
            str(chunk_path(self.path, a, row, n))
            for n, a in zip(self.names, self.arrays, strict=True)
        )

    def read(self, rows: list[int], offsets: Any, outs: list[np.ndarray]) -> dict[int, str]:
        """outs[g][i] <- row rows[i] of array g (scales first for int8; `offsets` are format 2's
        and unused); row -> what is wrong for the rows that could not be read ("is missing"
        for a chunk file never written)."""
        problems: dict[int, str] = {}
        if not all(is_raw(a) for a in self.arrays):
            return self._read_through_zarr(rows, outs)
        for i, row in enumerate(rows):
            for name, array, out in zip(self.names, self.arrays, outs, strict=True):
                path = chunk_path(self.path, array, row, name)
                problem = read_chunk(path, memoryview(out[i]).cast("B"))
                if problem:
                    problems[row] = (
                        "is missing" if problem == "is missing" else f"chunk file {path} {problem}"
                    )
                    break
        return problems

    def _read_through_zarr(self, rows: list[int], outs: list[np.ndarray]) -> dict[int, str]:
        """Arrays of another codec chain: through zarr (slower)."""
        problems = {}
        for g, array in enumerate(self.arrays):
            try:
                outs[g][...] = array.oindex[np.asarray(rows, dtype=np.int64)]
            except (ValueError, OSError) as exc:
                for row in rows:
                    problems[row] = f"array {self.names[g]}: {' '.join(str(exc).split())[:200]}"
        return problems


def read_chunk(path: Path | str, buffer: memoryview) -> str:
    """Read the file at `path` (a format-1 chunk file) into `buffer` (a byte view of one row). Returns "" when the
    file held exactly len(buffer) bytes, now in `buffer`; otherwise what is wrong with it, as
    words that follow the file's name ("is missing", "holds 50 bytes, expected 49152")."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "is missing"
    try:
        size = os.fstat(fd).st_size
        if size != len(buffer):
            kind = "truncated" if size < len(buffer) else "too long"
            return f"holds {size} bytes, expected {len(buffer)} ({kind})"
        done = 0
        while done < size:
            got = os.readv(fd, [buffer[done:]])
            if got == 0:  # shrunk while being read
                return f"ended after {done} of {size} bytes"
            done += got
        return ""
    finally:
        os.close(fd)


def file_key(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size) of a file, None when absent: a cheap "did it change"."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
