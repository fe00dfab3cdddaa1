"""Reading rows out of format-2 shard objects (featurizer.store.layout): a shard's rows by byte
ranges, one request per shard and array for the rows asked of it, and a row's offset from the
shard's own index where the store's index does not give it (a row no commit names). ShardRows
is the row backend FeatureStore reads format 2 through (format 1's: legacy.LegacyRows)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from featurizer.errors import StoreError
from featurizer.store.layout import ShardGeometry
from featurizer.store.location import Location


def read_sharded(
    version: Location,
    geoms: list[ShardGeometry],
    rows: list[int],
    offsets: Mapping[int, int | None],
    outs: list[np.ndarray],
) -> dict[int, str]:
    """Format 2: outs[g][i] <- row rows[i] of geometry g, one ranged read per shard object and
    array (nearby rows in one request); row -> problem for rows that could not be read ("is
    missing": not in its shard, or its shard never written)."""
    problems: dict[int, str] = {}
    features = geoms[-1]
    by_shard: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        if offsets.get(row) is None:
            problems[row] = "is missing"
        else:
            by_shard.setdefault(features.shard_of(row), []).append(i)
    for shard, members in by_shard.items():
        for g, out in zip(geoms, outs, strict=True):
            shard_object = version / g.key(shard)
            positions = [int(offsets[rows[i]]) // features.row_bytes for i in members]  # type: ignore[arg-type]
            outs_of = [memoryview(out[i]).cast("B") for i in members]
            try:
                shard_object.read_ranges_into([p * g.row_bytes for p in positions], outs_of)
            except FileNotFoundError:
                for i in members:
                    problems.setdefault(rows[i], f"shard object {shard_object} is missing")
            except StoreError as exc:
                for i in members:
                    problems.setdefault(rows[i], f"shard object {shard_object}: {exc}")
    return problems


def shard_offsets(
    version: Location, features: ShardGeometry, known: Mapping[int, int | None]
) -> dict[int, int | None]:
    """`known` (row -> its offset in its features shard, None where the index does not say)
    completed from the shards' own indexes; None where a shard does not hold the row."""
    offsets = dict(known)
    unknown = [r for r, offset in offsets.items() if offset is None]
    for shard in {features.shard_of(r) for r in unknown}:
        shard_object = version / features.key(shard)
        size = shard_object.size()
        if size is None or size < features.index_bytes:
            continue
        try:
            slots = features.parse_index(
                shard_object.read_range(size - features.index_bytes, features.index_bytes)
            )
        except ValueError:
            continue
        for r in unknown:
            if features.shard_of(r) == shard and r % features.rows in slots:
                offsets[r] = slots[r % features.rows][0]
    return offsets


class ShardRows:
    """The rows of a format-2 version: `metadata(name)` gives an array's zarr.json."""

    def __init__(
        self, version: Location, geoms: list[ShardGeometry], metadata: Callable[[str], Any]
    ) -> None:
        self.version, self.geoms, self._metadata = version, geoms, metadata

    @property
    def n_rows(self) -> int:
        """Rows allocated (the array's zarr.json shape)."""
        return int(self._metadata(self.geoms[-1].name)["shape"][0])

    def where(self, row: int) -> str:
        return " and ".join(
            str(self.version / g.key(g.shard_of(row))) for g in reversed(self.geoms)
        )

    def read(
        self, rows: list[int], offsets: Mapping[int, int | None], outs: list[np.ndarray]
    ) -> dict[int, str]:
        """outs[g][i] <- row rows[i] (offsets: each row's offset in its features shard from the
        index, None where it gives none); row -> what is wrong for rows that could not be read."""
        return read_sharded(
            self.version,
            self.geoms,
            rows,
            shard_offsets(self.version, self.geoms[-1], offsets),
            outs,
        )
