"""Store rows -> item features, under a byte budget.

recmodel never imports the feature store: `ItemFeatures` is what the caller hands over (each
catalog item's row, a function that reads rows, the row shape). `ItemFeatureBank` serves one
variant's view of them (its record's `view`: "last" keeps (L, D) of an item's (L, K, D), 1/K of
the bytes, so reducing on load keeps what is held small):

- hot rows: the items read most often (the caller's priority, e.g. training counts, since a
  step reads an item once per sequence it appears in) are read once, in row order, and held
  in memory up to `hot_bytes`; with a budget that holds every item, the store is read once;
- the rest are read from the store on each request, sorted by row, in chunks of about
  `read_chunk_bytes`, then put back in the order asked for.

A store of int8 rows (a compact view) gives `read_rows_int8` too: the `tokens` view then keeps
rows as stored, int8 values and a float16 scale per token, in memory and on their way to the
device, where `dequantize` makes them float16 (half the bytes read, held and moved).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ItemFeatures:
    """What the feature store gives training: per catalog item its store row (-1: no features:
    no video, or extraction failed), and a reader of rows."""

    item_rows: np.ndarray  # (n_items,) int64, -1 = no features
    read_rows: Callable[[np.ndarray], np.ndarray]  # rows (n,) -> (n, L, K, D) float16
    shape: tuple[int, int, int]  # (L, K, D)
    n_new: int  # G: the last G of the K rows of each layer are generated tokens
    # rows (n,) -> ((n, L, K, D) int8, (n, L, K) float16 scales), for a store of int8 rows
    read_rows_int8: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        self.item_rows = np.asarray(self.item_rows, dtype=np.int64)
        self.shape = tuple(int(s) for s in self.shape)  # type: ignore[assignment]


def view_shape(view: str, shape: tuple[int, int, int]) -> tuple[int, ...]:
    """One item's features in `view`, from its stored row shape (L, K, D)."""
    L, K, D = shape
    return {"tokens": (L, K, D), "mean": (L, D), "last": (L, D), "last_layer_last_token": (D,)}[
        view
    ]


