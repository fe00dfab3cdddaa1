"""Object-store locations (``s3://bucket/prefix``) through obstore: whole objects, byte ranges,
create-only writes (If-None-Match) and listings; retries with backoff on connection errors and
5xx answers; errors as one-line StoreIOError without credentials or response bodies. See
featurizer.store.location for the interface and the configuration (the standard AWS variables)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any

from featurizer.errors import StoreError
from featurizer.store.location import (
    CREDENTIAL_VARIABLES,
    OBJECT_BACKOFF,
    OBJECT_REQUEST_TIMEOUT,
    OBJECT_RETRIES,
    OBJECT_RETRY_TIMEOUT,
    Location,
    StoreIOError,
)


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
            data = list(data)  # obstore joins the parts once; one PUT: the object appears whole
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
        answer = " ".join(m.group(1).strip() for m in (status, code) if m)
        return f"the object store answered {answer}{after}"
    text = re.sub(r"<\?xml.*", "", text, flags=re.S)
    return _redact(" ".join(text.split()))[:300]


def _redact(text: str) -> str:
    for variable in CREDENTIAL_VARIABLES:
        value = os.environ.get(variable)
        if value:
            text = text.replace(value, "***")
    return text
