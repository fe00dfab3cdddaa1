"""Compact views of a store version, derived without re-extraction (supplementary §9.1): fewer
tapped layers, fewer old tokens per layer, int8 values.

A derived view is an ordinary version under the same root (same layout, its own index, failures
and checksums), so training, evaluation and `store info|verify` read it as they read an
extracted one (`--store ROOT/<fingerprint>`), and a view can be derived from a view.

- `layers`: keep a subset of the source's tapped layers (hidden-state indices, e.g. 0, 8, 20).
- `k_tokens`: merge each layer's K - G stored old tokens further, to k_tokens - G, by the same
  bipartite soft matching the extractor uses (`featurizer.merge`); the G new tokens are kept.
  The stored old tokens are already merges of unequal sizes, and those sizes are not stored, so
  this second merge weighs them equally: a view is close to, not equal to, extracting at K.
- `int8`: each token's D values as int8 with one float16 scale (max |x| / 127), about half the
  bytes (featurizer.store.rows.quantize_int8); readers get float16 back.

Identity. A view's fingerprint hashes its source's fingerprint and the derivation, so the same
view of the same source always has the same name, and no view shares a name with an extraction.
extractor.json records `derived_from` (source fingerprint and the derivation) beside the
source's own fields, with `layers`, `k_tokens`, L and K updated.

Deriving is incremental, like extraction: an item whose view row exists for the source row's
identity (video and prompt hashes) is skipped, so rerunning after the source grew derives only
the new items. Items the source failed are failure rows of the view. Rows are read and written
`batch_rows` at a time: memory is bounded by that, not by the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch

from featurizer.config import STORE_FORMAT_VERSION, fingerprint_of
from featurizer.errors import StoreError
from featurizer.merge import merge_tokens
from featurizer.store.reading import FeatureStore
from featurizer.store.versions import create_version, version_shape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Derivation:
    """What a view keeps: `layers` (hidden-state indices, a subset of the source's in its order;
    None = all), `k_tokens` (tokens per layer, G < k_tokens <= K; None = the source's K), and
    whether its values are `int8` (a view of an int8 version is int8 too)."""

    layers: tuple[int, ...] | None = None
    k_tokens: int | None = None
    int8: bool = False

    def record(self, source: FeatureStore) -> dict[str, Any]:
        """The derivation as extractor.json's `derived_from` records it (values resolved)."""
        e = source.extractor
        return {
            "fingerprint": source.fingerprint,
            "layers": list(self.layers if self.layers is not None else e["layers"]),
            "k_tokens": int(self.k_tokens if self.k_tokens is not None else e["K"]),
            "merge": "bipartite, stored old tokens weighed equally",
            "dtype": "int8" if self.int8 or source.int8 else "float16",  # a view keeps int8
        }


@dataclass
class DeriveSummary:
    view: FeatureStore
    derived: int
    skipped: int
    failed: int
    seconds: float

    def describe(self) -> str:
        L, K, D = self.view.shape_per_item
        dtype = self.view.extractor["dtype"]
        return (
            f"derived {self.derived}, skipped {self.skipped} (already derived), failed "
            f"{self.failed} (failed in the source); view (L={L}, K={K}, D={D}, {dtype}) "
            f"{self.view.path.parent}/{self.view.fingerprint}"
        )


def check_derivation(source: FeatureStore, derivation: Derivation) -> None:
    """Raise ValueError naming the flag where the source cannot give this view, or where the
    view would be the source itself. Layers keep the source's order, deepest last: the variants
    that read one layer read the last stored one as the deepest."""
    e = source.extractor
    layers, K, G = list(e["layers"]), int(e["K"]), int(e["G"])
    keeps_layers = derivation.layers is None or list(derivation.layers) == layers
    if derivation.layers is not None:
        if not derivation.layers:
            raise ValueError("--layers: give at least one layer")
        unknown = [i for i in derivation.layers if i not in layers]
        if unknown:
            raise ValueError(
                f"--layers: {unknown} not in the source's tapped layers {layers} ({source.path})"
            )
        if len(set(derivation.layers)) != len(derivation.layers):
            raise ValueError(f"--layers: {list(derivation.layers)} names a layer twice")
        if list(derivation.layers) != sorted(derivation.layers):
            raise ValueError(
                f"--layers: {list(derivation.layers)} is not in increasing order (a view keeps "
                f"the source's order {layers}, deepest last)"
            )
    if derivation.k_tokens is not None and not G < derivation.k_tokens <= K:
        raise ValueError(
            f"--k-tokens: {derivation.k_tokens} must be more than the G = {G} new tokens and at "
            f"most the source's K = {K}"
        )
    if keeps_layers and derivation.k_tokens in (None, K) and (not derivation.int8 or source.int8):
        dtype = ", int8 rows" if source.int8 else ""
        raise ValueError(
            f"nothing to derive: {source.path} has layers {layers}, K = {K}{dtype} already; "
            "give a subset of its --layers, a smaller --k-tokens"
            + ("" if source.int8 else " or --int8")
        )


def view_fingerprint(source: FeatureStore, derivation: Derivation) -> str:
    """What extractor.json's `fingerprinted` fields of the view hash to (verify recomputes it)."""
    fields = {"derived_from": derivation.record(source), "store_format": STORE_FORMAT_VERSION}
    return fingerprint_of(fields)


def derive_version(
    source: FeatureStore,
    derivation: Derivation,
    batch_rows: int = 64,
    progress: Callable[[str], None] | None = None,
) -> DeriveSummary:
    """Create (or complete) the view of `source` under the same root; see the module docstring."""
    check_derivation(source, derivation)
    started = time.perf_counter()
    view = _create_or_open_view(source, derivation)
    record = derivation.record(source)
    layer_rows = [list(source.extractor["layers"]).index(i) for i in record["layers"]]
    k_tokens, G = record["k_tokens"], int(source.extractor["G"])

    table = source.index_table()  # in columns: a source of millions of rows is no dict
    items = table.column("item").combine_chunks()
    prompts = table.column("prompt_sha256").combine_chunks()
    # rows stored before prompt identities were recorded carry none; compare videos only then
    pending = view.index_view.pending(
        items, table.column("source_sha256"), prompts if prompts.null_count == 0 else None
    )
    todo = table.filter(pc.is_in(items, value_set=pending.column("item"))).sort_by("row")
    # items the source failed (a failure row beside a committed row is the source's to repair)
    failures = source.failures_table()
    failures = failures.filter(pc.invert(pc.is_in(failures.column("item"), value_set=items)))

    with view.writer(wait=0.0) as writer:
        row_writer = writer.row_writer()
        for failure in failures.to_pylist():
            writer.fail(failure["item"], failure["stage"], failure["error"])
        done = 0
        for start in range(0, todo.num_rows, batch_rows):
            batch = todo.slice(start, batch_rows)
            rows = source.read_rows(batch.column("row").to_numpy())  # (n, L, K, D) float16
            compact = _compact(rows[:, layer_rows], k_tokens, G)
            for entry, view_row, features in zip(
                batch.to_pylist(), writer.allocate(batch.num_rows), compact, strict=True
            ):
                checksum = row_writer.write(view_row, features, item=entry["item"])
                writer.commit(
                    entry["item"], view_row, entry["source_sha256"], entry["n_old"], G,
                    prompt_sha256=entry["prompt_sha256"], checksum=checksum,
                )  # fmt: skip
            writer.publish()
            done += batch.num_rows
            if progress is not None:
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress(f"derived {done}/{todo.num_rows} rows ({rate:.1f} rows/s)")
    return DeriveSummary(
        view=view,
        derived=todo.num_rows,
        skipped=table.num_rows - todo.num_rows,
        failed=failures.num_rows,
        seconds=time.perf_counter() - started,
    )


def _compact(rows: np.ndarray, k_tokens: int, new_tokens: int) -> np.ndarray:
    """(n, L, K, D) -> (n, L, k_tokens, D) float16: old tokens merged further, new ones kept."""
    n, L, K, D = rows.shape
    if k_tokens == K:
        return np.ascontiguousarray(rows)
    out = np.empty((n, L, k_tokens, D), dtype=np.float16)
    k_old = K - new_tokens
    for i in range(n):
        for layer in range(L):
            old = torch.from_numpy(rows[i, layer, :k_old].astype(np.float32))
            out[i, layer, : k_tokens - new_tokens] = merge_tokens(
                old, k_tokens - new_tokens
            ).numpy()
            out[i, layer, k_tokens - new_tokens :] = rows[i, layer, k_old:]
    return out


def _create_or_open_view(source: FeatureStore, derivation: Derivation) -> FeatureStore:
    record = derivation.record(source)
    e = source.extractor
    fingerprint = view_fingerprint(source, derivation)
    root = source.path.parent
    path = root / fingerprint
    if not (path / "extractor.json").exists():
        kept = {
            k: v
            for k, v in e.items()
            if k not in ("fingerprint", "created_at", "token_split", "L", "K", "G", "hidden_size")
        }
        create_version(
            root,
            {
                **kept,
                "fingerprint": fingerprint,
                "layers": record["layers"],
                "k_tokens": record["k_tokens"],
                "derived_from": record,
                "store_format": STORE_FORMAT_VERSION,
                "fingerprinted": ["derived_from", "store_format"],
                **version_shape(
                    int(e["hidden_size"]),
                    len(record["layers"]),
                    record["k_tokens"],
                    int(e["G"]),
                    dtype=record["dtype"],
                ),
            },
        )
    view = FeatureStore(path)
    if view.extractor.get("derived_from") != record:
        raise StoreError(f"feature store {path}: not the view {record} of {source.path}")
    return view
