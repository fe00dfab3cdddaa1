"""The feature store: one version per extractor fingerprint, rows of (L, K, D) float16 in zarr v3
shards, on a local disk or an object store (``s3://bucket/prefix``), with an index kept as a log
of small commits folded into checkpoints. The layout and the protocol (commits, the index log,
one writer, compaction, verification) are docs/store.md; each module keeps one part of it:

    layout       names, schemas, where a row's bytes lie in its shard (ShardGeometry)
    rows         a row's checksum (bound to its item), int8, the finiteness test
    location     the storage interface; local and s3 its backends; address parses a user's
    lease        one writer per version: the file lock, the S3 lease, the fence writes check
    log          the index log: deltas, tiers, checkpoints
    index        a reader's view of the index, in columns (VersionIndex)
    shards       reading rows out of shard objects (the format-2 row backend)
    reading      FeatureStore: a version for its readers
    writing      RowWriter (workers: a shard's rows) and StoreWriter (the driver: commits)
    verification verify()
    compaction   `store compact`: partial shards rewritten, garbage deleted
    versions     creating, finding and listing versions; CURRENT
    summary      `store info`
    bank         prompt banks: a version per prompt
    derive       compact views (fewer layers, fewer tokens, int8)
    legacy       format 1 (one chunk file a row), read-only; upgrade rewrites it in format 2
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
