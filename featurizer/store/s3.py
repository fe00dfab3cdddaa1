"""A store in an S3 bucket (``s3://bucket/prefix``) through obstore: whole objects, byte ranges,
create-only writes (If-None-Match: *) and listings (featurizer.store.location's interface).

Configuration is only the standard variables, read from the environment when a bucket is first
used: AWS_ENDPOINT_URL (or AWS_ENDPOINT), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
AWS_SESSION_TOKEN, and AWS_ALLOW_HTTP=true for a plain-HTTP server. A malformed endpoint is
refused in one line before any request (obstore would panic on it), and so is one carrying a
user name or password: S3 signs requests with the keys, and a URL's password would otherwise be
quoted by every error that names the endpoint.

Timeouts: a request must connect within CONNECT_TIMEOUT and finish within SMALL_TIMEOUT when it
moves at most SMALL_BYTES (metadata, the index, a row or a few), within LARGE_TIMEOUT otherwise
(a whole shard, 176 MB at D = 3584). Requests are retried on connection errors, timeouts and
5xx answers, with exponential backoff, at most RETRIES times and not after RETRY_TIMEOUT, so a
server that accepts connections and never answers is one line within about half a minute.

Errors become one-line StoreIOError naming the object's URL and the cause, without credentials,
URLs' user information or the server's response body (which can quote the access key id).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from featurizer.errors import StoreError
from featurizer.store.location import Location, ObjectInfo, StoreIOError, parts_of

RETRIES = 4  # per request, after the first try
BACKOFF = (timedelta(milliseconds=100), timedelta(seconds=4))  # first, largest wait
RETRY_TIMEOUT = timedelta(seconds=15)  # no retry starts after this long
CONNECT_TIMEOUT = timedelta(seconds=5)
SMALL_TIMEOUT = timedelta(seconds=10)  # a request of at most SMALL_BYTES, or of unknown size
LARGE_TIMEOUT = timedelta(seconds=300)  # a larger one: at least ~0.6 MB/s for a 176 MB shard
SMALL_BYTES = 8 << 20
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT")
_CONFIG_VARIABLES = (*ENDPOINT_VARIABLES, "AWS_REGION", "AWS_ALLOW_HTTP", *CREDENTIAL_VARIABLES)


def check_endpoint() -> None:
    """Refuse a malformed AWS_ENDPOINT_URL, or one with a user name or password, in one line
    that quotes none of it beyond its scheme and host."""
    for variable in ENDPOINT_VARIABLES:
        value = os.environ.get(variable)
        if value:
            problem = _endpoint_problem(value)
            if problem:
                raise StoreError(f"{variable}: {problem}")


def _endpoint_problem(value: str) -> str:
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "holds spaces or control characters; expected http(s)://host[:port]"
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError: out of range or not a number
    except ValueError as exc:
        return f"is not a URL ({exc}); expected http(s)://host[:port]"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s)://host[:port] URL"
    if parts.username is not None or parts.password is not None:
        host = parts.hostname + (f":{port}" if port else "")
        return (
            f"holds a user name or password ({parts.scheme}://***@{host}); S3 requests are "
            "signed with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: take them out of the URL"
        )
    return ""


class _Bucket:
    """The obstore clients of one bucket in this process (they keep connections open): one for
    small requests, one for large (module docstring)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @cached_property
    def small(self) -> Any:
        return self._client(SMALL_TIMEOUT)

    @cached_property
    def large(self) -> Any:
        return self._client(LARGE_TIMEOUT)

    def _client(self, timeout: timedelta) -> Any:
        from obstore.store import S3Store

        check_endpoint()
        client = {
            "timeout": timeout,
            "connect_timeout": CONNECT_TIMEOUT,
            # passing client options turns off obstore's own reading of AWS_ALLOW_HTTP
            "allow_http": os.environ.get("AWS_ALLOW_HTTP", "").lower() == "true",
        }
        retry = {
            "max_retries": RETRIES,
            "retry_timeout": RETRY_TIMEOUT,
            "backoff": {"init_backoff": BACKOFF[0], "max_backoff": BACKOFF[1], "base": 2},
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


def _bucket(name: str) -> _Bucket:
    """The bucket's clients for the configuration in the environment now (a changed variable,
    e.g. rotated credentials, gets new clients)."""
    key = (name, *(os.environ.get(v, "") for v in _CONFIG_VARIABLES))
    if key not in _BUCKETS:
        _BUCKETS[key] = _Bucket(name)
    return _BUCKETS[key]


class ObjectLocation(Location):
    """A key (or key prefix, for a directory) in an S3 bucket; `what` it holds ("feature
    store", "dataset") names it in errors."""

    def __init__(self, bucket: _Bucket | str, key: str, what: str = "feature store") -> None:
        self._bucket = _bucket(bucket) if isinstance(bucket, str) else bucket
        self._key = str(PurePosixPath("/" + key))[1:] if key else ""
        self._what = what

    def __reduce__(self) -> tuple[Any, ...]:
        return (_object_location, (self._bucket.bucket, self._key, self._what))

    @property
    def url(self) -> str:
        return f"s3://{self._bucket.bucket}/{self._key}".rstrip("/")

    @property
    def name(self) -> str:
        return PurePosixPath(self._key).name

    @property
    def parent(self) -> ObjectLocation:
        parent = str(PurePosixPath(self._key).parent)
        return ObjectLocation(self._bucket, "" if parent == "." else parent, self._what)

    def __truediv__(self, name: str) -> ObjectLocation:
        key = f"{self._key}/{name}" if self._key else name
        return ObjectLocation(self._bucket, key, self._what)

    def read_bytes(self) -> bytes:
        import obstore

        return bytes(self._call(lambda s: obstore.get(s, self._key).bytes()))

    def read_ranges(self, starts: Sequence[int], lengths: Sequence[int]) -> list[memoryview]:
        import obstore

        if not starts:
            return []
        got = self._call(
            lambda s: obstore.get_ranges(s, self._key, starts=list(starts), lengths=list(lengths)),
            size=sum(lengths),
        )
        return [memoryview(b) for b in got]

    def write_bytes(self, data: bytes | memoryview | Sequence[Any]) -> None:
        import obstore

        parts = parts_of(data)  # obstore joins the parts once; one PUT: the object appears whole
        self._call(
            lambda s: obstore.put(s, self._key, parts, use_multipart=False), size=_size(parts)
        )

    def create_bytes(self, data: bytes | memoryview | Sequence[Any]) -> bool:
        """A conditional PUT. A retried PUT whose first try landed answers 'exists' although
        this call wrote it; callers whose objects must tell "mine" from "another writer's" put a
        nonce in them and read it back (featurizer.store.log)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        parts = parts_of(data)
        try:
            self._call(
                lambda s: obstore.put(s, self._key, parts, mode="create", use_multipart=False),
                size=_size(parts),
                conflicts=True,
            )
        except (AlreadyExistsError, PreconditionError):
            return False
        return True

    def create_versioned(self, data: bytes) -> str | None:
        """create_bytes() that returns the new object's ETag; None when it existed."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            put = self._call(
                lambda s: obstore.put(s, self._key, data, mode="create"), conflicts=True
            )
        except (AlreadyExistsError, PreconditionError):
            return None
        return str(put["e_tag"])

    def read_versioned(self) -> tuple[bytes, str]:
        """The whole object and its ETag; FileNotFoundError when absent."""
        import obstore

        def get(store: Any) -> tuple[bytes, str]:
            got = obstore.get(store, self._key)
            return bytes(got.bytes()), str(got.meta["e_tag"])

        return self._call(get)

    def replace_if(self, data: bytes, e_tag: str) -> str | None:
        """Replace the object only if its ETag is still `e_tag` (If-Match): its new ETag, or
        None when it changed or is gone."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            put = self._call(
                lambda s: obstore.put(s, self._key, data, mode={"e_tag": e_tag}), conflicts=True
            )
        except (AlreadyExistsError, PreconditionError, FileNotFoundError):
            return None
        return str(put["e_tag"])

    def exists(self) -> bool:
        return self.size() is not None

    def size(self) -> int | None:
        import obstore

        try:
            return int(self._call(lambda s: obstore.head(s, self._key))["size"])
        except FileNotFoundError:
            return None

    def stat(self) -> ObjectInfo | None:
        import obstore

        try:
            meta = self._call(lambda s: obstore.head(s, self._key))
        except FileNotFoundError:
            return None
        return ObjectInfo(
            self.name, int(meta["size"]), meta["last_modified"].timestamp(), meta.get("e_tag")
        )

    def delete(self) -> None:
        import obstore

        self._call(lambda s: obstore.delete(s, self._key))

    def children(self, after: str | None = None) -> list[str]:
        import obstore

        prefix = f"{self._key}/" if self._key else ""
        if after is not None:  # a listing from a key on: pages after it only (flat directories)
            names: set[str] = set()

            def collect(store: Any) -> None:
                for batch in obstore.list(store, prefix=prefix or None, offset=prefix + after):
                    names.update(m["path"][len(prefix) :].split("/")[0] for m in batch)

            self._call(collect)
            return sorted(n for n in names if n > after)
        listing = self._call(lambda s: obstore.list_with_delimiter(s, prefix=prefix or None))
        found = [PurePosixPath(p).name for p in listing["common_prefixes"]]
        found += [PurePosixPath(o["path"]).name for o in listing["objects"]]
        return sorted(set(found))

    def pages(self, size: int = 1000) -> Iterator[list[ObjectInfo]]:
        import obstore

        prefix = f"{self._key}/" if self._key else ""
        try:
            batches = obstore.list(self._bucket.small, prefix=prefix or None, chunk_size=size)
            for batch in batches:
                page = [
                    ObjectInfo(
                        meta["path"][len(prefix) :],
                        int(meta["size"]),
                        meta["last_modified"].timestamp(),
                        meta.get("e_tag"),
                    )
                    for meta in batch
                    if "/" not in meta["path"][len(prefix) :]  # directly below only
                ]
                if page:
                    yield page
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise self._failure(exc) from None
            return  # nothing under the prefix
        except (StoreError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every obstore error is this one line
            raise self._failure(exc) from None

    def listing(self) -> list[tuple[str, int, float]]:
        import obstore

        prefix = f"{self._key}/" if self._key else None
        found = []

        def collect(store: Any) -> None:
            for batch in obstore.list(store, prefix=prefix):
                for meta in batch:
                    found.append(
                        (
                            meta["path"][len(prefix or "") :],
                            int(meta["size"]),
                            meta["last_modified"].timestamp(),
                        )
                    )

        self._call(collect)
        return found

    def _call(self, request: Any, size: int = 0, conflicts: bool = False) -> Any:
        """Run `request(client)` on the client for a request moving `size` bytes; obstore's
        errors become one-line StoreIOError (a missing object stays FileNotFoundError; with
        `conflicts`, a create-only write's conflict passes through)."""
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        client = self._bucket.large if size > SMALL_BYTES else self._bucket.small
        try:
            return request(client)
        except FileNotFoundError as exc:
            # obstore has one NotFoundError for a missing key and a missing bucket; only S3's
            # error code tells them apart
            if "NoSuchBucket" in str(exc):
                raise self._failure(exc) from None
            raise FileNotFoundError(self.url) from None
        except (AlreadyExistsError, PreconditionError):
            if conflicts:
                raise
            raise StoreIOError(
                f"{self._what} {self.url}: a conditional write found it changed"
            ) from None
        except StoreError:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every obstore error (a Rust panic included)
            raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> StoreIOError:
        """An obstore error as the one line a user sees, naming what this object holds."""
        if "NoSuchBucket" in str(exc):  # a missing bucket reads the same from every request
            return StoreIOError(
                f"{self._what} {self.url}: bucket {self._bucket.bucket!r} does not exist"
            )
        return StoreIOError(f"{self._what} {self.url}: {describe_object_error(exc)}")


def _object_location(bucket: str, key: str, what: str = "feature store") -> ObjectLocation:
    return ObjectLocation(_bucket(bucket), key, what)


def _size(parts: list[Any]) -> int:
    return sum(memoryview(p).nbytes for p in parts)


# S3's error codes for a request the credentials do not allow (a listing's error has no
# obstore class of its own: its code tells)
DENIED_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
     "ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled"}
)  # fmt: skip


