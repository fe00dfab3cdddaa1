"""The video catalog: every video file of a dataset with its size, content hash and first sighting.

Item ids come from file names (`videos/<item>.mp4`) and are never turned back into paths: the
catalog maps an item to the file that was found, so no item id can point outside `videos/`.
A symlink in `videos/` is followed only when it resolves inside the dataset (or inside the
directory `videos/` itself resolves to); one that points elsewhere is refused unread and
recorded as unreadable, so a dataset cannot make the pipeline read (hash, decode) other files.
A symlink loop, like any file that cannot be read, is recorded as unreadable; the others go on.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurizer.decode import sha256_file
from pipelines.files import atomic_write

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.parquet"
VIDEO_SUFFIX = ".mp4"

SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),
        ("first_seen", pa.int64()),  # unix seconds of the scan that first found the file
    ]
)


@dataclass(frozen=True)
class VideoFile:
    item: str
    path: Path
    size: int
    mtime_ns: int
    sha256: str
    first_seen: int


@dataclass(frozen=True)
class Catalog:
    dataset: Path
    videos: dict[str, VideoFile]
    unreadable: dict[str, str]  # item -> why its file could not even be hashed
    new_items: list[str]  # not in the previous catalog

    def describe(self) -> str:
        size = sum(v.size for v in self.videos.values())
        return (
            f"{len(self.videos)} videos ({size / 1e6:.1f} MB), {len(self.new_items)} new, "
            f"{len(self.unreadable)} unreadable in {self.dataset / 'videos'}"
        )


def scan_videos(dataset: Path, *, write: bool = True) -> Catalog:
    """List `dataset/videos/*.mp4`, hashing only files whose size or mtime changed since the last
    scan (the previous `catalog.parquet`), so a rescan of a large catalog costs a `stat` per file."""
    dataset = Path(dataset)
    video_dir = dataset / "videos"
    if not video_dir.is_dir():
        return Catalog(dataset, {}, {}, [])
    previous = read_catalog(dataset)
    now = int(time.time())
    videos: dict[str, VideoFile] = {}
    unreadable: dict[str, str] = {}
    roots = (dataset.resolve(), video_dir.resolve())
    for entry in sorted(os.scandir(video_dir), key=lambda e: e.name):
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
            old = previous.get(item)
            if old and old.size == stat.st_size and old.mtime_ns == stat.st_mtime_ns:
                sha = old.sha256
            else:
                sha = sha256_file(path)
        except OSError as exc:
            unreadable[item] = f"{entry.name}: {exc.strerror or exc}"
            continue
        first_seen = previous[item].first_seen if item in previous else now
        videos[item] = VideoFile(item, path, stat.st_size, stat.st_mtime_ns, sha, first_seen)
    new_items = [item for item in videos if item not in previous]
    catalog = Catalog(dataset, videos, unreadable, new_items)
    if write:
        write_catalog(catalog)
    return catalog


def read_catalog(dataset: Path) -> dict[str, VideoFile]:
    path = Path(dataset) / CATALOG_FILE
    if not path.is_file():
        return {}
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as exc:  # a cache: rehash rather than fail
        log.warning("%s is unreadable (%s); every video is hashed again", path, exc)
        return {}
    return {
        r["item"]: VideoFile(
            r["item"], Path(r["path"]), r["size"], r["mtime_ns"], r["sha256"], r["first_seen"]
        )
        for r in rows
    }


def write_catalog(catalog: Catalog) -> Path:
    rows = [
        {
            "item": v.item,
            "path": str(v.path),
            "size": v.size,
            "mtime_ns": v.mtime_ns,
            "sha256": v.sha256,
            "first_seen": v.first_seen,
        }
        for v in catalog.videos.values()
    ]
    path = catalog.dataset / CATALOG_FILE
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))  # scans at once never share one
    return path
