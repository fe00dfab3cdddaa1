"""The feature store (format 2: shards of SHARD_ROWS rows, featurizer.store) against a plain
write and read of the same bytes, side by side in one run, once on the local disk and once on a
local S3 server (moto on loopback, started by this bench in a process of its own); and what its
integrity checks cost. The machine is shared and noisy, so every figure is set against its plain
twin measured next to it: the two alternate (AB BA AB ...), and a ratio is the median over
adjacent pairs, which share the machine's state of the moment.

- write throughput: --items rows of (6, 64, D) float16 (--s3-items on S3: moto is slow) written
  through the store API as extraction writes them: per shard, allocate(SHARD_ROWS) ->
  row_writer().write each row -> flush -> commit each row -> publish (the shard object, then
  the arrays' metadata and the next index snapshot), the writer's lock or lease included;
  against a plain write of the same bytes as the same objects of the same sizes, in the same
  order (every object the store wrote: shards, snapshots, metadata; recorded in an untimed
  first run): on the local disk one file each, written and fsynced once; on S3 one PUT each
  (obstore.put, no multipart, from a buffer ready in memory). On the local disk every run
  starts after an untimed os.sync(), so that the deletes of the run before (and their discards)
  are not paid by the next one. RATIO = store MB/s / plain MB/s (target >= 0.7);
- single-row random read: random committed rows read one at a time through
  FeatureStore.read_rows([row]) (checksum checked: the call training makes), against a plain
  ranged read of the same bytes of the same object: on the local disk open + os.pread of the
  row's byte range from its shard file + close, from the page cache and cold (every file's pages
  dropped with posix_fadvise(DONTNEED) before each pass); on S3 (--reads / 4 rows a pass)
  obstore.get_range of the row's range of the same shard object (moto copies the whole object for every ranged GET, so both
  sides pay a shard-sized copy a read: the ratio is about the store's own requests and work,
  the absolute times are moto's). RATIO = plain seconds per read / store seconds per read
  (target >= 0.5);
- objects per 1,000 videos: the files/objects a version holds after 1,000 rows were written in
  format 2 (as extraction writes them: a publish per shard; rows of (6, 64, 64): the count does
  not depend on D), on the local disk and on S3, and a format-1 version of 1,000 rows built by
  scaling the committed format-1 fixture (tests/fixtures/store_v1: one chunk file a row,
  index.parquet, failures.parquet, extractor.json, two zarr.json), read back through the store
  to show it is one; target: format 2 <= 20;
- `store verify` on the local write store against a plain sequential read of its shard files
  in the same order (open, one read into a reused buffer, close), cold (after one untimed cold
  pass: the first read of files just written is slower, whoever makes it) and warm (after one
  untimed pass); target >= 0.7;
- checksum cost at write: --checksum-rows rows written through RowWriter.write + commit (in
  memory: nothing there hides the hash, so no target: the hash alone bounds it), then + publish
  (which writes the shards), against the same code with the checksum replaced by a constant,
  each run after an untimed os.sync() (target >= 0.95);
- checksum cost at read: FeatureStore.read_rows, the call training makes (64 MB per call, as
  recmodel.data reads), with its checksum check against check=False, cold and from the page
  cache (the worst case: a memory copy at several GB/s leaves nothing to hide the hash behind);
  target >= 0.95.

Everything is written under a temporary directory (--dir to choose its parent; moto's objects
are deleted as the bench goes, and spill to that directory too) and deleted at the end.

    python bench/store.py [--items 256] [--s3-items 128] [--hidden 3584] [--reads 64]
        [--checksum-rows 256] [--repeats 7] [--dir /tmp] [--no-s3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SHAPE_LK = (6, 64)
COUNT_D = 64  # D of the object-count stores (the count does not depend on it)
COUNT_ROWS = 1000
REPO = Path(__file__).resolve().parents[1]
FIXTURE_V1 = REPO / "tests" / "fixtures" / "store_v1" / "store"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=256, help="rows written on the local disk")
    parser.add_argument("--s3-items", type=int, default=128, help="rows written on S3 (moto)")
    parser.add_argument("--hidden", type=int, default=3584, help="D")
    parser.add_argument("--reads", type=int, default=64, help="single-row reads a pass")
    parser.add_argument("--checksum-rows", type=int, default=256, help="rows of the cost runs")
    parser.add_argument("--repeats", type=int, default=7, help="pairs of runs a figure")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the scratch directory")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) figures")
    args = parser.parse_args()

    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        shape = (*SHAPE_LK, args.hidden)
        row_bytes = int(np.prod(shape)) * 2
        print(f"rows {shape} float16 = {row_bytes / 1e6:.2f} MB each; scratch dir {work}")
        rows = [_random_row(np.random.default_rng(i), shape) for i in range(8)]
        local = LocalTarget(work / "local")
        store = write_throughput(local, rows, args.items, args.repeats)
        single_row_reads(local, store, args.reads, args.repeats)
        verify_rate(store, args.repeats)
        local.clear()
        checksum_costs(work / "cost", rows, args.checksum_rows, args.repeats)
        shutil.rmtree(work / "cost")
        counts = {1: count_format1(work / "count-v1")}
        counts[2] = count_format2(local, "local disk")
        local.clear()
        if not args.no_s3:
            sys.path.insert(0, str(REPO))  # the test suite's S3 helpers (tests/s3.py)
            from tests.s3 import S3Server, environment

            with moto_server(work / "moto") as endpoint:
                server = S3Server(endpoint, server=None)  # its process is moto_server's
                with environment(server.env()):
                    s3 = ObjectTarget(server.bucket())
                    store = write_throughput(s3, rows, args.s3_items, args.repeats)
                    single_row_reads(s3, store, max(4, args.reads // 4), args.repeats)
                    s3.clear()
                    counts[2] = count_format2(s3, "S3")
                    s3.clear()
        print(
            f"objects per 1,000 videos: format 1 {counts[1]}, format 2 {counts[2]} (target <= 20)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- where the bench writes: the local disk, or a bucket --------------------------------------


class LocalTarget:
    """A directory on the local disk: the store's root, and the plain twin of its I/O."""

    label = "local disk"

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def store_root(self, name: str) -> str:
        return str(self.root / name)

    def plain_write(self, name: str, objects: list[tuple[str, list[memoryview]]]) -> None:
        """Each object one file: written, fsynced once (as the store's file writes are)."""
        base = self.root / name
        for key, parts in objects:
            path = base / key
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                for part in parts:
                    f.write(part)
                f.flush()
                os.fsync(f.fileno())

    def plain_reader(self, version: Any) -> Callable[[str, int, int], None]:
        base = version.path

        def read(key: str, start: int, length: int) -> None:
            fd = os.open(base / key, os.O_RDONLY)
            try:
                data = os.pread(fd, length, start)
            finally:
                os.close(fd)
            assert len(data) == length

        return read

    def delete(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)

    def clear(self) -> None:
        for child in self.root.iterdir():
            shutil.rmtree(child, ignore_errors=True)


