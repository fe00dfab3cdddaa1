"""The committed index of a format-2 version: an append-only log of small deltas, folded now and
then into a checkpoint that readers start from (the design of Delta Lake's log; docs/store.md
has the whole protocol). Every file is created once, never replaced, on a local disk and an
object store alike (no rename):

    index/checkpoint/<seq>.parquet        the index at commit <seq>, sorted by item: its entries
                                          (one part), or the manifest naming its parts
    index/checkpoint/<seq>.<k>.parquet    a part of a larger checkpoint (later ones reuse it)
    index/log/<seq>.parquet               a delta: the entries one publish changed
    index/log/<first>-<last>.parquet      deltas first..last merged (a tier, TIER**k of them)
    index/<seq>.parquet                   a snapshot written before the log (read as a checkpoint)

An entry is an item's latest state, tagged with the `seq` of the commit that wrote it: a row
(`row` set) or a failure (`stage` set); where several files hold an item, the highest seq wins,
so any set of files covering the commits after a checkpoint folds to the same index.

- Commit: the delta seq + 1 is created only if absent; its creation is the commit. Two writers
  cannot both commit a seq; the one that finds it taken (by another nonce) stops. Each delta
  names the nonce of the commit before it, and every file names its version and the commits it
  spans, so a file that does not follow, or was moved or copied under another name (an old
  empty checkpoint renamed to a higher seq would hide every row), is refused by readers: the
  store is FAILED until it is moved away. Names that are no index file are ignored.
- Tiers: after every TIER deltas, the writer merges them into one file, and TIER of those into
  one of the next tier, up to MAX_TIER: a reader covers the commits after a checkpoint with a
  few dozen files, not thousands, and each entry is rewritten once per tier.
- Fold: once the entries since the checkpoint reach FOLD_FRACTION of its entries (and at least
  FOLD_MIN_ENTRIES), the writer writes a new checkpoint: a geometric rule, so the bytes written
  in all stay linear in the number of items. Parts (PART_ENTRIES entries, sorted by item) that
  no delta touched are reused, not rewritten; memory is one part plus the deltas' entries.
  Then the files the new checkpoint makes redundant are deleted (readers that listed them list
  again; a stale writer's commit into a deleted seq lies below the checkpoint, never read).
- Reading: list checkpoint/, read the newest's footer, list log/ after it, read the covering
  files. A reader takes no lock and never sees half a commit.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurizer.errors import StoreBusyError, StoreError
from featurizer.store.layout import FAILURES_SCHEMA, INDEX_SCHEMA, SNAPSHOTS_DIR, now
from featurizer.store.location import Location

LOG_DIR = f"{SNAPSHOTS_DIR}/log"
CHECKPOINT_DIR = f"{SNAPSHOTS_DIR}/checkpoint"
TIER = 16  # deltas merged into one file, and files of one tier into one of the next
MAX_TIER = 3  # merged files of at most TIER**3 = 4096 deltas (262,144 entries of 64)
FOLD_FRACTION = 0.5  # fold once the entries since the checkpoint reach this share of its own
FOLD_MIN_ENTRIES = 4096
SETTLE_ENTRIES = 4096  # a session's end folds an index this small (settle)
PART_ENTRIES = 1 << 17  # entries per checkpoint part: a part is folded in memory, whole
ROW_GROUP = 1 << 14  # entries per parquet row group: a point lookup reads one per item
KEPT_RUNS = 1000  # extraction-run records a checkpoint keeps (the newest)
RETIRED_DAYS = 30  # how long a checkpoint remembers a shard compaction retired

ENTRY_SCHEMA = pa.schema(
    list(INDEX_SCHEMA) + [f for f in FAILURES_SCHEMA if f.name != "item"] + [("seq", pa.int64())]
)  # a committed item: row set, stage null; a failed item: row null, stage set
_META = b"linkedout"  # the key of a file's metadata (JSON)
_NAME = re.compile(r"^(\d{20})(?:-(\d{20}))?\.parquet$")
_PART = re.compile(r"^(\d{20})\.(\d{5})\.parquet$")


def name(first: int, last: int | None = None) -> str:
    return f"{first:020d}.parquet" if last is None else f"{first:020d}-{last:020d}.parquet"


@dataclass(frozen=True)
class LogFile:
    """A delta (first == last), a tier (first < last), or a checkpoint (its seq in both)."""

    first: int
    last: int
    meta: dict[str, Any]
    location: Location

    @property
    def entries(self) -> int:
        return int(self.meta.get("entries", 0))


@dataclass
class Head:
    """What a reader or writer knows of a version's log without reading its entries: the
    checkpoint it starts from and the files covering every commit after it."""

    version: Location
    checkpoint: LogFile
    cover: list[LogFile] = field(default_factory=list)
    legacy: bool = False  # the checkpoint is a snapshot written before the log
    strays: list[str] = field(default_factory=list)  # names in index/ that are no index file

    @property
    def seq(self) -> int:
        return self.cover[-1].last if self.cover else self.checkpoint.last

    @property
    def nonce(self) -> str:
        return str((self.cover[-1] if self.cover else self.checkpoint).meta.get("nonce", ""))

    @property
    def entries_since(self) -> int:
        return sum(f.entries for f in self.cover)

    @property
    def max_row(self) -> int:
        """The highest row any entry has named (-1: none)."""
        return max([int(f.meta.get("max_row", -1)) for f in [self.checkpoint, *self.cover]])

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The extraction runs' records, oldest first."""
        found: list[dict[str, Any]] = []
        for f in [self.checkpoint, *self.cover]:
            found += f.meta.get("runs", [])
        return found

    @property
    def retired(self) -> list[dict[str, Any]]:
        """Shard objects that compaction emptied: {"shard", "at"} (deleted once older than the
        retention and named by no entry)."""
        found: list[dict[str, Any]] = []
        for f in [self.checkpoint, *self.cover]:
            found += f.meta.get("retired", [])
        return found

    def files(self) -> list[LogFile]:
        return [self.checkpoint, *self.cover]


