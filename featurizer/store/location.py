"""Where a store lives: a directory on a local filesystem, or a prefix in an object store bucket
(``s3://bucket/prefix``). One small interface over both, shaped like pathlib: a Location names a
directory or an object, ``/`` joins, and the operations are whole-object reads and writes, byte
ranges, create-only writes and listings; nothing renames (object stores cannot).

- Local: writes go to a temp file, are fsynced, then renamed into place (replace) or linked
  (create-only: link() fails on an existing name), and the directory is fsynced; readers see the
  old bytes or the new, never a part.
- S3 (obstore): an object appears whole when its PUT returns; create-only is a conditional PUT
  (If-None-Match: *). Configuration is only the standard variables, read by obstore from the
  environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
  AWS_SESSION_TOKEN, and AWS_ALLOW_HTTP=true for a local server. Requests are retried on
  connection errors and 5xx answers, with exponential backoff, at most OBJECT_RETRIES times.

Errors of the object store become one-line StoreIOError naming the object's URL and the cause,
with any credential and the server's response body left out; a missing object stays a
FileNotFoundError, which the store's callers treat as "absent". The object-store side is
featurizer.store.objectstore.
"""

from __future__ import annotations

import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from featurizer.errors import StoreError
from featurizer.store.io import fsync_path

OBJECT_RETRIES = 4  # per request, after the first try
OBJECT_BACKOFF = (timedelta(milliseconds=100), timedelta(seconds=4))  # first, largest wait
OBJECT_RETRY_TIMEOUT = timedelta(seconds=60)  # no retry starts after this long
OBJECT_REQUEST_TIMEOUT = "300s"  # one request, e.g. a 176 MB shard PUT
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class StoreIOError(StoreError):
    """The storage under a store failed a request (after its retries): one line, naming it."""


def location(text: str | os.PathLike[str] | Location) -> Location:
    """A store location from what a user wrote: ``s3://bucket/prefix`` or a local path."""
    if isinstance(text, Location):
        return text
    value = os.fspath(text)
    if value.startswith("s3://"):
        bucket, _, prefix = value[len("s3://") :].partition("/")
        if not bucket:
            raise StoreError(f"feature store {value!r}: no bucket name (s3://bucket/prefix)")
        from featurizer.store.objectstore import ObjectLocation

        return ObjectLocation(bucket, prefix.strip("/"))
    if re.match(r"^[a-z][a-z0-9+.-]*://", value):
        scheme = value.split("://")[0]
        raise StoreError(
            f"feature store {value!r}: {scheme}:// is not supported (a local path or s3://)"
        )
    return LocalLocation(Path(value))


class Location(ABC):
    """A directory or an object of a store (see the module docstring)."""

    @property
    @abstractmethod
    def url(self) -> str:
        """How messages name it: the local path, or s3://bucket/key. Never a credential."""

    @property
    @abstractmethod
    def name(self) -> str: ...

    @property
    @abstractmethod
    def parent(self) -> Location: ...

    @abstractmethod
    def __truediv__(self, name: str) -> Location: ...

    @property
    def is_local(self) -> bool:
        return False

    @property
    def path(self) -> Path:
        """The local path (local locations only)."""
        raise StoreError(f"{self.url} is not on a local filesystem")

    # -- objects -------------------------------------------------------------------------------

    @abstractmethod
    def read_bytes(self) -> bytes:
        """The whole object; FileNotFoundError when absent."""

    @abstractmethod
    def read_ranges(self, starts: Sequence[int], lengths: Sequence[int]) -> list[memoryview]:
        """Byte ranges of the object, in the order given (nearby ranges in one request)."""

    def read_range(self, start: int, length: int) -> memoryview:
        return self.read_ranges([start], [length])[0]

    def read_ranges_into(self, starts: Sequence[int], outs: Sequence[memoryview]) -> None:
        """Byte ranges of the object straight into `outs` (byte views, one per range, each
        as long as its range); StoreError when the object ends before a range does."""
        got = self.read_ranges(starts, [len(out) for out in outs])
        for start, data, out in zip(starts, got, outs, strict=True):
            if len(data) != len(out):
                raise StoreError(
                    f"{self.url}: ends at {start + len(data)} bytes, {len(out)} read from "
                    f"{start} (truncated)"
                )
            out[:] = data

    @abstractmethod
    def write_bytes(self, data: bytes | memoryview | Sequence[Any]) -> None:
        """Replace the object whole (a sequence of buffers is written as their concatenation);
        durable when this returns."""

    @abstractmethod
    def create_bytes(self, data: bytes | memoryview) -> bool:
        """Write the object only if it does not exist: True if this call created it."""

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def size(self) -> int | None:
        """The object's size in bytes, None when absent."""

    @abstractmethod
    def delete(self) -> None:
        """Remove the object (nothing when absent)."""

    # -- directories ---------------------------------------------------------------------------

    @abstractmethod
    def children(self) -> list[str]:
        """Names directly below this directory (objects and sub-directories), sorted."""

    @abstractmethod
    def walk(self) -> list[tuple[str, int]]:
        """(key relative to this directory, size) of every object below it."""

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