class ObjectTarget:
    """A bucket on the S3 server: the store's root, and plain PUTs and GETs with obstore."""

    label = "S3 (moto)"

    def __init__(self, bucket: str) -> None:
        from obstore.store import S3Store

        from featurizer.store import location

        self.bucket = bucket
        self.client = S3Store(bucket, client_options={"allow_http": True})
        location(self.store_root("bench"))  # loads the store's object-store Location class

    def store_root(self, name: str) -> str:
        return f"s3://{self.bucket}/{name}"

    def plain_write(self, name: str, objects: list[tuple[str, bytes]]) -> None:
        """Each object one PUT, no multipart (as the store's shard writes)."""
        import obstore

        for key, payload in objects:
            obstore.put(self.client, f"{name}/{key}", payload, use_multipart=False)

    def plain_reader(self, version: Any) -> Callable[[str, int, int], None]:
        import obstore

        prefix = version.url[len(f"s3://{self.bucket}/") :]

        def read(key: str, start: int, length: int) -> None:
            data = obstore.get_range(self.client, f"{prefix}/{key}", start=start, length=length)
            assert len(data) == length

        return read

    def delete(self, name: str) -> None:
        import obstore

        paths = [m["path"] for batch in obstore.list(self.client, prefix=f"{name}/") for m in batch]
        if paths:
            obstore.delete(self.client, paths)

    def clear(self) -> None:
        import obstore

        paths = [m["path"] for batch in obstore.list(self.client) for m in batch]
        if paths:
            obstore.delete(self.client, paths)