def lost_index(version: Location) -> StoreError:
    """A format-2 version without an index: it was born with one, so it was lost."""
    return StoreError(
        f"feature store {version}: its index snapshots are missing ({SNAPSHOTS_DIR}/), so "
        "nothing says which item a row belongs to: the store is FAILED, not empty; restore "
        "them, or move the version away and extract again"
    )


def empty() -> pa.Table:
    return ENTRY_SCHEMA.empty_table()


# -- reading ----------------------------------------------------------------------------------


def read_head(version: Location) -> Head | None:
    """The version's head (module docstring); None when it has no index at all. StoreError
    naming the file when the log does not hold together."""
    for _ in range(5):  # a writer folding meanwhile deletes files this listing named
        try:
            return _read_head(version)
        except FileNotFoundError:
            continue
    raise StoreError(f"feature store {version}: its index kept changing while read")


def _read_head(version: Location) -> Head | None:
    strays: list[str] = []
    checkpoints = _seqs((version / CHECKPOINT_DIR).children(), strays, CHECKPOINT_DIR)
    legacy = _seqs(
        [n for n in (version / SNAPSHOTS_DIR).children() if n not in ("log", "checkpoint")],
        strays,
        SNAPSHOTS_DIR,
    )
    newest = max([s for s, _ in checkpoints], default=None)
    if legacy and (newest is None or max(s for s, _ in legacy) > newest):
        seq = max(s for s, _ in legacy)
        base = _footer(version / SNAPSHOTS_DIR / name(seq), seq, seq, legacy=True)
        is_legacy = True
    elif newest is not None:
        base = _footer(version / CHECKPOINT_DIR / name(newest), newest, newest)
        is_legacy = False
    else:
        return None
    logs = _seqs((version / LOG_DIR).children(after=name(base.last)), strays, LOG_DIR)
    available = {(first, last): n for (first, last), n in logs}
    cover = _cover(version, base, available)
    return Head(version, base, cover, legacy=is_legacy, strays=strays)