class LocalLocation(Location):
    """A path on a local filesystem (see the module docstring for how it writes)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    @property
    def url(self) -> str:
        return str(self._path)

    @property
    def name(self) -> str:
        return self._path.name

    @property
    def parent(self) -> LocalLocation:
        return LocalLocation(self._path.parent)

    def __truediv__(self, name: str) -> LocalLocation:
        return LocalLocation(self._path / name)

    @property
    def is_local(self) -> bool:
        return True

    @property
    def path(self) -> Path:
        return self._path

    def read_bytes(self) -> bytes:
        return self._path.read_bytes()

    def read_ranges(self, starts: Sequence[int], lengths: Sequence[int]) -> list[memoryview]:
        buffers = [memoryview(bytearray(length)) for length in lengths]
        self.read_ranges_into(starts, buffers)
        return buffers

    def read_ranges_into(self, starts: Sequence[int], outs: Sequence[memoryview]) -> None:
        """pread straight into the caller's buffers: no temporary (a fresh 2.75 MB buffer a row
        costs more in page faults than the read itself)."""
        fd = os.open(self._path, os.O_RDONLY)
        try:
            for start, out in zip(starts, outs, strict=True):
                done = 0
                while done < len(out):
                    got = os.preadv(fd, [out[done:]], start + done)
                    if got == 0:
                        raise StoreError(
                            f"{self._path}: ends at {start + done} bytes, {len(out)} read from "
                            f"{start} (truncated)"
                        )
                    done += got
        finally:
            os.close(fd)

    def write_bytes(self, data: bytes | memoryview | Sequence[Any]) -> None:
        tmp = self._temp()
        try:
            self._write_temp(tmp, data)
            os.replace(tmp, self._path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_path(self._path.parent, directory=True)

    def create_bytes(self, data: bytes | memoryview) -> bool:
        tmp = self._temp()
        try:
            self._write_temp(tmp, data)
            try:
                os.link(tmp, self._path)
            except FileExistsError:
                return False
        finally:
            tmp.unlink(missing_ok=True)
        fsync_path(self._path.parent, directory=True)
        return True

    def exists(self) -> bool:
        return self._path.exists()

    def size(self) -> int | None:
        try:
            return self._path.stat().st_size
        except FileNotFoundError:
            return None

    def delete(self) -> None:
        self._path.unlink(missing_ok=True)

    def children(self) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(self._path))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk(self) -> list[tuple[str, int]]:
        if not self._path.is_dir():
            return []
        return [
            (str(f.relative_to(self._path)), f.stat().st_size)
            for f in self._path.rglob("*")
            if f.is_file()
        ]

    def _temp(self) -> Path:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        return self._path.with_name(f".{self._path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    @staticmethod
    def _write_temp(tmp: Path, data: bytes | memoryview | Sequence[Any]) -> None:
        with open(tmp, "wb") as f:
            for part in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