# -- write throughput -------------------------------------------------------------------------


def write_throughput(target: Any, rows: list[np.ndarray], n: int, repeats: int) -> Any:
    """Print the store's write rate against the plain write of the same objects; return the
    store of the untimed first run (the reads' store)."""
    shape = rows[0].shape
    kept = _fresh_store(target.store_root("kept"), shape)
    with _storage_calls() as calls:
        _write_store(kept, rows, n)  # untimed: warms up, and records the objects written
    prefix = kept.path.url.rstrip("/") + "/"
    writes = [
        (url[len(prefix) :], size)
        for method, url, size in calls
        if method in ("write_bytes", "create_bytes") and url.startswith(prefix)
    ]
    total = sum(size for _, size in writes)
    plain_objects = _plain_objects(target, writes, rows)
    phases: list[tuple[float, float]] = []
    runs = iter(range(1, 2 * repeats + 1))

    def store_run() -> float:
        name = f"store-{next(runs)}"
        store = _fresh_store(target.store_root(name), shape)  # creating it is not timed
        start = time.perf_counter()
        gathered = _write_store(store, rows, n)
        seconds = time.perf_counter() - start
        phases.append((gathered, seconds - gathered))
        target.delete(name)
        return seconds

    def plain_run() -> float:
        name = f"plain-{next(runs)}"
        start = time.perf_counter()
        target.plain_write(name, plain_objects)
        seconds = time.perf_counter() - start
        target.delete(name)
        return seconds

    settle = os.sync if isinstance(target, LocalTarget) else None  # the last run's deletes
    t_store, t_plain, ratios = _alternate(store_run, plain_run, repeats, settle)
    gathered = statistics.median(p[0] for p in phases)
    written = statistics.median(p[1] for p in phases)
    kinds = _describe_objects(writes)
    mb = total / 1e6
    print(
        f"write, {target.label}, {n} rows as {len(writes)} objects ({kinds}), {mb:.0f} MB, "
        f"median of {repeats}: store {mb / t_store:.0f} MB/s ({t_store:.2f} s: "
        f"{gathered:.2f} s gathering rows, {written:.2f} s writing objects and committing), "
        f"plain {mb / t_plain:.0f} MB/s ({t_plain:.2f} s); storage calls of the store "
        f"{_count(calls)}, of the plain write {len(writes)}"
    )
    _ratio(f"write store / plain ({target.label})", ratios, 0.7)
    return kept


def _write_store(store: Any, rows: list[np.ndarray], n: int) -> float:
    """Write n rows as extraction does (a shard per group: allocate, write, flush, commit,
    publish); seconds spent gathering rows (RowWriter.write: checks and checksums)."""
    from featurizer.store.layout import SHARD_ROWS

    gathered = 0.0
    with store.writer() as w:
        for first in range(0, n, SHARD_ROWS):
            start = time.perf_counter()
            allocated = w.allocate(min(SHARD_ROWS, n - first))
            row_writer = w.row_writer()
            checksums = [
                row_writer.write(r, rows[(first + i) % len(rows)], item=f"item{r:06d}")
                for i, r in enumerate(allocated)
            ]
            gathered += time.perf_counter() - start
            offsets = row_writer.flush()
            for r, checksum in zip(allocated, checksums, strict=True):
                item = f"item{r:06d}"
                sha = "0" * 64
                w.commit(
                    item, r, sha, 0, 0, prompt_sha256=sha, checksum=checksum, offset=offsets[r]
                )
            w.publish()
    return gathered


_SPIED = (
    "read_bytes", "read_range", "read_ranges", "write_bytes", "create_bytes", "exists", "size",
    "delete", "children", "walk",
)  # fmt: skip