def _seqs(names: Iterable[str], strays: list[str], where: str) -> list[Any]:
    """(seq or (first, last), name) of the index files among `names`; the rest are strays."""
    found: list[Any] = []
    for n in names:
        match = _NAME.match(n)
        if match:
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) else None
            found.append(((first, first if last is None else last), n) if where == LOG_DIR
                         else (first, n))  # fmt: skip
        elif not _PART.match(n) or where != CHECKPOINT_DIR:
            strays.append(f"{where}/{n}")
    return found


def _cover(
    version: Location, base: LogFile, available: dict[tuple[int, int], str]
) -> list[LogFile]:
    """The files covering commits base+1.. latest: the largest tier that starts where the
    cover stands, else the delta; each must follow the one before it (its `prev` nonce)."""
    latest = max((last for _, last in available), default=base.last)
    cover: list[LogFile] = []
    at, prev = base.last + 1, base.meta.get("nonce")
    while at <= latest:
        span = next(
            (TIER**k for k in range(MAX_TIER, 0, -1)
             if at % TIER**k == 0 and (at, at + TIER**k - 1) in available),
            1,
        )  # fmt: skip
        key = (at, at + span - 1)
        if key not in available:
            newest = next(n for (_, last), n in available.items() if last == latest)
            raise StoreError(
                f"feature store {version}: its index log misses commit {at} ({LOG_DIR}/"
                f"{name(at)}) below {LOG_DIR}/{newest}: the store is FAILED (a commit file lost, "
                "or that one copied in)"
            )
        f = _footer(version / LOG_DIR / available[key], *key)
        if f.meta.get("prev") != prev:
            raise StoreError(
                f"feature store file {f.location} does not follow the commit before it (it "
                "names another predecessor): not written by this store's writer; the store is "
                "FAILED: move that file away"
            )
        cover.append(f)
        at, prev = key[1] + 1, f.meta.get("nonce")
    return cover


def _footer(location: Location, first: int, last: int, legacy: bool = False) -> LogFile:
    """A file's metadata, from its parquet footer alone (a ranged read on an object store)."""
    try:
        footer = _parquet(location).metadata
    except FileNotFoundError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StoreError(
            f"feature store file {location} is unreadable: {' '.join(str(exc).split())[:200]}"
        ) from None
    raw = footer.metadata or {}
    if legacy:  # a snapshot from before the log: runs and nonce in its own keys
        meta = {
            "nonce": raw.get(b"linkedout.nonce", b"").decode(),
            "runs": json.loads(raw.get(b"linkedout.extraction_runs", b"[]")),
            "entries": footer.num_rows,
            "committed": footer.num_rows - _nulls(footer, "row"),
            "max_row": _max_row(footer),
        }
    else:
        try:
            meta = json.loads(raw[_META])
        except (KeyError, ValueError):
            raise StoreError(
                f"feature store file {location} is unreadable: not an index file of this store"
            ) from None
        of = meta.get("of") or {}
        if (of.get("version"), of.get("first"), of.get("last")) != (
            _version_of(location),
            first,
            last,
        ):
            raise StoreError(
                f"feature store file {location} is commit(s) {of.get('first')}..{of.get('last')} "
                f"of version {of.get('version')}, not what its name says: a file moved or copied "
                "into this index; the store is FAILED until it is moved away"
            )
    return LogFile(first, last, meta, location)


def _version_of(location: Location) -> str:
    """The version an index file (index/log/x or index/checkpoint/x) belongs to."""
    return location.parent.parent.parent.name


def _nulls(footer: pq.FileMetaData, column: str) -> int:
    """Null values of `column` in a parquet file, from its row groups' statistics."""
    names = [footer.schema.column(i).name for i in range(footer.num_columns)]
    if column not in names:
        return footer.num_rows
    at = names.index(column)
    total = 0
    for g in range(footer.num_row_groups):
        stats = footer.row_group(g).column(at).statistics
        total += stats.null_count if stats is not None and stats.has_null_count else 0
    return total


