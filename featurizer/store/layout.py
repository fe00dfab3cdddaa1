"""The layout of one store version (the whole contract is in featurizer.store's docstring):
file and array names, table schemas, where a row's bytes live, and reading the committed tables.

A row is one item's (L, K, D) float16 features. With the store's codec chain (one `bytes`
codec, little-endian, no compressor) row r's chunk file ``features.zarr/features/c/r/0/0/0`` is
exactly the row's L*K*D*2 raw bytes: writers produce that file themselves and readers read it
straight into their output array (zarr's per-chunk machinery costs more than the copy).

int8 versions (compact views, featurizer.store.derive) keep each row as int8 values in the same
raw layout plus each token's float16 scale in a second array, ``scales`` (N, L, K), chunk
``scales/c/r/0/0``: a value is int8 * scale of its token (featurizer.store.rows).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from featurizer.errors import StoreError

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

DTYPE = np.dtype("float16")

INT8 = np.dtype("int8")

SCALES_NAME = "scales"  # int8 versions: each token's float16 scale, (N, L, K)

CHECKSUM = "xxh3_64"  # the algorithm of index.parquet's `checksum` column


def is_raw_little_endian(array: Any) -> bool:
    """Whether a chunk file is its row's raw little-endian bytes (one `bytes` codec, no
    compressor or filter), so that writers and readers may use the file directly."""
    codecs = getattr(array.metadata, "codecs", ())
    if len(codecs) != 1 or type(codecs[0]).__name__ != "BytesCodec":
        return False
    endian = getattr(codecs[0], "endian", None)  # None for one-byte values (int8)
    return endian is None or str(endian).endswith("little")


def direct_io(array: Any) -> bool:
    """Rows may be read into native float16 arrays straight from their files."""
    return is_raw_little_endian(array) and sys.byteorder == "little"


def chunk_path(array_dir: Path, array: Any, row: int) -> Path:
    """The chunk file of `row` (whether or not it exists)."""
    return array_dir / array.metadata.encode_chunk_key((int(row),) + (0,) * (array.ndim - 1))


def open_array(path: Path, mode: str, name: str = ARRAY_NAME) -> Any:
    """The zarr array `name` ("features", or an int8 version's "scales") of the version at
    `path`; StoreError naming zarr.json when unreadable."""
    meta = path / FEATURES_DIR / name / "zarr.json"
    try:
        return zarr.open_array(str(path / FEATURES_DIR), path=name, mode=mode)
    except FileNotFoundError:
        raise StoreError(f"feature store {path}: no array {FEATURES_DIR}/{name}") from None
    except (ValueError, TypeError, KeyError, AttributeError, zarr.errors.BaseZarrError) as exc:
        # a zarr.json that is not JSON, or JSON that is not array metadata
        raise StoreError(
            f"feature store file {meta} is unreadable: {' '.join(str(exc).split())[:200]}"
        ) from None


def read_index(path: Path) -> pa.Table:
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
    table = read_table(file, INDEX_SCHEMA)
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


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """A parquet table with `schema` (columns it lacks read as null); empty when the file is
    absent, StoreError naming the file when it is unreadable."""
    if not path.is_file():
        return pa.Table.from_pylist([], schema=schema)
    try:
        return pq.read_table(path, schema=schema)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"feature store file {path} is unreadable: {exc}") from None
