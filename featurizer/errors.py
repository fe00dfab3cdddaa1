"""The feature store's exceptions, and how their messages list items. A module of its own, free
of heavy imports, so the CLI can catch them without loading zarr."""

from __future__ import annotations

from collections.abc import Sequence


def shown(items: Sequence[str], limit: int = 5) -> str:
    """The first `limit` of `items` for a one-line message: "a, b, c and 4 more"."""
    return ", ".join(items[:limit]) + (
        f" and {len(items) - limit} more" if len(items) > limit else ""
    )


class StoreError(Exception):
    """A feature-store problem the user can act on; the message is one line naming the path."""


class StoreBusyError(StoreError):
    """Another process holds the writer lock of a store version."""


class MissingItemsError(StoreError, KeyError):
    """Items asked for that the committed index does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