def counts(head: Head) -> tuple[int, int]:
    """(committed items, failed items) at `head`: the checkpoint's counts, corrected by the
    entries since (read with the checkpoint's entries of the same items only)."""
    base = head.checkpoint.meta
    committed, entries = int(base.get("committed", 0)), int(base.get("entries", 0))
    changes = _cover_entries(head).select(["item", "row"])
    if changes.num_rows:
        before = _checkpoint_entries(head, changes.column("item").combine_chunks(), ["item", "row"])
        was = pc.index_in(changes.column("item"), value_set=before.column("item"))
        entries += was.null_count
        was_committed = pc.take(before.column("row"), was).is_valid()
        committed += int(pc.sum(changes.column("row").is_valid().cast(pa.int64())).as_py() or 0)
        committed -= int(pc.sum(pc.fill_null(was_committed, False).cast(pa.int64())).as_py() or 0)
    return committed, entries - committed


def _max_row(footer: pq.FileMetaData) -> int:
    """The highest `row` of a snapshot, from its row groups' statistics."""
    names = [footer.schema.column(i).name for i in range(footer.num_columns)]
    if "row" not in names:
        return -1
    column = names.index("row")
    found = [-1]
    for g in range(footer.num_row_groups):
        stats = footer.row_group(g).column(column).statistics
        if stats is not None and stats.has_min_max and stats.max is not None:
            found.append(int(stats.max))
    return max(found)


def _parquet(location: Location) -> pq.ParquetFile:
    """The parquet file at `location`: opened by path on a local disk, through ranged reads on
    an object store; FileNotFoundError when absent."""
    if location.is_local:
        if not location.path.is_file():
            raise FileNotFoundError(location.url)
        return pq.ParquetFile(str(location.path))
    return pq.ParquetFile(_RangeFile(location))


def read_entries(
    head: Head, items: pa.Array | None = None, columns: Sequence[str] | None = None
) -> pa.Table:
    """The index at `head`: every item's latest entry (or only those of `items`), sorted by
    item; `columns` (besides item and seq) to read only those."""
    wanted = None if columns is None else sorted({"item", "seq", *columns})
    tables = [_checkpoint_entries(head, items, wanted)]
    tables += [_read_file(f.location, f.first, items, wanted) for f in head.cover]
    return latest(pa.concat_tables(tables)) if len(tables) > 1 else tables[0]


def _cover_entries(head: Head) -> pa.Table:
    """The entries the commits after the checkpoint changed (latest per item, sorted)."""
    tables = [_read_file(f.location, f.first, None, None) for f in head.cover]
    return latest(pa.concat_tables(tables)) if tables else empty()


def _checkpoint_entries(head: Head, items: pa.Array | None, columns: list[str] | None) -> pa.Table:
    base = head.checkpoint
    parts = base.meta.get("parts")
    if not parts:  # one part: the checkpoint file itself (or a legacy snapshot)
        return _read_file(base.location, base.last, items, columns, legacy=head.legacy)
    found = []
    for part in parts:
        if items is not None and not _touches(items, part):
            continue
        found.append(
            _read_file(head.version / CHECKPOINT_DIR / part["name"], base.last, items, columns)
        )
    return pa.concat_tables(found) if found else _select(empty(), columns)


def _touches(items: pa.Array, part: dict[str, Any]) -> bool:
    if not part.get("entries"):
        return False
    inside = pc.and_(
        pc.greater_equal(items, pa.scalar(part["first"])),
        pc.less_equal(items, pa.scalar(part["last"])),
    )
    return bool(pc.any(inside).as_py())