def dequantize(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(..., L, K, D) int8 and (..., L, K) float16 per-token scales -> (..., L, K, D) float16."""
    return torch.mul(values, scales.unsqueeze(-1))


def reduce_features(x: np.ndarray, view: str) -> np.ndarray:
    """(n, L, K, D) float16 -> (n, *view_shape) float16."""
    if view == "tokens":
        return x
    if view == "mean":
        return x.mean(axis=2, dtype=np.float32).astype(np.float16)
    if view == "last":
        return x[:, :, -1]
    if view == "last_layer_last_token":
        return x[:, -1, -1]
    raise ValueError(f"unknown feature view {view!r}")


class ItemFeatureBank:
    """Features by catalog index for one variant's view (see the module docstring)."""

    def __init__(
        self,
        features: ItemFeatures,
        view: str,
        hot_bytes: int = 2 << 30,
        priority: np.ndarray | None = None,
        read_chunk_bytes: int = 64 << 20,
    ) -> None:
        self.features = features
        self.view = view
        self.view_shape = view_shape(view, features.shape)
        L, K, D = features.shape
        # rows kept as stored: int8 values and (L, K) float16 scales (see the module docstring)
        self.int8 = features.read_rows_int8 is not None and view == "tokens"
        self.scales_shape = (L, K)
        if self.int8:
            self.item_bytes = L * K * D + 2 * L * K
        else:
            self.item_bytes = 2 * math.prod(self.view_shape)  # float16, as stored
        self.has = features.item_rows >= 0  # (n_items,)
        self.n_missing = int((~self.has).sum())
        row_bytes = L * K * D + 2 * L * K if self.int8 else 2 * L * K * D
        self._rows_per_read = max(1, read_chunk_bytes // row_bytes)
        self.rows_read = 0  # store rows read so far (hot rows included)

        with_features = np.flatnonzero(self.has)
        rows = features.item_rows[with_features]
        if priority is None:
            order = np.argsort(rows, kind="stable")
        else:  # most read first; ties (and no priority) in row order
            order = np.lexsort((rows, -np.asarray(priority)[with_features]))
        n_hot = min(len(order), max(0, hot_bytes) // self.item_bytes)
        hot = with_features[order[:n_hot]]
        hot = hot[np.argsort(features.item_rows[hot], kind="stable")]  # read in row order
        self.n_hot = int(n_hot)
        self._slot = np.full(len(self.has), -1, dtype=np.int64)  # item -> row of _table
        self._slot[hot] = np.arange(n_hot)
        self._table = np.empty(
            (n_hot, *self.view_shape), dtype=np.int8 if self.int8 else np.float16
        )
        self._scales = np.empty((n_hot if self.int8 else 0, L, K), dtype=np.float16)
        self._read_into(features.item_rows[hot], (self._table, self._scales), np.arange(n_hot))

    @property
    def n_items(self) -> int:
        return len(self.has)

    @property
    def all_hot(self) -> bool:
        """Every item with features is held in memory: the store is not read again."""
        return self.n_hot == len(self.has) - self.n_missing

    @property
    def hot_bytes(self) -> int:
        return self.n_hot * self.item_bytes

    def nbytes(self, items: np.ndarray) -> int:
        """Bytes `read(items)` returns."""
        return int(self.has[np.asarray(items, dtype=np.int64)].sum()) * self.item_bytes

    def read(
        self, items: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """items: (U,) catalog indices -> features (F, *view) float16 of the F items with
        features, in the order of `items` (into `out` if given), and has_features (U,) bool."""
        if self.int8:
            values, scales, has = self.read_int8(items)
            features = dequantize(torch.from_numpy(values), torch.from_numpy(scales)).numpy()
            if out is None:
                return features, has
            out[...] = features
            return out, has
        out, has = self._read(items, None if out is None else (out,))
        return out[0], has

    def read_int8(
        self, items: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`read` of an int8 bank, rows as stored: values (F, L, K, D) int8 and scales
        (F, L, K) float16 (into `out` if given), and has_features (U,) bool."""
        if not self.int8:
            raise ValueError("read_int8: this bank holds float16 rows")
        (values, scales), has = self._read(items, out)
        return values, scales, has

    def gather(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """`read` as tensors: features (F, *view) float16 (the encoder converts one layer at a
        time) and has_features (U,) bool."""
        features, has = self.read(items)
        return torch.from_numpy(features), torch.from_numpy(has)

    def _read(
        self, items: np.ndarray, out: tuple[np.ndarray, ...] | None
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Hot rows from the table, the rest from the store: (features,) or (values, scales)."""
        items = np.asarray(items, dtype=np.int64)
        has = self.has[items]
        wanted = items[has]
        if out is None:
            out = (np.empty((len(wanted), *self.view_shape), dtype=self._table.dtype),)
            if self.int8:
                out += (np.empty((len(wanted), *self.scales_shape), dtype=np.float16),)
        slots = self._slot[wanted]
        hot = slots >= 0
        out[0][hot] = self._table[slots[hot]]
        if self.int8:
            out[1][hot] = self._scales[slots[hot]]
        cold = np.flatnonzero(~hot)
        if cold.size:
            rows = self.features.item_rows[wanted[cold]]
            order = np.argsort(rows, kind="stable")
            self._read_into(rows[order], out, cold[order])
        return out, has

    def _read_into(self, rows: np.ndarray, out: tuple[np.ndarray, ...], at: np.ndarray) -> None:
        """Store rows (sorted) -> out[0][at] (reduced features, or int8 values) and, for an int8
        bank, out[1][at] (scales), about read_chunk_bytes a read."""
        expected = self.features.shape
        for start in range(0, len(rows), self._rows_per_read):
            chunk = rows[start : start + self._rows_per_read]
            where = at[start : start + len(chunk)]
            if self.int8:
                values, scales = self.features.read_rows_int8(chunk)  # type: ignore[misc]
                block = np.asarray(values)
            else:
                block = np.asarray(self.features.read_rows(chunk))
            if block.shape != (len(chunk), *expected):
                raise ValueError(
                    f"read_rows returned {block.shape}, expected {(len(chunk), *expected)}"
                )
            if self.int8:
                out[0][where] = block
                out[1][where] = scales
            else:
                out[0][where] = reduce_features(block, self.view)
            self.rows_read += len(chunk)