@contextmanager
def _storage_calls() -> Iterator[list[tuple[str, str, int]]]:
    """(method, url, bytes written) of every call the store makes to its storage (the
    Location classes of featurizer.store.location: on S3 each is a request) while the block
    runs, in order; a call made inside another (exists() -> size()) is not counted again."""
    from featurizer.store.location import Location

    calls: list[tuple[str, str, int]] = []
    depth = threading.local()
    classes, todo = [], [Location]
    while todo:
        classes.append(todo.pop())
        todo += classes[-1].__subclasses__()
    saved = []
    for cls in classes:
        for method in _SPIED:
            original = cls.__dict__.get(method)
            if original is None or getattr(original, "__isabstractmethod__", False):
                continue
            saved.append((cls, method, original))

            def spied(
                self: Any,
                *args: Any,
                _original: Any = original,
                _method: str = method,
                **kwargs: Any,
            ) -> Any:
                outermost = not getattr(depth, "n", 0)
                if outermost:
                    written = _nbytes(args[0]) if _method in ("write_bytes", "create_bytes") else 0
                    calls.append((_method, self.url, written))
                depth.n = getattr(depth, "n", 0) + 1
                try:
                    return _original(self, *args, **kwargs)
                finally:
                    depth.n -= 1

            setattr(cls, method, spied)
    try:
        yield calls
    finally:
        for cls, method, original in saved:
            setattr(cls, method, original)


def _count(calls: list[tuple[str, str, int]]) -> str:
    counts: dict[str, int] = {}
    for method, _, _ in calls:
        counts[method] = counts.get(method, 0) + 1
    return f"{len(calls)} (" + ", ".join(f"{m} {n}" for m, n in counts.items()) + ")"


def _nbytes(data: Any) -> int:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).nbytes
    return sum(memoryview(part).nbytes for part in data)


def _plain_objects(target: Any, writes: list[tuple[str, int]], rows: list[np.ndarray]) -> list:
    """The plain twin of the store's writes: objects of the same keys and sizes, their bytes
    the rows' bytes (as views of the rows on a local disk; as one ready buffer an object for a
    PUT)."""
    views = [memoryview(r).cast("B") for r in rows]
    objects = []
    for key, size in writes:
        parts, left, i = [], size, 0
        while left:
            view = views[i % len(views)]
            parts.append(view[: min(left, view.nbytes)])
            left -= parts[-1].nbytes
            i += 1
        objects.append((key, parts if isinstance(target, LocalTarget) else b"".join(parts)))
    return objects


def _describe_objects(writes: list[tuple[str, int]]) -> str:
    kinds: dict[str, list[int]] = {}
    for key, size in writes:
        kind = (
            "shards"
            if "/c/" in key
            else "snapshots"
            if key.startswith("index/")
            else key.rsplit("/", 1)[-1]
        )
        kinds.setdefault(kind, []).append(size)
    return ", ".join(
        f"{len(sizes)} {kind}" + (f" of {max(sizes) / 1e6:.1f} MB" if kind == "shards" else "")
        for kind, sizes in kinds.items()
    )


# -- single-row random reads ------------------------------------------------------------------


def single_row_reads(target: Any, store: Any, n_reads: int, repeats: int) -> None:
    from featurizer.store import FeatureStore

    store = FeatureStore(store.path)  # a reader of its own, as training opens one
    geometry = store.geometries[-1]
    index = store.index_table()
    rows, offsets = index.column("row").to_pylist(), index.column("offset").to_pylist()
    offsets = dict(zip(rows, offsets, strict=True))
    rng = np.random.default_rng(0)
    sample = [int(r) for r in rng.choice(sorted(offsets), min(n_reads, len(offsets)), False)]
    plain_read = target.plain_reader(store.path)
    where = [(geometry.key(geometry.shard_of(r)), int(offsets[r])) for r in sample]

    def store_pass() -> float:
        start = time.perf_counter()
        for r in sample:
            store.read_rows([r])
        return time.perf_counter() - start

    def plain_pass() -> float:
        start = time.perf_counter()
        for key, offset in where:
            plain_read(key, offset, geometry.row_bytes)
        return time.perf_counter() - start

    if isinstance(target, LocalTarget):
        cases = [("page cache", None), ("cold", lambda: _drop_cache(store.path.path))]
    else:
        cases = [("moto, a shard-sized copy a read on both sides", None)]
    with _storage_calls() as calls:
        store.read_rows([sample[0]])
    for label, prepare in cases:
        store_pass(), plain_pass()  # warm up (and touch every page once)
        t_store, t_plain, ratios = _alternate(store_pass, plain_pass, repeats, prepare)
        k = len(sample)
        print(
            f"single-row random read, {target.label} ({label}), {k} rows a pass, median of "
            f"{repeats}: store read_rows([row]) {t_store / k * 1e3:.2f} ms a row "
            f"(storage calls a row: {_count(calls)}), plain ranged read of the same bytes of "
            f"the same object {t_plain / k * 1e3:.2f} ms (1 call)"
        )
        _ratio(
            f"single-row read plain / store s per read ({target.label}, {label.split(',')[0]})",
            ratios,
            0.5,
        )


