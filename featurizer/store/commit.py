"""How a format-2 version commits, on a local disk and on an object store alike, without rename:

    <version>/index/<seq, 20 digits>.parquet   immutable snapshots; the highest is the committed
                                               state: every committed item's row, its offset in
                                               its shard, its source identity and checksum, and
                                               every failure (a row of its own, `row` null)
    <version>/LEASE | .lock                    the one writer (featurizer.store.lease)

- Publishing: the rows first (their shard objects complete and durable), then snapshot seq + 1,
  created only if absent (a link() on a local disk, If-None-Match on S3). The creation is the
  commit: it appears whole or not at all, and two writers cannot both commit the same seq (the
  one that loses stops: its view of the index is stale). Then snapshots before seq + 1 - KEEP
  are deleted.
- Reading: list index/, read the highest; if pruning removed it in between, list again. A reader
  takes no lock and sees one snapshot, never a part of one.
- The lease keeps a second writer from starting work it could not commit, and a writer that
  lost it stops; correctness never rests on it: the create-only commit and shards do.
- Extraction runs (their timing) ride in the snapshot's metadata, so a version is its shards,
  its snapshot and three metadata objects (extractor.json and the two zarr.json).

A retried conditional PUT whose first try landed answers "exists": every snapshot carries a
nonce, read back to tell "mine" from "another writer's".
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurizer.errors import StoreBusyError, StoreError
from featurizer.store.layout import FAILURES_SCHEMA, INDEX_SCHEMA, SNAPSHOTS_DIR
from featurizer.store.location import Location

KEEP_SNAPSHOTS = 1  # a reader that lists a pruned one lists again (read_latest)
_NONCE = b"linkedout.nonce"
_RUNS = b"linkedout.extraction_runs"
SNAPSHOT_SCHEMA = pa.schema(
    list(INDEX_SCHEMA) + [f for f in FAILURES_SCHEMA if f.name != "item"]
)  # a committed item: row set, stage null; a failed item: row null, stage set


def snapshot_name(seq: int) -> str:
    return f"{seq:020d}.parquet"


def snapshot_seqs(version: Location) -> list[int]:
    """The committed snapshots' numbers, ascending."""
    seqs = []
    for name in (version / SNAPSHOTS_DIR).children():
        stem = name.removesuffix(".parquet")
        if stem.isdigit() and name.endswith(".parquet"):
            seqs.append(int(stem))
    return sorted(seqs)


class Snapshot:
    """One committed state of a version: its index, failures and extraction runs."""

    def __init__(self, seq: int, table: pa.Table, runs: list[dict[str, Any]]) -> None:
        self.seq, self.table, self.runs = seq, table, runs

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(-1, pa.Table.from_pylist([], schema=SNAPSHOT_SCHEMA), [])

    @property
    def index(self) -> pa.Table:
        rows = self.table.filter(pc.is_valid(self.table.column("row")))
        return rows.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)

    @property
    def failures(self) -> pa.Table:
        failed = self.table.filter(pc.is_null(self.table.column("row")))
        return failed.select(FAILURES_SCHEMA.names).cast(FAILURES_SCHEMA)


def lost_index(version: Location) -> StoreError:
    """A format-2 version without snapshots: it was born with one, so its index was lost."""
    return StoreError(
        f"feature store {version}: its index snapshots are missing ({SNAPSHOTS_DIR}/), so "
        "nothing says which item a row belongs to: the store is FAILED, not empty; restore "
        "them, or move the version away and extract again"
    )


def read_latest(version: Location) -> Snapshot | None:
    """The highest snapshot, None when the version has none; StoreError naming it if it is
    unreadable."""
    for _ in range(5):
        seqs = snapshot_seqs(version)
        if not seqs:
            return None
        location = version / SNAPSHOTS_DIR / snapshot_name(seqs[-1])
        try:
            data = location.read_bytes()
        except FileNotFoundError:  # pruned after the listing: a newer one exists
            continue
        return _parse(seqs[-1], location, data)
    raise StoreError(f"feature store {version}: its index snapshots kept changing while read")


def _parse(seq: int, location: Location, data: bytes) -> Snapshot:
    try:
        table = pq.read_table(pa.BufferReader(data))
        meta = table.schema.metadata or {}
        table = _conform(table)
        runs = json.loads(meta.get(_RUNS, b"[]"))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StoreError(
            f"feature store file {location} is unreadable: {' '.join(str(exc).split())[:200]}"
        ) from None
    if table.column("item").null_count:
        raise StoreError(f"feature store file {location} is unreadable: an entry has no item")
    return Snapshot(seq, table, runs)


def _conform(table: pa.Table) -> pa.Table:
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in SNAPSHOT_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SNAPSHOT_SCHEMA)


def write_snapshot(
    version: Location,
    seq: int,
    index: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    runs: list[dict[str, Any]],
) -> None:
    """Commit snapshot `seq` (create-only) and prune the old ones; StoreBusyError when another
    writer committed `seq` first."""
    nonce = uuid.uuid4().hex
    entries = [{**row, "stage": None, "error": None, "at": None} for row in index]
    entries += [{**f, "row": None} for f in failures]
    table = pa.Table.from_pylist(entries, schema=SNAPSHOT_SCHEMA).replace_schema_metadata(
        {_NONCE: nonce.encode(), _RUNS: json.dumps(runs).encode()}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    location = version / SNAPSHOTS_DIR / snapshot_name(seq)
    if not location.create_bytes(sink.getvalue().to_pybytes()):
        try:
            theirs = pq.read_schema(pa.BufferReader(location.read_bytes())).metadata or {}
        except (FileNotFoundError, pa.ArrowException):
            theirs = {}
        if theirs.get(_NONCE) != nonce.encode():
            raise StoreBusyError(
                f"feature store {version}: another writer committed snapshot {seq} first; "
                "this run's view of the index is stale, so it stops (rerun it)"
            )
    for old in snapshot_seqs(version):
        if old <= seq - KEEP_SNAPSHOTS:
            (version / SNAPSHOTS_DIR / snapshot_name(old)).delete()
