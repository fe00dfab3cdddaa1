"""A store's address as a user writes it, turned into a Location: ``s3://bucket/prefix`` (the
scheme in any case) or a local path. Anything else that looks like a URL (``s3:/bucket``,
``gs://bucket``) is refused in one line, never taken for a local directory named ``s3:``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from featurizer.errors import StoreError
from featurizer.store.location import Location

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# S3's rules (3 to 63 characters, lower-case letters, digits, dots and hyphens, a letter or
# digit at each end), with the upper case and underscores of legacy us-east-1 buckets
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")


def location(text: str | os.PathLike[str] | Location, what: str = "feature store") -> Location:
    """A Location from what a user wrote (see the module docstring); StoreError naming `what`
    and the value when it is not a store address."""
    if isinstance(text, Location):
        return text
    value = os.fspath(text)
    scheme = _SCHEME.match(value)
    if scheme:
        name, rest = scheme.group(1), value[scheme.end() :]
        if name.lower() == "s3":
            if not rest.startswith("//"):
                raise StoreError(f"{what} {value!r}: an S3 address is s3://bucket/prefix")
            return _s3(value, rest[2:], what)
        if rest.startswith("/"):
            raise StoreError(
                f"{what} {value!r}: {name}:// is not supported (a local path or s3://bucket/prefix)"
            )
    if not value or "\0" in value:
        raise StoreError(f"{what} {value!r}: not a path")
    from featurizer.store.local import LocalLocation

    return LocalLocation(Path(value))


def _s3(value: str, rest: str, what: str) -> Location:
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StoreError(f"{what} {value!r}: no bucket name (s3://bucket/prefix)")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise StoreError(
            f"{what} {value!r}: {bucket!r} is not an S3 bucket name (3 to 63 letters, digits, "
            "dots and hyphens)"
        )
    segments = [s for s in prefix.split("/") if s]
    if any(s in (".", "..") for s in segments) or any(
        ord(ch) < 32 or ord(ch) == 127 for ch in prefix
    ):
        raise StoreError(f"{what} {value!r}: the prefix holds '.', '..' or control characters")
    from featurizer.store.s3 import ObjectLocation

    return ObjectLocation(bucket, "/".join(segments), what)