# -- objects per 1,000 videos -----------------------------------------------------------------


def count_format2(target: Any, label: str) -> int:
    """Objects of a format-2 version after COUNT_ROWS rows written as extraction writes them;
    printed by kind. Returns the count without a local writer's empty .lock file."""
    from featurizer.store import FeatureStore
    from featurizer.store.layout import LOCK_FILE

    shape = (*SHAPE_LK, COUNT_D)
    store = _fresh_store(target.store_root("count"), shape)
    rows = [_random_row(np.random.default_rng(i), shape) for i in range(8)]
    _write_store(store, rows, COUNT_ROWS)
    reopened = FeatureStore(store.path)
    assert len(reopened.index()) == COUNT_ROWS and reopened.verify().ok
    keys = [key for key, _ in store.path.walk()]
    lock = [key for key in keys if key == LOCK_FILE]
    objects = [key for key in keys if key != LOCK_FILE]
    shards = [key for key in objects if "/c/" in key]
    snapshots = [key for key in objects if key.startswith("index/")]
    others = sorted(set(objects) - set(shards) - set(snapshots))
    print(
        f"format 2, {COUNT_ROWS} rows on the {label}: {len(objects)} objects = {len(shards)} "
        f"shards + {len(snapshots)} index snapshots + {', '.join(others)}"
        + (f" (and the writer's empty {LOCK_FILE} file)" if lock else "")
    )
    return len(objects)


