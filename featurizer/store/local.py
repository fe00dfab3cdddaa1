"""A store on a local filesystem (featurizer.store.location's interface). Every write goes to a
temp file beside the target, is fsynced, then renamed into place (replace) or linked
(create-only: link() fails on an existing name), and the directory is fsynced: readers see the
old bytes or the new, never a part, and a crash leaves at most a hidden temp file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from featurizer.errors import StoreError
from featurizer.store.location import Location, ObjectInfo, parts_of


class LocalLocation(Location):
    """A path on a local filesystem (see the module docstring for how it writes)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    @property
    def url(self) -> str:
        return str(self._path)

    @property
    def address(self) -> str:
        return str(self._path.resolve())

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
            _write_synced(tmp, data)
            os.replace(tmp, self._path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_path(self._path.parent, directory=True)

    def create_bytes(self, data: bytes | memoryview | Sequence[Any]) -> bool:
        tmp = self._temp()
        try:
            _write_synced(tmp, data)
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

    def stat(self) -> ObjectInfo | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(self._path.name, st.st_size, st.st_mtime_ns / 1e9)

    def delete(self) -> None:
        self._path.unlink(missing_ok=True)

    def children(self, after: str | None = None) -> list[str]:
        try:
            names = sorted(entry.name for entry in os.scandir(self._path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return names if after is None else [n for n in names if n > after]

    def pages(self, size: int = 1000) -> Iterator[list[ObjectInfo]]:
        try:
            entries = os.scandir(self._path)
        except (FileNotFoundError, NotADirectoryError):
            return
        page: list[ObjectInfo] = []
        with entries:
            for entry in entries:  # directory order: a directory of millions is never sorted
                try:
                    st = entry.stat()
                except OSError:  # gone since listed, or a dangling link: still listed
                    page.append(ObjectInfo(entry.name, -1, 0.0))
                else:
                    page.append(ObjectInfo(entry.name, st.st_size, st.st_mtime))
                if len(page) == size:
                    yield page
                    page = []
        if page:
            yield page

    def listing(self) -> list[tuple[str, int, float]]:
        if not self._path.is_dir():
            return []
        found = []
        for f in self._path.rglob("*"):
            try:
                st = f.stat()
            except FileNotFoundError:  # deleted while listed
                continue
            if f.is_file():
                found.append((str(f.relative_to(self._path)), st.st_size, st.st_mtime))
        return found

    def _temp(self) -> Path:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        return self._path.with_name(f".{self._path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _write_synced(tmp: Path, data: bytes | memoryview | Sequence[Any]) -> None:
    with open(tmp, "wb") as f:
        for part in parts_of(data):
            f.write(part)
        f.flush()
        os.fsync(f.fileno())


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