def _read_file(
    location: Location,
    seq: int,
    items: pa.Array | None,
    columns: list[str] | None,
    legacy: bool = False,
) -> pa.Table:
    """One file's entries (of `items` only, through its row groups' item ranges), conformed to
    ENTRY_SCHEMA; a legacy snapshot's entries get its seq."""
    try:
        reader = _parquet(location)
        present = set(reader.schema_arrow.names)
        read = None if columns is None else [c for c in columns if c in present]
        if items is None:
            table = reader.read(columns=read)
        else:
            groups = _groups_with(reader, items)
            table = reader.read_row_groups(groups, columns=read) if groups else None
            if table is None:
                return _select(empty(), columns)
            table = table.filter(pc.is_in(table.column("item"), value_set=items))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StoreError(
            f"feature store file {location} is unreadable: {' '.join(str(exc).split())[:200]}"
        ) from None
    table = _conform(table, seq if legacy or "seq" not in table.column_names else None)
    if table.column("item").null_count:
        raise StoreError(f"feature store file {location} is unreadable: an entry has no item")
    return _select(table, columns)


def _groups_with(reader: pq.ParquetFile, items: pa.Array) -> list[int]:
    """The row groups whose item range (min, max statistics) holds one of `items`."""
    column = reader.schema_arrow.get_field_index("item")
    groups = []
    for g in range(reader.num_row_groups):
        stats = reader.metadata.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max:
            groups.append(g)
            continue
        inside = pc.and_(
            pc.greater_equal(items, pa.scalar(stats.min)),
            pc.less_equal(items, pa.scalar(stats.max)),
        )
        if pc.any(inside).as_py():
            groups.append(g)
    return groups


def _conform(table: pa.Table, seq: int | None) -> pa.Table:
    columns = []
    for f in ENTRY_SCHEMA:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        elif f.name == "seq" and seq is not None:
            columns.append(pa.array(np.full(table.num_rows, seq, dtype=np.int64)))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=ENTRY_SCHEMA)


def _select(table: pa.Table, columns: list[str] | None) -> pa.Table:
    return table if columns is None else table.select(columns)


def latest(table: pa.Table) -> pa.Table:
    """Each item's entry of the highest seq, sorted by item."""
    if table.num_rows <= 1:
        return table
    table = table.sort_by([("item", "ascending"), ("seq", "ascending")]).combine_chunks()
    items = table.column("item").chunk(0)
    last = pc.not_equal(items.slice(0, len(items) - 1), items.slice(1))
    return table.filter(pa.concat_arrays([last, pa.array([True])]))


# -- writing ----------------------------------------------------------------------------------


def create(version: Location, fingerprint: str) -> None:
    """The index of a new version `fingerprint` (built at `version`, perhaps under a temporary
    name): an empty checkpoint at commit 0 (a version is born with an index, so a lost one is
    noticed)."""
    meta = {"nonce": uuid.uuid4().hex, "entries": 0, "committed": 0, "max_row": -1}
    _write(version / CHECKPOINT_DIR / name(0), empty(), meta, (0, 0), fingerprint)


def append(
    head: Head,
    entries: pa.Table,
    runs: Sequence[dict[str, Any]] = (),
    retired: Sequence[dict[str, Any]] = (),
) -> Head:
    """Commit `entries` (ENTRY_SCHEMA without seq, one per item) as the next delta; merge tiers
    and fold when due (module docstring). Returns the new head; StoreBusyError when another
    writer committed that seq first."""
    seq = head.seq + 1
    nonce = uuid.uuid4().hex
    table = entries.append_column("seq", pa.array(np.full(entries.num_rows, seq, np.int64)))
    rows = table.column("row").drop_null()
    meta = {
        "nonce": nonce,
        "prev": head.nonce,
        "entries": table.num_rows,
        "max_row": max(head.max_row, int(pc.max(rows).as_py()) if len(rows) else -1),
        "runs": list(runs),
        "retired": list(retired),
    }
    location = head.version / LOG_DIR / name(seq)
    if not _write(location, latest(table), meta, (seq, seq)):
        theirs = _footer(location, seq, seq).meta
        if theirs.get("nonce") != nonce:
            raise StoreBusyError(
                f"feature store {head.version}: another writer committed {LOG_DIR}/{name(seq)} "
                "first; this run's view of the index is stale, so it stops (rerun it)"
            )
    head = Head(head.version, head.checkpoint, [*head.cover, LogFile(seq, seq, meta, location)],
                legacy=head.legacy)  # fmt: skip
    head = _merge_tiers(head)
    if head.entries_since >= max(FOLD_MIN_ENTRIES, FOLD_FRACTION * head.checkpoint.entries):
        head = fold(head)
    return head


