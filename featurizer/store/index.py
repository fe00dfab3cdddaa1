"""A reader's view of one version's committed index, in columns (Arrow and numpy), never one
Python object per item: what FeatureStore, verification and the pipelines ask of it.

- Format 2: the log (featurizer.store.log): its head is cheap to read and to check for news;
  the whole index is read only when something needs every item (training's row lookups,
  `store verify`), and then only the columns that need asks for. Questions about a few items
  (pending, a lookup) read only the checkpoint parts and row groups those items can be in.
- Format 1 (featurizer.store.legacy): index.parquet and failures.parquet, read as one state.

The index holds one entry per item: its row (committed) or its failure (`stage` set).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurizer.errors import StoreError
from featurizer.store import legacy, log
from featurizer.store.layout import FAILURES_SCHEMA, INDEX_FILE, INDEX_SCHEMA
from featurizer.store.location import Location

ROW_COLUMNS = ("item", "row", "checksum", "offset", "stage", "seq")  # what reads need


def strings(items: Iterable[str | None] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Items (or hashes) as an Arrow string array (the columns' currency)."""
    if isinstance(items, pa.ChunkedArray):
        items = items.combine_chunks()
    return items if isinstance(items, pa.Array) else pa.array(list(items), type=pa.string())


@dataclass
class RowIndex:
    """Committed rows as numpy arrays sorted by row: a row's checksum, offset and item in
    O(log n) without a Python object per row (about 32 bytes per row, plus the item strings)."""

    rows: np.ndarray  # (n,) int64, ascending
    checksums: np.ndarray  # (n,) uint64
    has_checksum: np.ndarray  # (n,) bool
    offsets: np.ndarray  # (n,) uint64
    has_offset: np.ndarray  # (n,) bool
    items: pa.Array  # (n,) string, in the same order

    @classmethod
    def of(cls, committed: pa.Table) -> RowIndex:
        order = pc.sort_indices(committed.column("row"))
        t = committed.take(order)
        checksum, offset = t.column("checksum"), t.column("offset")
        return cls(
            rows=t.column("row").to_numpy().astype(np.int64, copy=False),
            checksums=checksum.fill_null(0).to_numpy().astype(np.uint64, copy=False),
            has_checksum=checksum.is_valid().to_numpy(zero_copy_only=False),
            offsets=offset.fill_null(0).to_numpy().astype(np.uint64, copy=False),
            has_offset=offset.is_valid().to_numpy(zero_copy_only=False),
            items=strings(t.column("item")),
        )

    def find(self, rows: np.ndarray) -> np.ndarray:
        """Each row's position, -1 where no committed item holds it."""
        at = np.searchsorted(self.rows, rows)
        at = np.minimum(at, max(len(self.rows) - 1, 0))
        found = (
            (len(self.rows) > 0) & (self.rows[at] == rows)
            if len(self.rows)
            else np.zeros(len(rows), bool)
        )
        return np.where(found, at, -1)

    def item(self, position: int) -> str:
        return str(self.items[position].as_py())


