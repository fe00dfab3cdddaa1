"""Feature-store integrity costs, each figure measured side by side in this one run (the machine
is shared and noisy, so only the ratios between figures of the same run mean much):

- checksum cost at write: rows written through RowWriter.write + commit + publish, against the
  same code with the checksum replaced by a constant (target >= 0.95);
- checksum cost at read: FeatureStore.read_rows, the call training makes (64 MB per call, as
  recmodel.data reads), with its checksum check against check=False, both cold (what a store
  larger than memory gives) and from the page cache (the worst case: a memory copy at several
  GB/s leaves nothing to hide the hash behind); target >= 0.95;
- `store verify` on a 3,000-item store at D = 3584 (8.3 GB, rows (6, 64, 3584) float16 built
  through the store API from random float16 values) against a plain sequential read of the
  same chunk files in the same order (open, one read into a reused buffer, close), both cold
  (every file's pages dropped with posix_fadvise(DONTNEED) before each pass) and both warm
  (after one untimed pass over the files): target >= 0.7, with verify's rate printed.

Everything is written under a temporary directory (--dir to choose its parent) and deleted.

    python bench/store.py [--items 3000] [--hidden 3584] [--checksum-rows 256] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SHAPE_LK = (6, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000, help="rows of the verify store")
    parser.add_argument("--hidden", type=int, default=3584, help="D")
    parser.add_argument("--checksum-rows", type=int, default=256, help="rows of the cost runs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the scratch directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        shape = (*SHAPE_LK, args.hidden)
        row_bytes = int(np.prod(shape)) * 2
        print(f"rows {shape} float16 = {row_bytes / 1e6:.2f} MB each; scratch dir {work}")
        checksum_costs(work / "cost", shape, args.checksum_rows, args.repeats)
        shutil.rmtree(work / "cost")
        verify_rate(work / "verify", shape, args.items)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


def checksum_costs(root: Path, shape: tuple[int, int, int], n: int, repeats: int) -> None:
    import featurizer.store.writing as store_module
    from featurizer.store import FeatureStore
    from featurizer.store.layout import CHECKSUM

    rows = [_random_row(np.random.default_rng(i), shape) for i in range(8)]
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    stores: list[FeatureStore] = []
    real_checksum = store_module.row_checksum
    for attempt in range(repeats):
        for with_checksum in (True, False) if attempt % 2 == 0 else (False, True):
            store_module.row_checksum = real_checksum if with_checksum else (lambda data: 0)
            try:
                store = _fresh_store(root / f"w{attempt}-{with_checksum}", shape)
                times[with_checksum].append(_write_rows(store, rows, n))
            finally:
                store_module.row_checksum = real_checksum
            if attempt == 0 and with_checksum:
                stores.append(store)
            else:
                shutil.rmtree(store.path.parent)
    mb = n * rows[0].nbytes / 1e6
    start = time.perf_counter()
    for i in range(n):
        real_checksum(rows[i % len(rows)])
    hash_s = time.perf_counter() - start
    print(
        f"checksum alone ({CHECKSUM}): {mb / hash_s / 1e3:.1f} GB/s, "
        f"{hash_s / n * 1e6:.0f} us per row"
    )
    for part, label in ((0, "rows written + committed (page cache)"), (1, "+ publish (flushed)")):
        t_with, t_without = (statistics.median(t[part] for t in times[flag]) for flag in (1, 0))
        ratio = _pair_ratio([t[part] for t in times[True]], [t[part] for t in times[False]])
        print(
            f"write, {label}, {n} rows ({mb:.0f} MB), median of {repeats}: "
            f"{mb / t_with:.0f} MB/s with checksums, {mb / t_without:.0f} MB/s without"
        )
        print(
            f"RATIO write with / without checksums ({label.split(' (')[0]}) = {ratio:.3f}  "
            f"(target >= 0.95; the hash alone would make it {t_without / (t_without + hash_s):.3f})"
        )

    store = stores[0]
    all_rows = np.arange(n)
    batch = max(1, (64 << 20) // rows[0].nbytes)  # rows per call: recmodel's 64 MB reads

    def read(check: bool) -> None:
        for first in range(0, n, batch):
            store.read_rows(all_rows[first : first + batch], check=check)

    for label, prepare in (("page cache", lambda: None), ("cold", lambda: _drop_cache(store.path))):
        read(True)  # warm up (and touch every page once)
        t_with, t_without, ratio = _alternate(
            lambda: read(True), lambda: read(False), prepare, repeats
        )
        print(
            f"read_rows ({label}), median of {repeats}: {mb / t_with:.0f} MB/s checked, "
            f"{mb / t_without:.0f} MB/s unchecked"
        )
        print(
            f"RATIO read checked / unchecked ({label}) = {ratio:.3f}  (target >= 0.95; the hash "
            f"alone would make it {t_without / (t_without + hash_s):.3f})"
        )


def verify_rate(root: Path, shape: tuple[int, int, int], n_items: int) -> None:
    store = _fresh_store(root, shape)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with store.writer() as w:
        rows = w.allocate(n_items)
        row_writer = w.row_writer()
        for i, row in enumerate(rows):
            checksum = row_writer.write(row, _random_row(rng, shape))
            w.commit(
                f"v{i:05d}", row, f"{i:064x}", 1000, 16, prompt_sha256="0" * 64, checksum=checksum
            )
            if i % 256 == 255:
                w.publish()
    built = time.perf_counter() - start
    files = [store.chunk_path(r) for r in rows]
    total = sum(f.stat().st_size for f in files)
    print(f"verify store: {n_items} items, {total / 1e9:.2f} GB, built in {built:.0f} s")

    buffer = bytearray(int(np.prod(shape)) * 2)
    view = memoryview(buffer)

    def plain_read() -> None:
        for path in files:
            with open(path, "rb", buffering=0) as f:
                f.readinto(view)

    reports = []

    def verify() -> None:
        report = store.verify()
        assert report.ok and report.n_checked == n_items, report.describe()
        reports.append(report)

    for label, prepare in (("cold", lambda: _drop_cache(store.path)), ("warm", lambda: None)):
        if label == "warm":
            plain_read()  # one untimed pass puts every file in the page cache
        t_verify, t_plain, ratio = _alternate(verify, plain_read, prepare, repeats=2)
        print(
            f"store verify ({label}): {total / t_verify / 1e9:.2f} GB/s "
            f"({t_verify:.1f} s; verify itself said: {reports[-1].rate / 1e9:.2f} GB/s); "
            f"plain sequential read: {total / t_plain / 1e9:.2f} GB/s ({t_plain:.1f} s)"
        )
        print(f"RATIO verify / plain read ({label}) = {ratio:.3f}  (target >= 0.7)")


# ---------------------------------------------------------------------------------------------


def _fresh_store(root: Path, shape: tuple[int, int, int]):
    from featurizer.config import ExtractorConfig
    from featurizer.store import FeatureStore

    L, K, D = shape
    config = ExtractorConfig(model="bench-store", layers=tuple(range(L)), k_tokens=K)
    return FeatureStore.create_or_open(root, config, hidden_size=D)


def _write_rows(store, rows: list[np.ndarray], n: int) -> tuple[float, float]:
    """Seconds to write and commit n rows, and to that plus publish (which flushes them)."""
    with store.writer() as w:
        allocated = w.allocate(n)
        row_writer = w.row_writer()
        start = time.perf_counter()
        for i, r in enumerate(allocated):
            checksum = row_writer.write(r, rows[i % len(rows)])
            w.commit(f"item{i}", r, "0" * 64, 0, 0, prompt_sha256="0" * 64, checksum=checksum)
        written = time.perf_counter() - start
        w.publish()  # flushes the rows (one syncfs), then commits the index
        return written, time.perf_counter() - start


def _random_row(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random finite float16 values (random sign, exponent below all-ones, mantissa)."""
    bits = rng.integers(0, 0x7C00, size=shape, dtype=np.uint16)
    bits |= rng.integers(0, 2, size=shape, dtype=np.uint16) << 15
    return bits.view(np.float16)


def _drop_cache(path: Path) -> None:
    """Flush and drop the page cache of every file under `path` (POSIX_FADV_DONTNEED drops only
    clean pages, hence the fsync)."""
    for dirpath, _, names in os.walk(path):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _alternate(
    first: Callable[[], None], second: Callable[[], None], prepare: Callable[[], None], repeats: int
) -> tuple[float, float]:
    """Median seconds of `first` and of `second`, run alternately (ABBA...: neither always
    goes first), `prepare` before each; and the median of second/first over adjacent pairs."""
    times: tuple[list[float], list[float]] = ([], [])
    pairs = ((first, times[0]), (second, times[1]))
    for attempt in range(repeats):
        for fn, out in pairs if attempt % 2 == 0 else pairs[::-1]:
            prepare()
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1]), _pair_ratio(*times)


def _pair_ratio(slow: list[float], fast: list[float]) -> float:
    """Median of fast/slow over runs made next to each other: steadier on a noisy machine than
    a ratio of medians, since neighbours share the machine's state of the moment."""
    return statistics.median(f / s for s, f in zip(slow, fast, strict=True))


if __name__ == "__main__":
    main()
