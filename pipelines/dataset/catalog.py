"""The video catalog: every video of a dataset (a local directory or an S3 prefix) with its
size, its identity and its first sighting, in columns (one Arrow table, not an object a video),
written to the dataset's catalog.parquet.

A video's identity (the store's `source_sha256`): on S3, a digest of its URL, size and ETag,
taken from the listing (pipelines.dataset.location), so an unchanged object is never read; on
a local disk, the sha256 of its bytes, hashed only when its size or mtime moved since the last
scan (the previous catalog.parquet).

Item ids come from file names (`videos/<item>.mp4`) and are never turned back into paths: the
catalog maps an item to the file or object that was found, so no item id can point outside
`videos/`. Locally, a symlink in `videos/` is followed only when it resolves inside the dataset
(or inside the directory `videos/` itself resolves to); one that points elsewhere is refused
unread and recorded as unreadable, so a dataset cannot make the pipeline read (hash, decode)
other files. A symlink loop, like any file that cannot be read, is recorded as unreadable; the
others go on.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurizer.decode import sha256_file
from featurizer.store import Location, StoreError, StoreIOError
from pipelines.dataset.location import (
    VIDEO_SUFFIX,
    VIDEOS,
    dataset_location,
    object_identity,
    video_pages,
)
from pipelines.files import atomic_write

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.parquet"

SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("path", pa.string()),  # a local path, or the object's s3:// URL
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),  # the video's identity (module docstring)
        ("first_seen", pa.int64()),  # unix seconds of the scan that first found the file
    ]
)


@dataclass(frozen=True)
class VideoFile:
    """One video of the catalog (for a look at a few; the catalog itself is its table)."""

    item: str
    path: str
    size: int
    mtime_ns: int
    sha256: str
    first_seen: int


@dataclass(frozen=True)
class Catalog:
    """The dataset's videos (`table`, SCHEMA, sorted by item), the items whose video could not
    even be listed or hashed (`unreadable`: item -> why), and the items not in the previous
    catalog (`new_items`)."""

    dataset: Location
    table: pa.Table
    unreadable: dict[str, str]
    new_items: pa.Array

    @property
    def items(self) -> pa.Array:
        return self.table.column("item").combine_chunks()

    def __len__(self) -> int:
        return self.table.num_rows

    def files(self) -> Iterator[VideoFile]:
        """Each video's entry in item order, a record batch at a time."""
        for batch in self.table.to_batches():
            for row in batch.to_pylist():
                yield VideoFile(**row)

    def video(self, item: str) -> VideoFile | None:
        """One video's entry (a scan of the table: for a few items)."""
        found = self.table.filter(pc.equal(self.table.column("item"), item))
        return VideoFile(**found.to_pylist()[0]) if found.num_rows else None

    def of(self, items: pa.Array, column: str) -> pa.Array:
        """`column` of each of `items` (null where the catalog has no video of it)."""
        at = pc.index_in(items, value_set=self.items)
        return pc.take(self.table.column(column), at).combine_chunks()

    @property
    def bytes(self) -> int:
        return int(pc.sum(self.table.column("size")).as_py() or 0)

    def describe(self) -> str:
        return (
            f"{len(self)} videos ({self.bytes / 1e6:.1f} MB), {len(self.new_items)} new, "
            f"{len(self.unreadable)} unreadable in {self.dataset / VIDEOS}"
        )


def scan_videos(dataset: Path | str, *, write: bool = True) -> Catalog:
    """List the dataset's videos and take each one's identity (module docstring); with `write`,
    record the catalog in the dataset's catalog.parquet."""
    root = dataset_location(dataset)
    previous = read_catalog(root)
    if root.is_local:
        listed, unreadable = _list_local(root.path)
    else:
        listed, unreadable = _list_remote(root), {}
    now = int(time.time())
    at = pc.index_in(listed.column("item"), value_set=previous.column("item"))
    old = {name: pc.take(previous.column(name), at) for name in ("size", "mtime_ns", "sha256")}
    same = pc.fill_null(
        pc.and_(
            pc.equal(old["size"], listed.column("size")),
            pc.equal(old["mtime_ns"], listed.column("mtime_ns")),
        ),
        False,
    )
    if root.is_local:
        identity, unreadable = _hash_changed(listed, old["sha256"], same, unreadable)
    else:
        identity = pa.array(
            [
                object_identity(url, size, e_tag)
                for url, size, e_tag in zip(
                    listed.column("path").to_pylist(),
                    listed.column("size").to_pylist(),
                    listed.column("e_tag").to_pylist(),
                    strict=True,
                )
            ],
            pa.string(),
        )
    first_seen = pc.fill_null(pc.take(previous.column("first_seen"), at), now)
    table = pa.table(
        {
            "item": listed.column("item"),
            "path": listed.column("path"),
            "size": listed.column("size"),
            "mtime_ns": listed.column("mtime_ns"),
            "sha256": identity,
            "first_seen": first_seen,
        },
        schema=SCHEMA,
    )
    table = table.filter(table.column("sha256").is_valid()).sort_by("item")
    known = pc.is_in(table.column("item"), value_set=previous.column("item"))
    new_items = table.column("item").filter(pc.invert(known)).combine_chunks()
    catalog = Catalog(root, table, unreadable, new_items)
    if write:
        write_catalog(catalog)
    return catalog