def settle(head: Head) -> Head:
    """At the end of a writing session: fold an index small enough (at most SETTLE_ENTRIES
    entries in all) that rewriting it costs less than the files it replaces, so a store of a
    few thousand videos is a checkpoint, not a delta a run."""
    if head.cover and head.checkpoint.entries + head.entries_since <= SETTLE_ENTRIES:
        return fold(head)
    return head


def _merge_tiers(head: Head) -> Head:
    """After delta s, merge each tier whose block ends at s (module docstring); the head's
    cover then uses the merged file."""
    seq = head.seq
    for k in range(1, MAX_TIER + 1):
        span = TIER**k
        if (seq + 1) % span:
            break
        first = seq - span + 1
        if first <= head.checkpoint.last:
            break  # the block reaches below the checkpoint: its pieces are gone
        pieces = [f for f in head.cover if f.first >= first]
        if (
            not pieces
            or pieces[0].first != first
            or sum(f.last - f.first + 1 for f in pieces) != span
        ):
            break
        table = latest(
            pa.concat_tables([_read_file(f.location, f.first, None, None) for f in pieces])
        )
        meta = {
            "nonce": pieces[-1].meta["nonce"],
            "prev": pieces[0].meta.get("prev"),
            "entries": table.num_rows,
            "max_row": max(int(f.meta.get("max_row", -1)) for f in pieces),
            "runs": [r for f in pieces for r in f.meta.get("runs", [])],
            "retired": [r for f in pieces for r in f.meta.get("retired", [])],
        }
        location = head.version / LOG_DIR / name(first, seq)
        _write(location, table, meta, (first, seq))  # taken: the same merge by an earlier try
        kept = [f for f in head.cover if f.first < first]
        head = Head(head.version, head.checkpoint, [*kept, LogFile(first, seq, meta, location)],
                    legacy=head.legacy)  # fmt: skip
    return head


def fold(head: Head) -> Head:
    """Write the checkpoint of `head`, part by part (reusing the parts no delta since touched;
    in memory: one part and the deltas' entries), then delete what it makes redundant. Returns
    the head starting from it."""
    seq, version = head.seq, head.version
    changes = _cover_entries(head)  # sorted by item, the latest entry of each
    parts_in = head.checkpoint.meta.get("parts") or [{"name": None}]
    bounds = [p["first"] for p in parts_in[1:]]
    cuts = [0, *(_count_below(changes, b) for b in bounds), changes.num_rows]
    parts: list[dict[str, Any]] = []  # the new checkpoint's, in item order
    held: pa.Table | None = None  # a new part not written yet: the checkpoint's only one?

    def put(table: pa.Table) -> None:
        nonlocal held
        if held is not None:
            parts.append(_write_part(version, seq, len(parts) + 1, held))
        held = table

    for i, part in enumerate(parts_in):
        mine = changes.slice(cuts[i], cuts[i + 1] - cuts[i])
        if mine.num_rows == 0 and part["name"] is not None:
            if held is not None:
                parts.append(_write_part(version, seq, len(parts) + 1, held))
                held = None
            parts.append(part)  # untouched: reused as it is
            continue
        if part["name"] is None:
            old = _checkpoint_entries(head, None, None)
        else:
            old = _read_file(
                version / CHECKPOINT_DIR / part["name"], head.checkpoint.last, None, None
            )
        merged = latest(pa.concat_tables([old, mine]))
        for at in range(0, max(merged.num_rows, 1), PART_ENTRIES):
            put(merged.slice(at, PART_ENTRIES))
    meta = {"nonce": head.nonce, "max_row": head.max_row, "runs": head.runs[-KEPT_RUNS:],
            "retired": _recent(head.retired)}  # fmt: skip
    main = version / CHECKPOINT_DIR / name(seq)
    if not parts and held is not None:  # small enough to be one file: the checkpoint itself
        _write(main, held, {**meta, **_counts(held)}, (seq, seq))
    else:
        if held is not None:
            parts.append(_write_part(version, seq, len(parts) + 1, held))
        totals = {key: sum(p[key] for p in parts) for key in ("entries", "committed")}
        _write(main, empty(), {**meta, **totals, "parts": parts}, (seq, seq))
    checkpoint = _footer(main, seq, seq)
    _prune(head, checkpoint)
    return Head(version, checkpoint, [], legacy=False)


