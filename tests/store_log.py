"""Test machinery for a version's index log (featurizer.store.log): commit crafted entries
through the log's own append, as a buggy or hostile writer would, and read what is committed."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from featurizer.store import Location, location, log

DELTA_SCHEMA = pa.schema([f for f in log.ENTRY_SCHEMA if f.name != "seq"])


def commit_entries(version: Location | str, entries: list[dict[str, Any]]) -> log.Head:
    """Commit `entries` (an item's index fields, with `row` or `stage`) as the version's next
    delta; returns the head after it."""
    version = location(version)
    head = log.read_head(version)
    assert head is not None, f"{version} has no index"
    rows = [{name: entry.get(name) for name in DELTA_SCHEMA.names} for entry in entries]
    return log.append(head, pa.Table.from_pylist(rows, schema=DELTA_SCHEMA))


def committed(version: Location | str) -> list[dict[str, Any]]:
    """The committed entries (rows and failures) as dicts, sorted by item."""
    head = log.read_head(location(version))
    assert head is not None
    return log.read_entries(head).to_pylist()
