"""The layout of one store version (the whole contract is in featurizer.store's docstring): file
and array names, table schemas, and where a row's bytes live.

A row is one item's (L, K, D) float16 features, stored raw: little-endian, C order, L*K*D*2 bytes,
no compressor (float16 activations barely compress and zstd cost ~10x the write rate).

Format 2 (sharded, `ShardGeometry`): the array ``features.zarr/features`` is a zarr v3 array
(N, L, K, D) whose codec is `sharding_indexed`: SHARD_ROWS consecutive rows share one shard object
``features.zarr/features/c/<s>/0/0/0``, which holds the rows present in it, raw, one after the
other in row order, then the shard's index (offset and length of each of its SHARD_ROWS rows,
uint64 little-endian, 2**64 - 1 for an absent row) and the index's crc32c (4 bytes, little-endian):
byte for byte what zarr itself writes, so zarr reads the array as it is. A shard object is written
whole, once, by the one writer its rows were allocated to. The committed index records each row's
offset in its shard, so reading a row is one byte-range read.

Why SHARD_ROWS = 64: at D = 3584 a shard is 64 x 2.75 MB = 176 MB, inside the range object stores
serve best (tens to hundreds of MB a request), one PUT without multipart (S3's limit is 5 GB), and
the most GPU work an extraction worker can lose to a crash (its shard is written when its group
of videos is done). 1,000 videos are 16 shard objects instead of 1,000 chunk files.

Format 1 (legacy, read-only, featurizer.store.legacy): one chunk file per row,
``features.zarr/features/c/<r>/0/0/0``, committed by index.parquet and failures.parquet.

int8 versions (compact views, featurizer.store.derive) keep each row as int8 values in the same
layout plus each token's float16 scale in a second array, ``scales`` (N, L, K), sharded alike: a
value is int8 * scale of its token (featurizer.store.rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

FEATURES_DIR = "features.zarr"
ARRAY_NAME = "features"
SCALES_NAME = "scales"  # int8 versions: each token's float16 scale, (N, L, K)
EXTRACTOR_FILE = "extractor.json"
CURRENT_FILE = "CURRENT"
LOCK_FILE = ".lock"  # a local version's writer lock
LEASE_FILE = "LEASE"  # an object-store version's writer lease (featurizer.store.lease)
SNAPSHOTS_DIR = "index"  # format 2: index/<seq>.parquet, the committed snapshots
INDEX_FILE = "index.parquet"  # format 1
FAILURES_FILE = "failures.parquet"  # format 1
EXTRACTION_RUNS_FILE = "extraction_runs.jsonl"  # format 1: one run record a line
STAGES = ("decode", "extract", "write")

FORMAT_LEGACY = 1
FORMAT_SHARDED = 2
SHARD_ROWS = 64  # rows per shard object (see the module docstring)

DTYPE = np.dtype("float16")
INT8 = np.dtype("int8")
CHECKSUM = "xxh3_64"  # the index's `checksum` column in versions written before ITEM_CHECKSUM
ITEM_CHECKSUM = "xxh3_64/item"  # xxh3_64 seeded with the item's id (featurizer.store.rows)

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
        ("offset", pa.uint64()),  # format 2: the row's byte offset in its shard object
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
_ABSENT = np.uint64(2**64 - 1)  # a shard index entry of a row the shard does not hold


@dataclass(frozen=True)
class ShardGeometry:
    """Where format 2 keeps the rows of one array (module docstring). `chunk_shape` is one
    row's shape in the array (L, K, D), or (L, K) for an int8 version's scales."""

    name: str  # the array: ARRAY_NAME or SCALES_NAME
    chunk_shape: tuple[int, ...]
    dtype: np.dtype
    rows: int = SHARD_ROWS

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.chunk_shape)) * self.dtype.itemsize

    @property
    def index_bytes(self) -> int:
        return self.rows * 16 + 4

    def shard_of(self, row: int) -> int:
        return int(row) // self.rows

    def key(self, shard: int) -> str:
        """The shard object's key below the version: features.zarr/<name>/c/<s>/0/0/0."""
        zeros = "/".join("0" * 1 for _ in self.chunk_shape)
        return f"{FEATURES_DIR}/{self.name}/c/{int(shard)}/{zeros}"

    def build(self, shard: int, rows: dict[int, np.ndarray]) -> tuple[list[memoryview], dict]:
        """The shard object holding `rows` (row -> its array, all of this shard), as the buffers
        to write one after the other, and each row's offset in it."""
        slots = np.full((self.rows, 2), _ABSENT, dtype="<u8")
        parts, offsets, at = [], {}, 0
        for row in sorted(rows):
            if self.shard_of(row) != shard:
                raise ValueError(f"row {row} is not in shard {shard}")
            data = np.ascontiguousarray(rows[row], dtype=self.dtype.newbyteorder("<"))
            if data.shape != self.chunk_shape:
                raise ValueError(f"row {row} has shape {data.shape}, expected {self.chunk_shape}")
            parts.append(memoryview(data).cast("B"))
            slots[row % self.rows] = (at, self.row_bytes)
            offsets[row] = at
            at += self.row_bytes
        index = slots.tobytes()
        parts += [memoryview(index), memoryview(crc32c(index).to_bytes(4, "little"))]
        return parts, offsets

    def parse_index(self, tail: bytes | memoryview) -> dict[int, tuple[int, int]]:
        """slot -> (offset, length) of the rows a shard object's last index_bytes say it holds;
        ValueError when the index fails its crc32c."""
        tail = bytes(tail)
        if len(tail) != self.index_bytes:
            raise ValueError(f"shard index is {len(tail)} bytes, expected {self.index_bytes}")
        index, crc = tail[:-4], int.from_bytes(tail[-4:], "little")
        if crc32c(index) != crc:
            raise ValueError("shard index does not match its crc32c")
        slots = np.frombuffer(index, dtype="<u8").reshape(self.rows, 2)
        return {s: (int(o), int(n)) for s, (o, n) in enumerate(slots) if o != _ABSENT}

    def zarr_metadata(self, n_rows: int, fill_value: Any) -> dict[str, Any]:
        """The array's zarr.json: a zarr v3 array of n_rows rows in shards of this geometry."""
        ndim = len(self.chunk_shape) + 1
        names = ["item", "layer", "token", "hidden"][:ndim]
        return {
            "zarr_format": 3,
            "node_type": "array",
            "shape": [int(n_rows), *map(int, self.chunk_shape)],
            "data_type": str(self.dtype),
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": [self.rows, *map(int, self.chunk_shape)]},
            },
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill_value,
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": [1, *map(int, self.chunk_shape)],
                        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                        "index_codecs": [
                            {"name": "bytes", "configuration": {"endian": "little"}},
                            {"name": "crc32c"},
                        ],
                        "index_location": "end",
                    },
                }
            ],
            "attributes": {},
            "dimension_names": names,
            "storage_transformers": [],
        }


def geometries(shape: tuple[int, int, int], int8: bool) -> list[ShardGeometry]:
    """The sharded arrays of a version with rows of `shape` (L, K, D): the features, and for an
    int8 version its scales first (a shard's scales are written before its values)."""
    L, K, D = shape
    if int8:
        return [
            ShardGeometry(SCALES_NAME, (L, K), DTYPE),
            ShardGeometry(ARRAY_NAME, (L, K, D), INT8),
        ]
    return [ShardGeometry(ARRAY_NAME, (L, K, D), DTYPE)]


def group_metadata() -> bytes:
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum zarr's sharding codec puts after a shard's index."""
    import google_crc32c

    return int(google_crc32c.value(data))


def now() -> datetime:
    """The time the index's timestamps record: now, in UTC."""
    return datetime.now(timezone.utc)
