"""What one tick of new_videos_sensor costs (time, peak memory) over a local dataset of 10k and
of 1M videos, and over a 10k-video dataset on a local S3 server, all from one run. The videos
are 1-byte .mp4 files (a tick only lists and stats them); the store's version is a tiny
extractor whose index holds every video but the last PENDING as a failure row (what the sensor
looks up is the same for a row and a failure row), so a listing goes to its end and finds
PENDING videos to request.

Cases, each tick in a fresh process (timed on its second tick, the first warms the imports;
memory from a third under tracemalloc; the Dagster instance the tick asks about runs in flight
is made before):

- changed: the directory changed since the last tick: a full listing, a page at a time, each
  page looked up in the store: time per video should stay about constant (RATIO 1M/10k of the
  time per video near 1), memory a page plus the request;
- unchanged: the directory's mtime and the store's last commit as the last tick saw them, which
  found nothing pending: no listing at all (RATIO 1M/10k of the tick's time near 1);
- nothing extracted: a store version without the videos: the listing stops at the cap
  (LINKEDOUT_SENSOR_BATCH, 4096) whatever the dataset's size (RATIO near 1);
- s3 changed: the 10k dataset as objects on moto (listed in pages of 1,000).

    python bench/sensor.py [--items 1000000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PENDING = 100  # videos the store lacks in the "changed" cases
SMALL = 10_000

_TICK = """
import contextlib, json, os, resource, sys, time, tracemalloc
sys.path.insert(0, {repo!r})
import dagster as dg
import pyarrow as pa
from dagster_project.resources import ExtractorPreset, LinkedOutPaths
from dagster_project.sensors import new_videos_sensor
from featurizer.config import ExtractorConfig

class BenchExtractor(ExtractorPreset):
    def config(self):
        return ExtractorConfig(model="bench-sensor", layers=(0,), k_tokens=2, new_tokens=1)

kept = contextlib.ExitStack()  # holds the instance (and its directory) to the end
instance = kept.enter_context(dg.instance_for_test())  # its setup is no part of a tick

def tick(cursor):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={{
            "paths": LinkedOutPaths(dataset_dir={dataset!r}, store_dir={store!r}),
            "extractor": BenchExtractor(),
        }},
    )
    return new_videos_sensor(context)

cursor = {cursor!r}
tick(cursor)
t0 = time.perf_counter()
result = tick(cursor)
seconds = time.perf_counter() - t0
tracemalloc.start()
tick(cursor)
python_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
requests = getattr(result, "run_requests", None) or []
items = sum(len(r.run_config["ops"]["video_features"]["config"]["items"]) for r in requests)
print(json.dumps({{
    "seconds": seconds, "python_peak": python_peak,
    "arrow_peak": pa.default_memory_pool().max_memory(),
    "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "requested": items, "cursor": getattr(result, "cursor", None) or cursor,
    "skipped": isinstance(result, dg.SkipReason) or not requests,
}}))
"""


def tick(dataset: str, store: str, cursor: str | None, env: dict[str, str] | None = None) -> dict:
    code = _TICK.format(repo=str(REPO), dataset=dataset, store=store, cursor=cursor)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if out.returncode:
        raise SystemExit(f"tick failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _config() -> Any:
    from featurizer.config import ExtractorConfig

    return ExtractorConfig(model="bench-sensor", layers=(0,), k_tokens=2, new_tokens=1)


def fail_items(root: str, start: int, stop: int) -> None:
    """Items v{start}..v{stop - 1} as failure rows in the bench extractor's version."""
    from featurizer.store import FeatureStore

    version = FeatureStore.create_or_open(root, _config(), hidden_size=8)
    with version.writer() as writer:
        for i in range(start, stop):
            writer.fail(f"v{i:09d}", "decode", "bench")
            if i % 50_000 == 49_999:
                writer.publish()


def make_local_dataset(root: Path, n_items: int) -> float:
    """`n_items` 1-byte videos in root/videos; the seconds it took."""
    started = time.perf_counter()
    videos = root / "videos"
    videos.mkdir(parents=True)
    for i in range(n_items):
        with open(videos / f"v{i:09d}.mp4", "wb") as f:
            f.write(b"\0")
    return time.perf_counter() - started


def _line(label: str, n: int, found: dict) -> None:
    per_video = 1e6 * found["seconds"] / n
    print(
        f"{label} {n:>9,} videos: tick {found['seconds']:.3f} s ({per_video:.1f} us/video), "
        f"python peak {found['python_peak'] / 2**20:.1f} MB, arrow peak "
        f"{found['arrow_peak'] / 2**20:.1f} MB, process RSS {found['rss'] / 2**20:.0f} MB, "
        f"requested {found['requested']}{' (skipped)' if found['skipped'] else ''}"
    )


def local_cases(work: Path, n_items: int) -> dict[str, dict]:
    dataset = work / f"dataset-{n_items}"
    made = make_local_dataset(dataset, n_items)
    print(f"(made {n_items:,} files in {made:.0f} s)")
    store = str(work / f"store-{n_items}")
    fail_items(store, 0, n_items - PENDING)
    found = {}
    found["changed"] = tick(str(dataset), store, None)
    _line("changed (full listing)     ", n_items, found["changed"])
    fail_items(store, n_items - PENDING, n_items)  # the run did them: nothing pending now
    settled = tick(str(dataset), store, found["changed"]["cursor"])  # lists once more: none
    found["unchanged"] = tick(str(dataset), store, settled["cursor"])
    _line("unchanged (no listing)     ", n_items, found["unchanged"])
    found["empty"] = tick(str(dataset), str(work / f"empty-store-{n_items}"), None)
    _line("nothing extracted (capped) ", n_items, found["empty"])
    shutil.rmtree(dataset)
    return found


def s3_case(work: Path, n_items: int) -> dict:
    sys.path.insert(0, str(REPO / "bench"))
    from store import moto_server

    from tests.s3 import S3Server

    with moto_server(work / "moto") as endpoint:
        server = S3Server(endpoint, None)
        bucket = server.bucket()
        client = server.client()

        def put(i: int) -> None:
            client.put_object(Bucket=bucket, Key=f"dataset/videos/v{i:09d}.mp4", Body=b"\0")

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(n_items)))
        print(f"(put {n_items:,} objects in {time.perf_counter() - started:.0f} s)")
        store = str(work / "store-s3")
        fail_items(store, 0, n_items - PENDING)
        found = tick(f"s3://{bucket}/dataset", store, None, env=server.env())
        _line("s3 changed (full listing)  ", n_items, found)
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the scratch directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sensor-", dir=args.dir))
    try:
        small = local_cases(work, SMALL)
        large = local_cases(work, args.items)
        s3_case(work, SMALL)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scale = f"{args.items:,}/{SMALL:,}"
    changed = (large["changed"]["seconds"] / args.items) / (small["changed"]["seconds"] / SMALL)
    print(f"RATIO changed tick, time per video {scale} = {changed:.2f}  (target ~1)")
    for case in ("unchanged", "empty"):
        ratio = large[case]["seconds"] / small[case]["seconds"]
        print(f"RATIO {case} tick time {scale} = {ratio:.2f}  (target ~1)")
    peak = large["changed"]["python_peak"] / small["changed"]["python_peak"]
    print(f"RATIO changed tick python peak {scale} = {peak:.2f}  (target ~1)")


if __name__ == "__main__":
    main()
