"""The store's bookkeeping at catalog sizes (featurizer.store.log): what a commit costs, what the
index costs in bytes and memory, and what a reader pays to ask about a few items, at 10k, 100k
and 1M committed items, all from one run; then the incremental-shards figures; then the same
commit loop through deltalake (delta-rs) for comparison. Rows are (1, 2, 8) float16 (D small:
only bookkeeping counts).

- commits: the store API driven as extraction drives it: groups of 64 videos, one allocation and
  one row writer each, the group's 64 commits, a publish per group; the publish time of a
  group at N items is the mean over the groups between N/2 and N (the folds into checkpoints
  that fall there included: their cost, amortized, is what a group pays). RATIO publish at 1M /
  at 10k (target <= 1.5);
- index bytes: every byte the log wrote (deltas, tiers, checkpoints), over N (target <= 2 KB
  a video);
- peak RSS of this (the writing) process at 1M (target <= 1.5 GB), and what a reader holds per
  item once it has the whole index (training's row lookups);
- FeatureStore.open + pending for 1,000 new items against the 1M-item store, in a fresh process
  (target <= 2 s), and the same for 1,000 stored items;
- incremental shards: 100 runs of 10 videos each into a store on a local S3 server (moto, in a
  process of its own), then `store compact` (retain 0): objects per 1,000 videos (target <= 20)
  and every row read back byte-identical;
- deltalake: the same groups of 64 appended to a Delta table (write_deltalake, mode="append")
  until --delta-items, its commit time at each mark, to set against the log's.

    python bench/scale.py [--items 1000000] [--delta-items 100000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHAPE = (1, 2, 8)  # (L, K, D): a 32-byte row
GROUP = 64
MARKS = (10_000, 100_000, 1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--delta-items", type=int, default=100_000)
    parser.add_argument("--incremental-runs", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the scratch directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.dir))
    try:
        marks = [m for m in MARKS if m <= args.items] or [args.items]
        store_path = commits(work / "store", args.items, marks)
        asks(store_path, args.items)
        incremental(work / "moto", args.incremental_runs)
        if args.delta_items:
            deltalake_commits(
                work / "delta", args.delta_items, [m for m in MARKS if m <= args.delta_items]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _config() -> Any:
    from featurizer.config import ExtractorConfig

    L, K, _ = SHAPE
    return ExtractorConfig(model="bench-scale", layers=tuple(range(L)), k_tokens=K, new_tokens=1)


def commits(root: Path, n_items: int, marks: list[int]) -> Path:
    """The commit loop; prints a line per mark and the RATIO lines; returns the version."""
    from featurizer.store import FeatureStore
    from featurizer.store import log as store_log

    written = [0]
    write = store_log._write

    def counted(location, table, meta, *args, **kwargs):  # noqa: ANN001, ANN202
        created = write(location, table, meta, *args, **kwargs)
        written[0] += location.size() or 0
        return created

    store_log._write = counted
    store = FeatureStore.create_or_open(root, _config(), hidden_size=SHAPE[2])
    row = np.ones(SHAPE, np.float16)
    seconds: list[float] = []  # publish time of each group
    results: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    done = 0
    with store.writer() as writer:
        while done < n_items:
            rows = writer.allocate(GROUP)
            row_writer = writer.row_writer()
            for i, r in enumerate(rows):
                item = f"v{done + i:09d}"
                row_writer.write(r, row, item=item)
                writer.commit(item, r, f"{done + i:064x}", 1, 1, prompt_sha256="p" * 64)
            t0 = time.perf_counter()
            writer.publish()
            seconds.append(time.perf_counter() - t0)
            done += GROUP
            for mark in marks:
                if done >= mark and mark not in results:
                    half = seconds[len(seconds) // 2 :]
                    results[mark] = {
                        "mean_ms": 1e3 * float(np.mean(half)),
                        "median_ms": 1e3 * float(np.median(half)),
                        "bytes_per_item": written[0] / done,
                        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                    }
                    r_ = results[mark]
                    print(
                        f"{mark:>9,} items: publish {r_['mean_ms']:.1f} ms a group (mean over "
                        f"{len(half)} groups, folds included; median {r_['median_ms']:.1f} ms); "
                        f"index bytes {r_['bytes_per_item']:.0f} B an item; peak RSS "
                        f"{r_['rss_gb']:.2f} GB; {time.perf_counter() - started:.0f} s so far",
                        flush=True,
                    )
    store_log._write = write
    first, last = results[marks[0]], results[marks[-1]]
    print(
        f"RATIO publish at {marks[-1]:,} / at {marks[0]:,} = {last['mean_ms'] / first['mean_ms']:.2f}"
        f"  (target <= 1.5; medians {last['median_ms'] / first['median_ms']:.2f})"
    )
    print(
        f"RATIO index bytes / item at {marks[-1]:,} = {last['bytes_per_item']:.0f} B  (target <= 2048)"
    )
    print(f"RATIO peak RSS at {marks[-1]:,} = {last['rss_gb']:.2f} GB  (target <= 1.5)")
    head = store_log.read_head(store.path)
    print(
        f"  the log at the end: checkpoint at commit {head.checkpoint.last} "
        f"({len(head.checkpoint.meta.get('parts') or [1])} parts), {len(head.cover)} files after it"
    )
    return store.path.path


_ASK = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
t0 = time.perf_counter()
from featurizer.store import FeatureStore
imported = time.perf_counter()
store = FeatureStore.open({path!r})
numbers = [i * {step} for i in range(1000)]
items = [f"new{{i:06d}}" for i in numbers] if {new} else [f"v{{i:09d}}" for i in numbers]
pending = store.index_view.pending(items, [f"{{i:064x}}" for i in numbers])
asked = time.perf_counter()
state = store.index_view.state()  # what training's row lookups hold: the slim index and
index = store.index_view.row_index()  # its rows' arrays
held = state.nbytes + sum(a.nbytes for a in (index.rows, index.checksums, index.has_checksum,
                                             index.offsets, index.has_offset)) + index.items.nbytes
print(json.dumps({{"seconds": asked - imported, "pending": pending.num_rows, "rows": len(index.rows),
                  "held": held}}))
"""