def _recent(retired: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retirements a checkpoint keeps: those of the last RETIRED_DAYS (older retired
    shards are deleted by their modification time like any shard nothing names)."""
    horizon = now().timestamp() - RETIRED_DAYS * 86400
    return [r for r in retired if datetime.fromisoformat(r["at"]).timestamp() > horizon]


def _count_below(table: pa.Table, bound: str) -> int:
    """How many of a sorted table's items sort before `bound`."""
    return int(pc.sum(pc.less(table.column("item"), pa.scalar(bound))).as_py() or 0)


def _counts(table: pa.Table) -> dict[str, int]:
    return {"entries": table.num_rows, "committed": table.num_rows - table.column("row").null_count}


def _write_part(version: Location, seq: int, k: int, table: pa.Table) -> dict[str, Any]:
    """One part of checkpoint `seq` (sorted by item): its manifest entry."""
    part = f"{seq:020d}.{k:05d}.parquet"
    _write(version / CHECKPOINT_DIR / part, table, _counts(table))
    items = table.column("item")
    return {"name": part, **_counts(table),
            "first": items[0].as_py() if len(items) else "",
            "last": items[-1].as_py() if len(items) else ""}  # fmt: skip


def _prune(head: Head, checkpoint: LogFile) -> None:
    """Delete what the new checkpoint makes redundant: older checkpoints and their parts that
    it does not reuse, legacy snapshots, and the log up to its seq."""
    version, seq = head.version, checkpoint.last
    keep = {p["name"] for p in checkpoint.meta.get("parts") or []}
    for n in (version / CHECKPOINT_DIR).children():
        match = _NAME.match(n) or _PART.match(n)
        if match and int(match.group(1)) < seq and n not in keep:
            (version / CHECKPOINT_DIR / n).delete()
    for n in (version / SNAPSHOTS_DIR).children():
        match = _NAME.match(n)
        if match and int(match.group(1)) <= seq:
            (version / SNAPSHOTS_DIR / n).delete()
    for n in (version / LOG_DIR).children():
        match = _NAME.match(n)
        if match and int(match.group(2) or match.group(1)) <= seq:
            (version / LOG_DIR / n).delete()


def _write(
    location: Location,
    table: pa.Table,
    meta: dict[str, Any],
    span: tuple[int, int] | None = None,
    version: str | None = None,
) -> bool:
    """Create the parquet file `location` (create-only): row groups of ROW_GROUP entries, the
    metadata as JSON in its footer with what the file is (its version and the commits it spans:
    a file moved or copied under another name is refused). False when it existed."""
    if span is not None:
        of = {"version": version or _version_of(location), "first": span[0], "last": span[1]}
        meta = {**meta, "of": of}
    table = table.replace_schema_metadata({_META: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=ROW_GROUP, compression="zstd")
    return location.create_bytes(sink.getvalue().to_pybytes())


class _RangeFile(io.RawIOBase):
    """A read-only file over a Location: parquet reads its footer and the row groups and
    columns it needs, each a ranged read (one request on an object store)."""

    def __init__(self, location: Location) -> None:
        self._location = location
        size = location.size()
        if size is None:
            raise FileNotFoundError(location.url)
        self._size, self._at = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._size}[whence]
        self._at = base + offset
        return self._at

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._at))
        if n:
            self._location.read_ranges_into([self._at], [memoryview(buffer).cast("B")[:n]])
            self._at += n
        return n
