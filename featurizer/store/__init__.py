"""The feature store: one version per extractor fingerprint, rows of (L, K, D) float16, on a
local disk or an object store (``s3://bucket/prefix``; featurizer.store.location).

Layout (a contract: training, the CLI and the Dagster checks read it), format 2::

    STORE/
      <fingerprint>/
        features.zarr      zarr v3 group; array "features": (N, L, K, D) float16 in shards of
                           SHARD_ROWS rows (sharding_indexed: inner chunks (1, L, K, D), raw,
                           no compressor), one object per shard: features/c/<s>/0/0/0
        index/<seq>.parquet  committed snapshots: item, row, source_sha256, n_old, n_new,
                           extracted_at, prompt_sha256, checksum, offset (of the row in its
                           shard); and every failure: item, stage (decode|extract|write), error
        extractor.json     the fingerprinted settings (config.fingerprint_fields()), plus
                           hidden_size, L, K, G, the old/new token split, shard_rows, created_at
        .lock | LEASE      held by the one writer of this version (local | object store)
      CURRENT              the fingerprint training reads by default: the name of a version
                           directly under STORE, nothing else

Format 1 (one chunk file a row, index.parquet and failures.parquet published by rename) stays
readable (featurizer.store.legacy); `linkedout store upgrade` rewrites it into format 2.

Commit protocol (featurizer.store.commit). Rows are allocated a shard at a time, and a shard is
written whole, once, by the one worker its rows were allocated to (its rows gathered in memory,
then one object per array). The single writer process (the driver) then records the rows and
commits the next index snapshot, created only if absent: no rename, so the same on a local disk
and an object store. The snapshot's creation is the commit: readers trust only rows named in
the highest snapshot and never take the lock or the lease. A crash leaves at most shards that no
snapshot names; the next writer allocates from the shard after the last committed row, so it
writes them again, whole.

Identity and integrity. An index row names the item's source identity: `source_sha256` (the
video file's bytes) and `prompt_sha256` (the item's prompt text, title filled in; see
ExtractorConfig.item_prompt), so a changed video or title makes the item pending again; and the
`checksum` of the row's bytes (featurizer.store.rows), taken by the worker from the array it
wrote. Reads check it (read_rows), verify() checks it for every row and names each bad item and
the object holding it. A version is created with an empty snapshot, so an index that is missing
while shards exist has been lost: the version is a failed store (every read raises StoreError),
never an empty one. Rows written before checksums existed (no `checksum` value) stay readable;
verify() checks them for NaN/Inf only.

Rows are never overwritten while an index names them: a changed video (new source_sha256) gets
a new row and its old row becomes garbage, unreferenced and never read (no compaction yet;
garbage is bounded by the re-extracted and crashed items). A committed row whose shard is
missing is a read error, and verify() flags it.

Failures. The snapshot holds one failure per item (the latest). A failure never blocks a
retry: pending() lists every item not committed with its current identity, failed or not, and an
item's failure is removed when it succeeds. An item that fails after its video changed is
dropped from the index (its stale features describe a video that no longer exists), so no item
is ever both in the index and in the failures.

Modules, one concept each: layout (names, schemas, shard geometry), rows (checksums, int8),
location (local and object-store I/O; objectstore: S3), io (local durable writes), shards
(reading rows out of shard objects), commit (snapshots, lease),
versions (creating, finding and listing versions; CURRENT), reading (FeatureStore), summary
(store info), writing
(RowWriter, StoreWriter), verification, legacy (format 1), upgrade (format 1 to 2), bank (prompt
banks), derive (compact views).
"""

from featurizer.errors import MissingItemsError, StoreBusyError, StoreError
from featurizer.store.address import location
from featurizer.store.location import Location, StoreIOError
from featurizer.store.reading import FeatureStore
from featurizer.store.verification import VerifyReport
from featurizer.store.versions import (
    create_version,
    list_versions,
    read_current,
    set_current,
    version_path,
    version_shape,
)
from featurizer.store.writing import RowWriter, StoreWriter

__all__ = [
    "FeatureStore",
    "Location",
    "MissingItemsError",
    "RowWriter",
    "StoreBusyError",
    "StoreError",
    "StoreIOError",
    "StoreWriter",
    "VerifyReport",
    "create_version",
    "list_versions",
    "location",
    "read_current",
    "set_current",
    "version_path",
    "version_shape",
]