def describe_object_error(exc: BaseException) -> str:
    """One line on why an object-store request failed, without credentials, URLs' user
    information or the server's response body (which can quote the access key id)."""
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    text = str(exc).split("\n\nDebug source")[0]
    debug = str(exc)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    status = re.search(r"status code: (\d{3}[^:<]*)", text)
    retries = re.search(r"after (\d+) retries", text)
    after = f" (after {retries.group(1)} retries)" if retries else ""
    endpoint = redact(_configured_endpoint() or "the S3 endpoint")
    if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)) or (
        code and code.group(1) in DENIED_CODES
    ):
        why = f" ({code.group(1)})" if code else ""
        return f"access denied{why}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if "kind: Timeout" in debug or "TimedOut" in debug:
        return f"the object store at {endpoint} did not answer in time{after}"
    if "error sending request" in text or "ConnectionRefused" in debug:
        return f"cannot reach the object store at {endpoint}{after}"
    if code or status:
        answer = " ".join(m.group(1).strip() for m in (status, code) if m)
        return f"the object store answered {answer}{after}"
    text = re.sub(r"<\?xml.*", "", text, flags=re.S)
    return redact(" ".join(text.split()))[:300]


def _configured_endpoint() -> str | None:
    return next((os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)), None)


def redact(text: str) -> str:
    """`text` without the values of the credential variables or the user information of any
    URL in it."""
    for variable in CREDENTIAL_VARIABLES:
        value = os.environ.get(variable)
        if value:
            text = text.replace(value, "***")
    return re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*@", r"\1***@", text)
