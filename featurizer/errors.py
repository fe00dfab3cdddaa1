"""The feature store's exceptions, and how messages are kept to one line: an exception's text
folded (`one_line`, the project's only one) and items listed (`shown`). A module of its own,
free of heavy imports, so the CLI can catch them without loading zarr."""

from __future__ import annotations

from collections.abc import Sequence


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's message as one line (whitespace and newlines collapsed; the exception's
    type where it has no message), cut at `limit` characters with "..." where one is given."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if limit is not None and len(text) > limit:
        return text[:limit] + "..."
    return text


def shown(items: Sequence[str], limit: int = 5) -> str:
    """The first `limit` of `items` for a one-line message: "a, b, c and 4 more"."""
    return ", ".join(items[:limit]) + (
        f" and {len(items) - limit} more" if len(items) > limit else ""
    )


class StoreError(Exception):
    """A feature-store problem the user can act on; the message is one line naming the path."""


class StoreBusyError(StoreError):
    """Another process holds the writer lock of a store version."""


class StoreFencedError(StoreBusyError):
    """This writer lost its version to another writer (its lease lapsed and was taken over, or
    a shard object it was to create exists): it stops before writing anything more."""


class ShardTakenError(StoreError):
    """A shard object a writer was to create exists already (another writer created it, or an
    earlier try of the same group did): its rows need a fresh shard."""


class MissingItemsError(StoreError, KeyError):
    """Items asked for that the committed index does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
