"""Where a dataset lives: a local directory or an S3 prefix (``s3://bucket/prefix``, configured
by the same AWS variables as the store), holding pairs.csv, titles.csv and videos/<item>.mp4.

A video's identity is what its storage already knows, so an unchanged video is never read to
decide that it is unchanged: on S3 its size and ETag (a new ETag for new content); on a local
disk the sha256 of its bytes, kept by the catalog beside its size and mtime (only a file whose
size or mtime moved is hashed again). The listing comes a page at a time (VIDEO_PAGE videos).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from featurizer.decode import VideoBytes
from featurizer.store import Location, StoreError, location

VIDEOS = "videos"
VIDEO_SUFFIX = ".mp4"
VIDEO_PAGE = 1000
PAGE_SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("size", pa.int64()),  # -1: listed but unreadable (a dangling link)
        ("modified", pa.float64()),  # seconds since the epoch
        ("e_tag", pa.string()),  # object stores: a new one for new content; null on a disk
    ]
)


def dataset_location(dataset: str | os.PathLike[str] | Location) -> Location:
    """The dataset's Location; StoreError (one line naming the value) for a bad address."""
    return location(dataset, what="dataset")


def is_remote(dataset: str | os.PathLike[str] | Location) -> bool:
    return not dataset_location(dataset).is_local


def video_pages(
    dataset: str | os.PathLike[str] | Location, size: int = VIDEO_PAGE
) -> Iterator[pa.Table]:
    """The dataset's videos (`videos/<item>.mp4`), a page (PAGE_SCHEMA) at a time; hidden
    files and other suffixes are skipped. Nothing is read but the listing."""
    videos = dataset_location(dataset) / VIDEOS
    for page in videos.pages(size):
        kept = [o for o in page if o.name.endswith(VIDEO_SUFFIX) and not o.name.startswith(".")]
        if kept:
            yield pa.table(
                {
                    "item": [o.name[: -len(VIDEO_SUFFIX)] for o in kept],
                    "size": [o.size for o in kept],
                    "modified": [o.modified for o in kept],
                    "e_tag": [o.e_tag for o in kept],
                },
                schema=PAGE_SCHEMA,
            )


def object_identity(url: str, size: int, e_tag: str | None) -> str:
    """The source identity of a video in an object store (the index's `source_sha256`): a
    digest of where it is, its size and its ETag, so new content is a new identity."""
    return hashlib.sha256(f"{url}\n{size}\n{e_tag}".encode()).hexdigest()


def video_source(dataset: str | os.PathLike[str] | Location, item: str) -> str:
    """Where a worker reads the video of `item`: a local path, or its s3:// URL."""
    root = dataset_location(dataset)
    name = f"{item}{VIDEO_SUFFIX}"
    return str(root.path / VIDEOS / name) if root.is_local else (root / VIDEOS / name).url


def local_path(dataset: str | os.PathLike[str] | Location) -> Path | None:
    """The dataset's directory when it is on a local disk, else None."""
    root = dataset_location(dataset)
    return root.path if root.is_local else None


def fetch_video(source: str) -> Path | VideoBytes:
    """What the decoder reads for a catalog video: a local path as it is, an object's bytes
    fetched whole (by the Ray worker that decodes it, never by the driver). A missing object or
    a storage error raises StoreError, one line naming the object: that video's failure row."""
    if not source.startswith("s3://"):
        return Path(source)
    video = location(source, what="dataset")
    try:
        return VideoBytes(video.name, video.read_bytes())
    except FileNotFoundError:
        raise StoreError(
            f"{video.name}: not found at {source} (deleted since it was listed)"
        ) from None


def dataset_address(dataset: str | os.PathLike[str] | Location) -> str:
    """How a run records its dataset: a local directory as an absolute path, else its URL."""
    return dataset_location(dataset).address
