"""Small local-filesystem helpers of the store: atomic replacement (write-temp, fsync, rename,
fsync-dir), fsync, reading a file straight into a buffer, and a cheap "did this file change"."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path


def read_chunk(path: Path | str, buffer: memoryview) -> str:
    """Read the file at `path` (a format-1 chunk file) into `buffer` (a byte view of one row). Returns "" when the
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
