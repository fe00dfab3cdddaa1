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
FileNotFoundError, which the store's callers treat as "absent".
"""

from __future__ import annotations

import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path, PurePosixPath
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
        return ObjectLocation(_bucket(bucket), prefix.strip("/"))
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
        out = []
        fd = os.open(self._path, os.O_RDONLY)
        try:
            for start, length in zip(starts, lengths, strict=True):
                buffer = bytearray(length)
                done = 0
                while done < length:
                    got = os.preadv(fd, [memoryview(buffer)[done:]], start + done)
                    if got == 0:
                        raise StoreError(
                            f"{self._path}: ends at {start + done} bytes, {length} read from "
                            f"{start} (truncated)"
                        )
                    done += got
                out.append(memoryview(buffer))
        finally:
            os.close(fd)
        return out

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


class _Bucket:
    """One obstore S3Store per bucket and process (its client keeps connections open)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @cached_property
    def store(self) -> Any:
        from obstore.store import S3Store

        client = {
            "timeout": OBJECT_REQUEST_TIMEOUT,
            "connect_timeout": "10s",
            # passing client options turns off obstore's own reading of AWS_ALLOW_HTTP
            "allow_http": os.environ.get("AWS_ALLOW_HTTP", "").lower() == "true",
        }
        retry = {
            "max_retries": OBJECT_RETRIES,
            "retry_timeout": OBJECT_RETRY_TIMEOUT,
            "backoff": {
                "init_backoff": OBJECT_BACKOFF[0],
                "max_backoff": OBJECT_BACKOFF[1],
                "base": 2,
            },
        }
        try:
            return S3Store(self.bucket, client_options=client, retry_config=retry)
        except Exception as exc:  # noqa: BLE001 - obstore's configuration errors
            raise StoreIOError(f"s3://{self.bucket}: {describe_object_error(exc)}") from None

    def __getstate__(self) -> dict[str, Any]:  # sent to Ray workers: they build their own client
        return {"bucket": self.bucket}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.bucket = state["bucket"]


_BUCKETS: dict[tuple[str, ...], _Bucket] = {}
_CONFIG_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ALLOW_HTTP",
    *CREDENTIAL_VARIABLES,
)


def _bucket(name: str) -> _Bucket:
    """The bucket's client for the configuration in the environment now (a changed variable,
    e.g. rotated credentials, gets a new client)."""
    key = (name, *(os.environ.get(v, "") for v in _CONFIG_VARIABLES))
    if key not in _BUCKETS:
        _BUCKETS[key] = _Bucket(name)
    return _BUCKETS[key]


