"""How one row of a store version lives on disk, and how its bytes are checked.

A row is one item's (L, K, D) float16 features. With the store's codec chain (one `bytes`
codec, little-endian, no compressor) row r's chunk file ``features.zarr/features/c/r/0/0/0`` is
exactly the row's L*K*D*2 raw bytes: writers produce that file themselves and readers read it
straight into their output array (zarr's per-chunk machinery costs more than the copy).

Checksum: xxh3_64 of the row's little-endian float16 bytes in C order (for the raw layout, the
chunk file's bytes), recorded in index.parquet when the row is committed. xxh3 hashes at tens
of GB/s on one core, well above what a disk delivers, so taking it at write time and checking
it at read time costs a few percent (bench/store.py measures it). It finds corruption (a flipped
bit, a truncated, swapped or zero-filled chunk file); it is not a defence against tampering.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

DTYPE = np.dtype("float16")
CHECKSUM = "xxh3_64"  # the algorithm of index.parquet's `checksum` column
_EXPONENT = np.uint16(0x7C00)  # float16 exponent bits: all set means Inf or NaN


def row_checksum(data: Any) -> int:
    """xxh3_64 of a row's stored bytes: a C-contiguous little-endian float16 array, or any
    bytes-like object holding those bytes."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data, dtype="<f2")
    return xxhash.xxh3_64_intdigest(data)


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
    return str(getattr(codecs[0], "endian", "little")).endswith("little")


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