def asks(version: Path, n_items: int) -> None:
    """open + pending for 1,000 items, in a fresh process (nothing cached)."""
    for new in (True, False):
        code = _ASK.format(repo=str(REPO), path=str(version), new=new, step=max(n_items // 1000, 1))
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        found = json.loads(out.stdout.strip().splitlines()[-1])
        what = "new" if new else "stored"
        print(
            f"open + pending for 1,000 {what} items against {n_items:,}: {found['seconds']:.2f} s "
            f"({found['pending']} pending)"
        )
        if new:
            print(
                f"RATIO open + pending (1,000 new items, {n_items:,} stored) = {found['seconds']:.2f} s  (target <= 2)"
            )
        else:
            per_item = found["held"] / max(found["rows"], 1)
            print(
                f"  a reader's whole index for row lookups: {per_item:.0f} B an item (Arrow and numpy)"
            )


def incremental(spill: Path, runs: int) -> None:
    """`runs` extraction-sized runs of 10 videos on S3, then compact: objects and bytes."""
    sys.path.insert(0, str(REPO / "bench"))
    from store import moto_server

    from featurizer.store import FeatureStore
    from featurizer.store.compaction import compact
    from tests.s3 import S3Server, environment

    with moto_server(spill) as endpoint:
        server = S3Server(endpoint, None)
        with environment(server.env()):
            root = f"s3://{server.bucket()}/store"
            store = FeatureStore.create_or_open(root, _config(), hidden_size=SHAPE[2])
            rng = np.random.default_rng(0)
            for run in range(runs):
                with store.writer() as writer:
                    rows = writer.allocate(10)
                    row_writer = writer.row_writer()
                    for i, r in enumerate(rows):
                        item = f"v{run:03d}{i}"
                        row_writer.write(
                            r, rng.standard_normal(SHAPE).astype(np.float16), item=item
                        )
                        writer.commit(item, r, f"sha-{item}", 1, 1)
            items = sorted(store.index())
            before = store.read(items).tobytes()
            objects_before = len(store.path.walk())
            summary = compact(store, retain=0)
            after = FeatureStore(store.path)
            objects = len(after.path.walk())
            same = after.read(items).tobytes() == before
            print(
                f"incremental: {runs} runs of 10 videos: {objects_before} objects; "
                f"{summary.describe()}"
            )
            print(
                f"RATIO objects per 1,000 videos after compact = {objects * 1000 / len(items):.0f}"
                f"  (target <= 20); rows byte-identical: {same}; verify "
                f"{'OK' if after.verify().ok else 'FAILED'}"
            )


def deltalake_commits(root: Path, n_items: int, marks: list[int]) -> None:
    """The same commit loop through deltalake: one append of a group's 64 entries a publish."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from featurizer.store.log import ENTRY_SCHEMA

    schema = pa.schema([f for f in ENTRY_SCHEMA])
    write_deltalake(str(root), schema.empty_table(), mode="overwrite")
    table = DeltaTable(str(root))
    seconds: list[float] = []
    done, seq = 0, 1
    results: dict[int, float] = {}
    while done < n_items:
        group = {name: pa.nulls(GROUP, schema.field(name).type) for name in schema.names}
        group["item"] = pa.array([f"v{done + i:09d}" for i in range(GROUP)])
        group["row"] = pa.array(np.arange(done, done + GROUP))
        group["source_sha256"] = pa.array([f"{done + i:064x}" for i in range(GROUP)])
        group["seq"] = pa.array(np.full(GROUP, seq))
        t0 = time.perf_counter()
        write_deltalake(table, pa.table(group, schema=schema), mode="append")
        seconds.append(time.perf_counter() - t0)
        done, seq = done + GROUP, seq + 1
        for mark in marks:
            if done >= mark and mark not in results:
                results[mark] = 1e3 * float(np.mean(seconds[len(seconds) // 2 :]))
                print(
                    f"deltalake {mark:>9,} items: append {results[mark]:.1f} ms a group", flush=True
                )
    t0 = time.perf_counter()
    state = DeltaTable(str(root)).to_pyarrow_table()
    print(
        f"deltalake: read the table ({state.num_rows:,} entries, {len(table.file_uris()):,} files) "
        f"in {time.perf_counter() - t0:.2f} s, before the latest-per-item fold a reader still needs"
    )
    if len(results) > 1:
        first, last = results[marks[0]], results[marks[-1]]
        print(f"RATIO deltalake append at {marks[-1]:,} / at {marks[0]:,} = {last / first:.2f}")


if __name__ == "__main__":
    main()