class ObjectLocation(Location):
    """A key (or key prefix, for a directory) in an S3 bucket."""

    def __init__(self, bucket: _Bucket | str, key: str) -> None:
        self._bucket = _bucket(bucket) if isinstance(bucket, str) else bucket
        self._key = str(PurePosixPath("/" + key))[1:] if key else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_object_location, (self._bucket.bucket, self._key))

    @property
    def url(self) -> str:
        return f"s3://{self._bucket.bucket}/{self._key}".rstrip("/")

    @property
    def name(self) -> str:
        return PurePosixPath(self._key).name

    @property
    def parent(self) -> ObjectLocation:
        parent = str(PurePosixPath(self._key).parent)
        return ObjectLocation(self._bucket, "" if parent == "." else parent)

    def __truediv__(self, name: str) -> ObjectLocation:
        return ObjectLocation(self._bucket, f"{self._key}/{name}" if self._key else name)

    def read_bytes(self) -> bytes:
        import obstore

        return bytes(self._call(lambda s: obstore.get(s, self._key).bytes()))

    def read_ranges(self, starts: Sequence[int], lengths: Sequence[int]) -> list[memoryview]:
        import obstore

        if not starts:
            return []
        got = self._call(
            lambda s: obstore.get_ranges(s, self._key, starts=list(starts), lengths=list(lengths))
        )
        return [memoryview(b) for b in got]

    def write_bytes(self, data: bytes | memoryview | Sequence[Any]) -> None:
        import obstore

        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = b"".join(bytes(part) for part in data)  # one PUT: the object appears whole
        self._call(lambda s: obstore.put(s, self._key, data, use_multipart=False))

    def create_bytes(self, data: bytes | memoryview) -> bool:
        """A conditional PUT. A retried PUT whose first try landed answers 'exists' although
        this call wrote it; the caller's data carries a nonce it can read back (commit.py)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            self._call(lambda s: obstore.put(s, self._key, data, mode="create"), passthrough=True)
        except (AlreadyExistsError, PreconditionError):
            return False
        return True

    def exists(self) -> bool:
        return self.size() is not None

    def size(self) -> int | None:
        import obstore

        try:
            return int(self._call(lambda s: obstore.head(s, self._key))["size"])
        except FileNotFoundError:
            return None

    def delete(self) -> None:
        import obstore

        self._call(lambda s: obstore.delete(s, self._key))

    def children(self) -> list[str]:
        import obstore

        prefix = f"{self._key}/" if self._key else None
        listing = self._call(lambda s: obstore.list_with_delimiter(s, prefix=prefix))
        names = [PurePosixPath(p).name for p in listing["common_prefixes"]]
        names += [PurePosixPath(o["path"]).name for o in listing["objects"]]
        return sorted(set(names))

    def walk(self) -> list[tuple[str, int]]:
        import obstore

        prefix = f"{self._key}/" if self._key else None
        found = []

        def collect(store: Any) -> None:
            for batch in obstore.list(store, prefix=prefix):
                for meta in batch:
                    found.append((meta["path"][len(prefix or "") :], int(meta["size"])))

        self._call(collect)
        return found

    def _call(self, request: Any, passthrough: bool = False) -> Any:
        """Run `request(store)`; obstore's errors become one-line StoreIOError (a missing object
        stays FileNotFoundError; with `passthrough`, conflicts of conditional writes pass)."""
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            return request(self._bucket.store)
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise StoreIOError(
                    f"feature store {self.url}: bucket {self._bucket.bucket!r} does not exist"
                ) from None
            raise FileNotFoundError(self.url) from None
        except (AlreadyExistsError, PreconditionError):
            if passthrough:
                raise
            raise StoreIOError(
                f"feature store {self.url}: a conditional write found it changed"
            ) from None
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - every obstore error is this one line
            raise StoreIOError(f"feature store {self.url}: {describe_object_error(exc)}") from None


def _object_location(bucket: str, key: str) -> ObjectLocation:
    return ObjectLocation(_bucket(bucket), key)


def describe_object_error(exc: BaseException) -> str:
    """One line on why an object-store request failed, without credentials or the server's
    response body (which can quote the access key id)."""
    text = str(exc).split("\n\nDebug source")[0]
    code = re.search(r"<Code>([^<]+)</Code>", text)
    status = re.search(r"status code: (\d{3}[^:<]*)", text)
    retries = re.search(r"after (\d+) retries", text)
    after = f" (after {retries.group(1)} retries)" if retries else ""
    name = type(exc).__name__
    if name == "PermissionDeniedError" or (code and "AccessKey" in code.group(1)):
        why = f" ({code.group(1)})" if code else ""
        return f"access denied{why}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if "error sending request" in text or "ConnectionRefused" in str(exc):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "the S3 endpoint")
        return f"cannot reach the object store at {endpoint}{after}"
    if code or status:
        what = code.group(1) if code else ""
        return f"the object store answered {status.group(1).strip() if status else ''} {what}{after}".replace(
            "  ", " "
        )
    text = re.sub(r"<\?xml.*", "", text, flags=re.S)
    return _redact(" ".join(text.split()))[:300]


def _redact(text: str) -> str:
    for variable in CREDENTIAL_VARIABLES:
        value = os.environ.get(variable)
        if value:
            text = text.replace(value, "***")
    return text
