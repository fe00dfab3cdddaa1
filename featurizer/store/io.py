"""The small durable writes and raw reads the store's commit protocol is made of, on a local
filesystem: atomic replacement (write-temp, fsync, rename, fsync-dir), flushing written chunk
files, reading a chunk file straight into a buffer, and a cheap "did this file change"."""

from __future__ import annotations

import ctypes
import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurizer.store.layout import ARRAY_NAME, FEATURES_DIR, SCALES_NAME, chunk_path, open_array


def read_chunk(path: Path | str, buffer: memoryview) -> str:
    """Read the chunk file at `path` into `buffer` (a byte view of one row). Returns "" when the
    file held exactly len(buffer) bytes, now in `buffer`; otherwise what is wrong with it, as
    words that follow the file's name ("is missing", "holds 50 bytes, expected 49152")."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "is missing"
    try:
        size = os.fstat(fd).st_size
        if size != len(buffer):
            kind = "truncated" if size < len(buffer) else "too long"
            return f"holds {size} bytes, expected {len(buffer)} ({kind})"
        done = 0
        while done < size:
            got = os.readv(fd, [buffer[done:]])
            if got == 0:  # shrunk while being read
                return f"ended after {done} of {size} bytes"
            done += got
        return ""
    finally:
        os.close(fd)


def publish_table(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` atomically (see atomic_write_bytes)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-temp, fsync, rename, fsync-dir: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent, directory=True)


def sync_rows(path: Path, rows: list[int]) -> None:
    """Make the chunk files of `rows` durable. On Linux one syncfs(2) flushes the whole
    filesystem the store lives on (also the pages other processes, the actors, wrote); elsewhere
    each chunk file and its directory is fsynced."""
    if _syncfs(path):
        return
    for name in (ARRAY_NAME, SCALES_NAME):  # scales: int8 versions only
        array_dir = path / FEATURES_DIR / name
        if not array_dir.is_dir():
            continue
        array = open_array(path, mode="r", name=name)
        for row in rows:
            chunk = chunk_path(array_dir, array, row)
            if chunk.exists():
                fsync_path(chunk)
                fsync_path(chunk.parent, directory=True)


def _syncfs(path: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            return libc.syncfs(fd) == 0
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return False


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_key(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size) of a file, None when absent: a cheap "did it change"."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def now() -> datetime:
    return datetime.now(timezone.utc)