class VersionIndex:
    """The committed index of the version at `path` (module docstring)."""

    def __init__(self, path: Location, legacy_format: bool) -> None:
        self.path, self.legacy = path, legacy_format
        self._key: Any = None  # what the cached state was read at
        self._head: log.Head | None = None
        self._state: pa.Table | None = None  # every entry, ROW_COLUMNS only
        self._rows: RowIndex | None = None

    # -- what changed --------------------------------------------------------------------------

    def head(self) -> log.Head:
        """The log's head as last read (format 2); StoreError when the index is lost."""
        if self._head is None:
            self.refresh()
        assert self._head is not None
        return self._head

    def refresh(self) -> bool:
        """Read the head again; True when the index changed since it was last read."""
        if self.legacy:
            key = legacy.file_key(self.path.path / INDEX_FILE)
        else:
            head = log.read_head(self.path)
            if head is None:
                raise log.lost_index(self.path)
            self._head, key = head, (head.checkpoint.last, head.seq, head.nonce)
        if key == self._key:
            return False
        self._key, self._state, self._rows = key, None, None
        return True

    def state_key(self) -> str:
        """What names the committed state: the last commit's nonce (format 2), the index
        file's identity (format 1)."""
        self.refresh()
        return str(self.head().nonce if not self.legacy else self._key)

    @property
    def seq(self) -> int:
        """The commit the index is at (format 1: 0)."""
        return 0 if self.legacy else self.head().seq

    # -- whole index ---------------------------------------------------------------------------

    def entries(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every entry (committed and failed), sorted by item, with `columns` (default all)."""
        if self._key is None:
            self.refresh()
        if self.legacy:
            table = _legacy_entries(self.path)
            return table if columns is None else table.select(_with_item(columns))
        wanted = None if columns is None else _with_item(columns)
        return self._read(lambda head: log.read_entries(head, columns=wanted))

    def _read(self, read: Any) -> Any:
        """read(head), reading the head again where a fold deleted a file it names meanwhile."""
        for _ in range(5):
            try:
                return read(self.head())
            except FileNotFoundError:
                self.refresh()
        raise StoreError(f"feature store {self.path}: its index kept changing while read")

    def state(self) -> pa.Table:
        """Every entry, ROW_COLUMNS only, cached until the index changes."""
        if self._key is None:
            self.refresh()
        if self._state is None:
            self._state = self.entries(ROW_COLUMNS)
        return self._state

    def row_index(self) -> RowIndex:
        if self._rows is None:
            self._rows = RowIndex.of(committed(self.state()))
        return self._rows

    def committed(self) -> pa.Table:
        """item, row and the rest of INDEX_SCHEMA of every committed item."""
        return committed(self.entries()).select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)

    def failures(self) -> pa.Table:
        return failed(self.entries()).select(FAILURES_SCHEMA.names).cast(FAILURES_SCHEMA)

    def counts(self) -> tuple[int, int]:
        """(committed items, failed items), without reading the whole index (format 2)."""
        if self.legacy:
            row = self.state().column("row")
            return len(row) - row.null_count, row.null_count
        return self._read(log.counts)

    def runs(self) -> list[dict[str, Any]]:
        """The extraction runs' records, oldest first."""
        if self.legacy:
            return legacy.read_runs(self.path.path)
        return self.head().runs

    # -- a few items ---------------------------------------------------------------------------

    def lookup(
        self, items: Iterable[str] | pa.Array, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """The entries of `items` only (those the index holds), reading only what they can be
        in (format 1 reads its index whole)."""
        items = strings(items)
        if self._key is None:
            self.refresh()
        if (
            self.legacy
            or self._state is not None
            and columns is not None
            and set(columns) <= set(ROW_COLUMNS)
        ):
            table = self.state() if not self.legacy else self.entries(columns)
            table = table.filter(pc.is_in(table.column("item"), value_set=items))
            return table if columns is None else table.select(_with_item(columns))
        wanted = None if columns is None else _with_item(columns)
        return self._read(lambda head: log.read_entries(head, items=items, columns=wanted))

    def rows_of(self, items: Iterable[str] | pa.Array) -> np.ndarray:
        """(n,) int64: each item's committed row, -1 where it has none."""
        items = strings(items)
        table = committed(self.state())
        at = pc.index_in(items, value_set=table.column("item")).fill_null(-1).to_numpy()
        rows = table.column("row").to_numpy()
        return np.where(at >= 0, rows[np.maximum(at, 0)] if len(rows) else -1, -1).astype(np.int64)

    def pending(
        self,
        items: Sequence[str] | pa.Array,
        sources: Sequence[str] | pa.Array,
        prompts: Sequence[str | None] | pa.Array | None = None,
    ) -> pa.Table:
        """(item, reason) of the `items` (with their video's sha256 in `sources`, and their
        prompt text's in `prompts`) not committed with that identity, in the order given:
        "new", "video changed", or "prompt changed" / "prompt unknown" (a row committed before
        prompt identities were recorded) where `prompts` is given. Failed items are pending."""
        items = strings(items)
        stored = self.lookup(items, ["row", "source_sha256", "prompt_sha256"])
        stored = committed(stored)
        at = pc.index_in(items, value_set=stored.column("item"))
        found = at.is_valid()
        source = pc.take(stored.column("source_sha256"), at)
        reason = pc.if_else(found, pa.scalar(None, pa.string()), pa.scalar("new"))
        changed = _mask(pc.and_kleene(found, pc.not_equal(source, strings(sources))))
        reason = pc.if_else(changed, pa.scalar("video changed"), reason)
        if prompts is not None:
            same = pc.and_(found, pc.invert(changed))
            prompt = pc.take(stored.column("prompt_sha256"), at)
            unknown = pc.and_(same, prompt.is_null())
            differs = _mask(pc.and_kleene(same, pc.not_equal(prompt, strings(prompts))))
            reason = pc.if_else(differs, pa.scalar("prompt changed"), reason)
            reason = pc.if_else(unknown, pa.scalar("prompt unknown"), reason)
        table = pa.table({"item": items, "reason": reason})
        return table.filter(table.column("reason").is_valid())

    def pending_reasons(
        self, sources: Mapping[str, str], prompts: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """pending() for a mapping item -> video sha256 (and item -> prompt sha256)."""
        items = list(sources)
        table = self.pending(
            items,
            [sources[i] for i in items],
            None if prompts is None else [prompts.get(i) for i in items],
        )
        return dict(
            zip(table.column("item").to_pylist(), table.column("reason").to_pylist(), strict=True)
        )


def _mask(values: pa.Array) -> pa.Array:
    """A boolean array with null read as False."""
    return pc.fill_null(values, False)


def committed(entries: pa.Table) -> pa.Table:
    return entries.filter(entries.column("row").is_valid())


def failed(entries: pa.Table) -> pa.Table:
    return entries.filter(entries.column("row").is_null())


def _with_item(columns: Sequence[str]) -> list[str]:
    return ["item", *[c for c in columns if c != "item"]]


def _legacy_entries(path: Location) -> pa.Table:
    """A format-1 version's index and failures as entries (seq 0), sorted by item; an item in
    both keeps both, for verification to name."""
    index = legacy.read_index(path.path)
    failures = legacy.read_failures(path.path)
    parts = []
    for table in (index, failures):
        parts.append(
            pa.Table.from_arrays(
                [
                    table.column(f.name).cast(f.type)
                    if f.name in table.column_names
                    else pa.array(np.zeros(table.num_rows, np.int64))
                    if f.name == "seq"
                    else pa.nulls(table.num_rows, f.type)
                    for f in log.ENTRY_SCHEMA
                ],
                schema=log.ENTRY_SCHEMA,
            )
        )
    return pa.concat_tables(parts).sort_by("item")
