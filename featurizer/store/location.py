"""Where a store lives, as one small interface shaped like pathlib: a Location names a directory
or an object, ``/`` joins, and the operations are whole-object reads and writes, byte ranges,
create-only writes and listings; nothing renames (object stores cannot). Two backends implement
it: featurizer.store.local (a directory on a local filesystem) and featurizer.store.s3 (a prefix
in an S3 bucket); featurizer.store.address turns what a user wrote into one of them.

Both promise the same: a written object appears whole or not at all (readers see the old bytes
or the new, never a part), a create-only write succeeds for exactly one writer, and a missing
object is FileNotFoundError, which the store's callers treat as "absent". Every other failure of
the storage is a one-line StoreIOError naming the object and the cause, never a credential.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from featurizer.errors import StoreError


class StoreIOError(StoreError):
    """The storage under a store failed a request (after its retries): one line, naming it."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing says of an object: its name below the directory, size, modification time
    (seconds since the epoch) and, on an object store, its ETag (a new one for new content)."""

    name: str
    size: int
    modified: float
    e_tag: str | None = None


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
    def address(self) -> str:
        """How records and run tags name it, the same from any working directory: the
        absolute local path, or s3://bucket/key."""
        return self.url

    @property
    def is_local(self) -> bool:
        return False

    @property
    def path(self) -> Any:
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
    def create_bytes(self, data: bytes | memoryview | Sequence[Any]) -> bool:
        """Write the object only if it does not exist (a sequence of buffers is written as their
        concatenation): True if this call created it, False if it existed."""

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def size(self) -> int | None:
        """The object's size in bytes, None when absent."""

    @abstractmethod
    def stat(self) -> ObjectInfo | None:
        """What the storage says of the object (size, modification time, ETag on an object
        store) without reading it; None when absent."""

    @abstractmethod
    def delete(self) -> None:
        """Remove the object (nothing when absent)."""

    # -- directories ---------------------------------------------------------------------------

    @abstractmethod
    def children(self, after: str | None = None) -> list[str]:
        """Names directly below this directory (objects and sub-directories), sorted; with
        `after`, only the names that sort after it (an object store lists from there)."""

    def walk(self) -> list[tuple[str, int]]:
        """(key relative to this directory, size) of every object below it."""
        return [(key, size) for key, size, _ in self.listing()]

    @abstractmethod
    def listing(self) -> list[tuple[str, int, float]]:
        """(key relative to this directory, size, modified: seconds since the epoch) of every
        object below it."""

    @abstractmethod
    def pages(self, size: int = 1000) -> Iterator[list[ObjectInfo]]:
        """The objects directly below this directory, `size` at a time (in name order on an
        object store, directory order on a disk): a listing of millions holds one page."""

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


def parts_of(data: bytes | memoryview | Sequence[Any]) -> list[Any]:
    """A write's buffers: one bytes-like object, or a sequence of them written one after the
    other."""
    return [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
