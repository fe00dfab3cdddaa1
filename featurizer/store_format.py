"""The on-disk format of one store version (the layout is in featurizer.store's docstring):
file names and table schemas, how a row lives in its chunk file and how its bytes are checked,
and the small durable writes the commit protocol is made of.

A row is one item's (L, K, D) float16 features. With the store's codec chain (one `bytes`
codec, little-endian, no compressor) row r's chunk file ``features.zarr/features/c/r/0/0/0`` is
exactly the row's L*K*D*2 raw bytes: writers produce that file themselves and readers read it
straight into their output array (zarr's per-chunk machinery costs more than the copy).

int8 versions (compact views, featurizer.store_derive) keep each row as int8 values in the same
raw layout plus each token's float16 scale in a second array, ``scales`` (N, L, K), chunk
``scales/c/r/0/0``: a value is int8 * scale of its token (`quantize_int8`, `dequantize_int8`).
Readers return float16 either way; their checksum covers the int8 bytes, then the scale bytes.

Checksum: xxh3_64 of the row's little-endian float16 bytes in C order (for the raw layout, the
chunk file's bytes), recorded in index.parquet when the row is committed. xxh3 hashes at tens
of GB/s on one core, well above what a disk delivers, so taking it when a row is written and
checking it when it is read costs a few percent (bench/store.py measures both). It finds
corruption (a flipped bit, a truncated, swapped or zero-filled chunk file); it is not a
defence against tampering.
"""

from __future__ import annotations

import ctypes
import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
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
_EXPONENT = np.uint16(0x7C00)  # float16 exponent bits: all set means Inf or NaN


def row_checksum(data: Any) -> int:
    """xxh3_64 of a row's stored bytes: a C-contiguous little-endian float16 array, or any
    bytes-like object holding those bytes."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data, dtype="<f2")
    return xxhash.xxh3_64_intdigest(data)


def int8_row_checksum(values: Any, scales: Any) -> int:
    """xxh3_64 of an int8 row's stored bytes: its (L, K, D) int8 values, then its (L, K)
    little-endian float16 scales (arrays, or bytes-like objects holding those bytes)."""
    h = xxhash.xxh3_64()
    h.update(np.ascontiguousarray(values, dtype=INT8) if isinstance(values, np.ndarray) else values)
    h.update(
        np.ascontiguousarray(scales, dtype="<f2") if isinstance(scales, np.ndarray) else scales
    )
    return h.intdigest()


def quantize_int8(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L, K, D) float16 -> ((L, K, D) int8, (L, K) float16 scales), symmetric per token:
    scale = max |x| / 127, so every value is within scale / 2 of int8 * scale (before float16
    rounding). A token of zeros gets scale 1."""
    x = features.astype(np.float32)
    scales = (np.abs(x).max(axis=-1) / 127.0).astype(np.float16)
    scales[scales == 0] = 1.0
    values = np.rint(x / scales[..., None].astype(np.float32))
    return np.clip(values, -127, 127).astype(INT8), scales


def dequantize_int8(values: np.ndarray, scales: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(..., L, K, D) int8 and (..., L, K) float16 scales -> float16 into `out`. Through torch,
    whose vectorized int8 x float16 product is about 4x numpy's (which emulates float16)."""
    import torch

    torch.mul(
        torch.from_numpy(values), torch.from_numpy(scales)[..., None], out=torch.from_numpy(out)
    )
    return out


def all_finite(row: np.ndarray) -> bool:
    """No NaN or Inf in a float16 array: a test of the exponent bits, about ten times faster
    than np.isfinite, which converts float16 to float32 first."""
    bits = np.ascontiguousarray(row, dtype=DTYPE).view(np.uint16)
    return not bool(((bits & _EXPONENT) == _EXPONENT).any())


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


def read_chunk(path: Path | str, buffer: memoryview) -> str:
    """Read the chunk file at `path` into `buffer` (a byte view of one row). Returns "" when the
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


# ---------------------------------------------------------------------------------------------
# Files


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


def publish_table(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` atomically (see atomic_write_bytes)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-temp, fsync, rename, fsync-dir: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent, directory=True)


def sync_rows(path: Path, rows: list[int]) -> None:
    """Make the chunk files of `rows` durable. On Linux one syncfs(2) flushes the whole
    filesystem the store lives on (also the pages other processes, the actors, wrote); elsewhere
    each chunk file and its directory is fsynced."""
    if _syncfs(path):
        return
    for name in (ARRAY_NAME, SCALES_NAME):  # scales: int8 versions only
        array_dir = path / FEATURES_DIR / name
        if not array_dir.is_dir():
            continue
        array = open_array(path, mode="r", name=name)
        for row in rows:
            chunk = chunk_path(array_dir, array, row)
            if chunk.exists():
                fsync_path(chunk)
                fsync_path(chunk.parent, directory=True)


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


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_key(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size) of a file, None when absent: a cheap "did it change"."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def now() -> datetime:
    return datetime.now(timezone.utc)