def count_format1(root: Path) -> int:
    """Files of a format-1 version of COUNT_ROWS rows: the committed fixture's version with its
    rows scaled up (one chunk file a row, its index rows, the arrays' shape), read back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurizer.store import FeatureStore
    from featurizer.store.layout import ARRAY_NAME, FEATURES_DIR, INDEX_FILE
    from featurizer.store.rows import row_checksum

    (fixture,) = [p for p in FIXTURE_V1.iterdir() if p.is_dir()]
    version = root / fixture.name
    shutil.copytree(fixture, version, ignore=shutil.ignore_patterns("c"))
    meta_file = version / FEATURES_DIR / ARRAY_NAME / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["shape"][0] = COUNT_ROWS
    meta_file.write_text(json.dumps(meta, indent=2))
    shape = tuple(meta["shape"][1:])
    template = pq.read_table(fixture / INDEX_FILE)
    first = template.to_pylist()[0]
    rng = np.random.default_rng(0)
    entries, written = [], {}
    for r in range(COUNT_ROWS):
        row = _random_row(rng, shape)
        chunk = version / FEATURES_DIR / ARRAY_NAME / "c" / str(r) / "0" / "0" / "0"
        chunk.parent.mkdir(parents=True)
        chunk.write_bytes(row.tobytes())
        entries.append(
            {**first, "item": f"v{r:05d}", "row": r, "checksum": row_checksum(row, None)}
        )
        if r % 97 == 0:
            written[r] = row
    pq.write_table(pa.Table.from_pylist(entries, schema=template.schema), version / INDEX_FILE)
    store = FeatureStore(version)
    got = store.read_rows(sorted(written))
    assert store.format == 1 and store.n_rows == len(store.index()) == COUNT_ROWS
    assert np.array_equal(got, np.stack([written[r] for r in sorted(written)]))
    files = [key for key, _ in store.path.walk()]
    chunks = [key for key in files if "/c/" in key]
    others = sorted(set(files) - set(chunks))
    print(
        f"format 1, {COUNT_ROWS} rows (tests/fixtures/store_v1 scaled, read back): {len(files)} "
        f"files = {len(chunks)} chunk files + {', '.join(others)}"
    )
    shutil.rmtree(root)
    return len(files)


# -- verify -----------------------------------------------------------------------------------


def verify_rate(store: Any, repeats: int) -> None:
    """`store verify` against a plain sequential read of the store's shard files."""
    path = store.path.path
    files = sorted(
        (p for p in path.rglob("*") if p.is_file() and "/c/" in str(p.relative_to(path))),
        key=lambda p: int(p.relative_to(path).parts[3]),
    )
    total = sum(f.stat().st_size for f in files)
    buffer = bytearray(max(f.stat().st_size for f in files))
    view = memoryview(buffer)
    n_items = len(store.index())
    reports = []

    def plain_read() -> float:
        start = time.perf_counter()
        for file in files:
            with open(file, "rb", buffering=0) as f:
                f.readinto(view)
        return time.perf_counter() - start

    def verify() -> float:
        start = time.perf_counter()
        report = store.verify()
        seconds = time.perf_counter() - start
        assert report.ok and report.n_checked == n_items, report.describe()
        reports.append(report)
        return seconds

    for label, prepare in (("cold", lambda: _drop_cache(path)), ("warm", None)):
        if label == "cold":  # the first read of files just written is slower, whoever reads
            _drop_cache(path)
            plain_read()
        else:
            plain_read()  # one untimed pass puts every file in the page cache
        t_verify, t_plain, ratios = _alternate(verify, plain_read, repeats, prepare)
        print(
            f"store verify ({label}), {n_items} rows in {len(files)} shards, "
            f"{total / 1e9:.2f} GB: {total / t_verify / 1e9:.2f} GB/s ({t_verify:.2f} s; verify "
            f"itself said {reports[-1].rate / 1e9:.2f} GB/s); plain sequential read "
            f"{total / t_plain / 1e9:.2f} GB/s ({t_plain:.2f} s)"
        )
        _ratio(f"verify / plain read ({label})", ratios, 0.7)


# -- checksum costs ---------------------------------------------------------------------------


