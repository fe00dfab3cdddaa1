"""The feature store: one version directory per extractor fingerprint, rows of (L, K, D) float16.

Layout (a contract: training, the CLI and the Dagster checks read it)::

    STORE/
      <fingerprint>/
        features.zarr      zarr v3 group; array "features": (N, L, K, D) float16,
                           chunks (1, L, K, D), no compressor, fill value NaN
        index.parquet      item, row, source_sha256, n_old, n_new, extracted_at,
                           prompt_sha256, checksum
        failures.parquet   item, stage (decode|extract|write), error, at
        extractor.json     the fingerprinted settings (config.fingerprint_fields()), plus
                           hidden_size, L, K, G, the old/new token split, created_at
        .lock              held by the one writer of this version
      CURRENT              the fingerprint training reads by default: the name of a version
                           directly under STORE, nothing else

Commit protocol. Workers write whole rows (one chunk each, so writers never share a chunk);
the single writer process (the driver) then records them, flushes their chunks to disk (one
syncfs on Linux) and publishes index.parquet by write-temp, fsync, rename, fsync-dir. The index rename is the commit: readers trust only rows
named in the published index and never take the lock. A crash leaves at most rows that no
index names; the next writer allocates from max(committed row) + 1, so it overwrites them.

Identity and integrity. An index row names the item's source identity: `source_sha256` (the
video file's bytes) and `prompt_sha256` (the item's prompt text, title filled in; see
ExtractorConfig.item_prompt), so a changed video or title makes the item pending again; and the
`checksum` of the row's bytes (featurizer.store_format), taken by the worker from the array it
wrote. Reads check it (read_rows), verify() checks it for every row and names each bad item and
its chunk file. A version is created with an empty index.parquet, so an index that is missing
while chunk files exist has been lost: the version is a failed store (every read raises
StoreError), never an empty one. Rows written before checksums existed (no `checksum` value)
stay readable; verify() checks them for NaN/Inf only.

Rows are never overwritten while an index names them: a changed video (new source_sha256) gets
a new row and its old row becomes garbage, unreferenced and never read (no compaction yet;
garbage is bounded by the re-extracted and crashed items). The fill value is NaN, so a
committed row whose chunk is missing reads as NaN and verify() flags it.

Failures. failures.parquet holds one row per item (the latest failure). A failure never blocks a
retry: pending() lists every item not committed with its current identity, failed or not, and an
item's failure row is removed when it succeeds. An item that fails after its video changed is
dropped from the index (its stale features describe a video that no longer exists), so no item
is ever both in the index and in the failures. failures.parquet is published just before the
index; a crash between the two renames can leave one item in both, which verify() reports and
the next run repairs.

Modules, one concept each: layout (names, schemas, where a row's bytes live), rows (checksums,
int8), io (the durable small writes and raw reads), versions (creating, finding and listing
versions; CURRENT), reading (FeatureStore), writing (RowWriter, StoreWriter), verification,
bank (prompt banks), derive (compact views).
"""

from featurizer.errors import MissingItemsError, StoreBusyError, StoreError
from featurizer.store.reading import FeatureStore, write_throughput_probe
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
    "MissingItemsError",
    "RowWriter",
    "StoreBusyError",
    "StoreError",
    "StoreWriter",
    "VerifyReport",
    "create_version",
    "list_versions",
    "read_current",
    "set_current",
    "version_path",
    "version_shape",
    "write_throughput_probe",
]