def _list_local(dataset: Path) -> tuple[pa.Table, dict[str, str]]:
    """A local dataset's videos (item, path, size, mtime_ns, e_tag null), the symlink rules of
    the module docstring applied; and the unreadable ones."""
    video_dir = dataset / VIDEOS
    rows: dict[str, list[Any]] = {"item": [], "path": [], "size": [], "mtime_ns": []}
    unreadable: dict[str, str] = {}
    if not video_dir.is_dir():
        return _listed(rows), unreadable
    roots = (dataset.resolve(), video_dir.resolve())
    for entry in os.scandir(video_dir):
        if not entry.name.endswith(VIDEO_SUFFIX) or entry.name.startswith("."):
            continue
        item = entry.name[: -len(VIDEO_SUFFIX)]
        path = Path(entry.path)
        if entry.is_symlink():
            try:
                target = path.resolve()
            except (OSError, RuntimeError):  # RuntimeError: a loop, before Python 3.13
                unreadable[item] = f"{entry.name}: a symlink loop (it never reaches a file)"
                continue
            if not any(target.is_relative_to(root) for root in roots):
                unreadable[item] = (
                    f"{entry.name}: a symlink to {target}, outside the dataset: not read"
                )
                continue
        try:
            stat = path.stat()  # follows symlinks: a dangling one fails here
        except OSError as exc:
            unreadable[item] = f"{entry.name}: {exc.strerror or exc}"
            continue
        rows["item"].append(item)
        rows["path"].append(str(path))
        rows["size"].append(stat.st_size)
        rows["mtime_ns"].append(stat.st_mtime_ns)
    return _listed(rows), unreadable


def _listed(rows: dict[str, list[Any]]) -> pa.Table:
    return pa.table(
        {
            "item": pa.array(rows["item"], pa.string()),
            "path": pa.array(rows["path"], pa.string()),
            "size": pa.array(rows["size"], pa.int64()),
            "mtime_ns": pa.array(rows["mtime_ns"], pa.int64()),
            "e_tag": pa.nulls(len(rows["item"]), pa.string()),
        }
    )


def _list_remote(root: Location) -> pa.Table:
    """An object store's videos, a page at a time (item, path: its URL, size, mtime_ns, e_tag)."""
    pages = list(video_pages(root))
    if not pages:
        return _listed({"item": [], "path": [], "size": [], "mtime_ns": []})
    listed = pa.concat_tables(pages)
    base = (root / VIDEOS).url
    items = listed.column("item")
    return pa.table(
        {
            "item": items,
            "path": pc.binary_join_element_wise(base + "/", items, VIDEO_SUFFIX, ""),
            "size": listed.column("size"),
            "mtime_ns": pc.cast(pc.round(pc.multiply(listed.column("modified"), 1e9)), pa.int64()),
            "e_tag": listed.column("e_tag"),
        }
    )


def _hash_changed(
    listed: pa.Table, old_sha: pa.Array, same: pa.Array, unreadable: dict[str, str]
) -> tuple[pa.Array, dict[str, str]]:
    """Local identities: the previous sha256 where size and mtime are unchanged, else the
    file's bytes hashed now (null where it cannot be read: then it is unreadable)."""
    shas = old_sha.to_pylist()
    keep = same.to_numpy(zero_copy_only=False)
    paths = listed.column("path").to_pylist()
    items = listed.column("item").to_pylist()
    for i in np.flatnonzero(~keep):
        try:
            shas[i] = sha256_file(Path(paths[i]))
        except OSError as exc:
            shas[i] = None
            unreadable[items[i]] = f"{Path(paths[i]).name}: {exc.strerror or exc}"
    return pa.array(shas, pa.string()), unreadable


def read_catalog(dataset: Path | str | Location) -> pa.Table:
    """The previous catalog (SCHEMA), empty without one; an unreadable one is a cache to
    rebuild, not a failure."""
    file = dataset_location(dataset) / CATALOG_FILE
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return SCHEMA.empty_table()
    except StoreIOError:  # the storage refuses or is gone: the listing would be too
        raise
    except (OSError, StoreError) as exc:
        log.warning("%s is unreadable (%s); every video is identified again", file, exc)
        return SCHEMA.empty_table()
    try:
        table = pq.read_table(pa.BufferReader(data))
        return table.select(SCHEMA.names).cast(SCHEMA)
    except (OSError, KeyError, pa.ArrowException) as exc:
        log.warning("%s is unreadable (%s); every video is identified again", file, exc)
        return SCHEMA.empty_table()


def write_catalog(catalog: Catalog) -> str:
    """Write catalog.parquet into the dataset (replacing the last scan's)."""
    file = catalog.dataset / CATALOG_FILE
    if file.is_local:  # scans at once never share a temp file
        atomic_write(file.path, lambda tmp: pq.write_table(catalog.table, tmp))
    else:
        sink = io.BytesIO()
        pq.write_table(catalog.table, sink)
        file.write_bytes(sink.getvalue())
    return file.url