def checksum_costs(root: Path, rows: list[np.ndarray], n: int, repeats: int) -> None:
    import featurizer.store.writing as store_module
    from featurizer.store.layout import CHECKSUM

    shape = rows[0].shape
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    kept: list[Any] = []
    real_checksum = store_module.row_checksum
    for attempt in range(repeats):
        for with_checksum in (True, False) if attempt % 2 == 0 else (False, True):
            store_module.row_checksum = real_checksum if with_checksum else (lambda data, item: 0)
            try:
                store = _fresh_store(root / f"w{attempt}-{with_checksum}", shape)
                os.sync()  # the last run's deletes
                times[with_checksum].append(_write_rows(store, rows, n))
            finally:
                store_module.row_checksum = real_checksum
            if attempt == 0 and with_checksum:
                kept.append(store)
            else:
                shutil.rmtree(store.path.path.parent)
    mb = n * rows[0].nbytes / 1e6
    start = time.perf_counter()
    for i in range(n):
        real_checksum(rows[i % len(rows)], "item")
    hash_s = time.perf_counter() - start
    print(
        f"checksum alone ({CHECKSUM}): {mb / hash_s / 1e3:.1f} GB/s, "
        f"{hash_s / n * 1e6:.0f} us per row"
    )
    labels = ("rows gathered (write + commit, in memory)", "+ publish (shards written, fsynced)")
    for part, label in enumerate(labels):
        t_with, t_without = (statistics.median(t[part] for t in times[flag]) for flag in (1, 0))
        ratios = _pair_ratios([t[part] for t in times[True]], [t[part] for t in times[False]])
        print(
            f"write, {label}, {n} rows ({mb:.0f} MB), median of {repeats}: "
            f"{mb / t_with:.0f} MB/s with checksums, {mb / t_without:.0f} MB/s without; the "
            f"hash alone would make the ratio {t_without / (t_without + hash_s):.3f}"
        )
        # in memory, the hash is most of the work besides a copy: no target, the hash-alone
        # figure above is the ceiling; with the shards written, the write hides it
        target = None if part == 0 else 0.95
        _ratio(f"write with / without checksums ({label.split(' (')[0]})", ratios, target)

    store = kept[0]
    all_rows = np.arange(n)
    batch = max(1, (64 << 20) // rows[0].nbytes)  # rows per call: recmodel's 64 MB reads

    def read(check: bool) -> float:
        start = time.perf_counter()
        for first in range(0, n, batch):
            store.read_rows(all_rows[first : first + batch], check=check)
        return time.perf_counter() - start

    cases = (("page cache", None), ("cold", lambda: _drop_cache(store.path.path)))
    for label, prepare in cases:
        read(True)  # warm up (and touch every page once)
        t_with, t_without, ratios = _alternate(
            lambda: read(True), lambda: read(False), repeats, prepare
        )
        print(
            f"read_rows ({label}), median of {repeats}: {mb / t_with:.0f} MB/s checked, "
            f"{mb / t_without:.0f} MB/s unchecked; the hash alone would make the ratio "
            f"{t_without / (t_without + hash_s):.3f}"
        )
        _ratio(f"read checked / unchecked ({label})", ratios, 0.95)


def _write_rows(store: Any, rows: list[np.ndarray], n: int) -> tuple[float, float]:
    """Seconds to write and commit n rows, and to that plus publish (which writes the shards)."""
    with store.writer() as w:
        allocated = w.allocate(n)
        row_writer = w.row_writer()
        start = time.perf_counter()
        for i, r in enumerate(allocated):
            checksum = row_writer.write(r, rows[i % len(rows)], item=f"item{i}")
            w.commit(f"item{i}", r, "0" * 64, 0, 0, prompt_sha256="0" * 64, checksum=checksum)
        written = time.perf_counter() - start
        w.publish()  # writes the shards, then commits the index
        return written, time.perf_counter() - start


# -- the S3 server ----------------------------------------------------------------------------

_MOTO = """
import logging, sys
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@contextmanager
def moto_server(spill: Path) -> Iterator[str]:
    """moto's S3 server on loopback, in a process of its own (so that it does not share the
    bench's GIL), its large objects spilled under `spill`; yields its endpoint."""
    spill.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", _MOTO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(spill)},
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- helpers ----------------------------------------------------------------------------------


def _fresh_store(root: Any, shape: tuple[int, ...]) -> Any:
    from featurizer.config import ExtractorConfig
    from featurizer.store import FeatureStore

    L, K, D = shape
    config = ExtractorConfig(model="bench-store", layers=tuple(range(L)), k_tokens=K)
    return FeatureStore.create_or_open(root, config, hidden_size=D)


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
    first: Callable[[], float],
    second: Callable[[], float],
    repeats: int,
    prepare: Callable[[], None] | None = None,
) -> tuple[float, float, list[float]]:
    """Median seconds of `first` and of `second` (each returns the seconds it timed), run
    alternately (AB BA AB ...: neither always goes first), `prepare` before each; and
    second/first of each adjacent pair."""
    times: tuple[list[float], list[float]] = ([], [])
    pairs = ((first, times[0]), (second, times[1]))
    for attempt in range(repeats):
        for fn, out in pairs if attempt % 2 == 0 else pairs[::-1]:
            if prepare is not None:
                prepare()
            out.append(fn())
    return statistics.median(times[0]), statistics.median(times[1]), _pair_ratios(*times)


def _pair_ratios(slow: list[float], fast: list[float]) -> list[float]:
    """fast/slow of each pair of runs made next to each other: their median is steadier on a
    noisy machine than a ratio of medians, since neighbours share the machine's state."""
    return [f / s for s, f in zip(slow, fast, strict=True)]


def _ratio(name: str, ratios: list[float], target: float | None) -> None:
    aim = f"target >= {target}; " if target is not None else ""
    print(
        f"RATIO {name} = {statistics.median(ratios):.3f}  ({aim}"
        f"{len(ratios)} pairs from {min(ratios):.3f} to {max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
