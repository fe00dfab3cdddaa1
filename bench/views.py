"""Compact views (`linkedout store derive`) against the full store they come from, measured side by
side in this one run (the machine is shared and noisy, so only ratios of the same run mean much):

- bytes per item of each view: int8 (target ~0.5x plus the scales), K = 32, layers 0, 8, 20;
- reading rows for training: recmodel's ItemFeatureBank (no hot rows) over random items, in
  requests of 64 MB of float16 rows, int8 view against the float16 source, both cold (pages
  dropped with posix_fadvise(DONTNEED) before each pass: a store larger than memory) and from
  the page cache; the int8 rows arrive as stored (training dequantizes them on its device);
  per item, target >= 1.5x faster;
- the derive rate of each view.

The source is built through the store API from random float16 rows of (6, 64, 3584), the 7B
layout; everything is written under a temporary directory (--dir to choose its parent) and
deleted.

    python bench/views.py [--items 1000] [--hidden 3584] [--repeats 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from store import _alternate, _drop_cache  # bench/store.py, beside this file

from featurizer.config import ExtractorConfig
from featurizer.store import FeatureStore, set_current
from featurizer.store.derive import Derivation, derive_version
from pipelines.training.inputs import store_features
from recmodel.features import ItemFeatureBank

READ_BYTES = 64 << 20  # per read_rows call, as recmodel's reader asks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=3584)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-views-", dir=args.dir))
    try:
        source = _source(work / "store", args.items, args.hidden)
        full_bytes = _bytes_per_item(source)
        print(
            f"source: {args.items} items of {source.shape_per_item} float16, "
            f"{full_bytes / 1e6:.2f} MB per item"
        )
        views = {}
        for name, derivation in (
            ("int8", Derivation(int8=True)),
            ("K=32", Derivation(k_tokens=32)),
            ("layers 0,8,20", Derivation(layers=(0, 8, 20))),
        ):
            start = time.perf_counter()
            views[name] = derive_version(source, derivation).view
            rate = args.items / (time.perf_counter() - start)
            ratio = _bytes_per_item(views[name]) / full_bytes
            print(
                f"view {name:14s} {_bytes_per_item(views[name]) / 1e6:.2f} MB per item = "
                f"{ratio:.3f}x the source; derived at {rate:.0f} items/s"
            )

        int8 = views["int8"]
        rng = np.random.default_rng(0)
        items = sorted(source.index())
        order = [items[i] for i in rng.permutation(len(items))]
        per_call = max(1, int(READ_BYTES // full_bytes))

        def bank(store: FeatureStore) -> ItemFeatureBank:
            features = store_features(store.path, order)  # the catalog in request order
            return ItemFeatureBank(features, "tokens", hot_bytes=0, read_chunk_bytes=READ_BYTES)

        full_bank, int8_bank = bank(source), bank(int8)
        requests = [
            np.arange(i, min(i + per_call, len(order))) for i in range(0, len(order), per_call)
        ]

        def read_full() -> None:
            for request in requests:
                full_bank.read(request)

        def read_int8() -> None:
            for request in requests:
                int8_bank.read_int8(request)

        for label, prepare in (
            ("cold", lambda: (_drop_cache(source.path), _drop_cache(int8.path))),
            ("page cache", lambda: None),
        ):
            read_full()  # (warm) the page cache
            read_int8()
            full_s, int8_s, ratio = _alternate(read_full, read_int8, prepare, args.repeats)
            print(
                f"read {label:10s} float16 {full_s / len(order) * 1e3:.2f} ms/item, int8 "
                f"{int8_s / len(order) * 1e3:.2f} ms/item (as stored, for the device)"
            )
            print(f"RATIO int8 read speed-up ({label}) = {1 / ratio:.2f}x  (target >= 1.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _source(root: Path, n_items: int, hidden: int) -> FeatureStore:
    config = ExtractorConfig(model="bench-views", layers=(0, 4, 8, 12, 16, 20))
    store = FeatureStore.create_or_open(root, config, hidden)
    rng = np.random.default_rng(0)
    shape = store.shape_per_item
    with store.writer() as writer:
        row_writer = writer.row_writer()
        for i, row in enumerate(writer.allocate(n_items)):
            features = (rng.standard_normal(shape, dtype=np.float32) * 2).astype(np.float16)
            checksum = row_writer.write(row, features, item=f"v{i:06d}")
            writer.commit(f"v{i:06d}", row, f"sha{i}", 48, 16, checksum=checksum)
            if i % 256 == 255:
                writer.publish()
    set_current(root, store.fingerprint)
    return store


def _bytes_per_item(store: FeatureStore) -> float:
    files = [p for p in (store.path / "features.zarr").rglob("*") if p.is_file()]
    data = [p for p in files if p.name != "zarr.json"]
    return sum(p.stat().st_size for p in data) / len(store.index())


if __name__ == "__main__":
    main()
