"""The multi-node run of tests/faults/test_nodes.py, in a process of its own (a Ray cluster must
be the only Ray of its process): an S3 server (moto) and a two-node Ray cluster on loopback,
extraction actors placed on the worker node writing into the object store while the driver
commits, the worker node killed mid-run, a new node and a rerun, and Ray Train with one worker
on each node reading the same store. Prints one JSON line: what each step saw.

    python -m tests.faults.nodes_scenario DATASET MODEL WORKDIR
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

KILL_VIDEOS = 6  # videos added for the run whose node is killed (two groups of 3)
NO_PROGRESS_S = 12  # how long that run waits for a node its actors can run on


def main(dataset: Path, model: Path, work: Path) -> dict:
    from pipelines import hooks
    from tests.s3 import s3_server
    from tests.worker_hooks import EnvHooks

    hooks.install(EnvHooks())  # the node log, the model-call log and the slower model below
    result: dict = {}
    with s3_server() as s3:
        os.environ.update(s3.env())  # before the nodes start: their workers inherit it
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's sockets on loopback too
        os.environ["LINKEDOUT_NODE_LOG"] = str(work / "nodes.log")
        store = f"s3://{s3.bucket()}/store"
        run_cluster(dataset, model, work, store, result)
    return result


def run_cluster(dataset: Path, model: Path, work: Path, store: str, result: dict) -> None:
    import ray
    from ray.data import DataContext

    from featurizer.config import load_preset
    from featurizer.store import FeatureStore
    from pipelines.dataset.ingest import ingest
    from pipelines.errors import PipelineError
    from pipelines.extraction.extract import extract_catalog
    from pipelines.training.run import train_run
    from tests.faults.cluster import add_node, loopback_cluster, non_loopback_listeners

    config = load_preset("demo").replace(model=str(model), prompts=())
    version = f"{store}/{config.fingerprint()}"
    place = {"actor_resources": {"extract_node": 1.0}, "actors": 1, "progress": False}
    short = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # unix socket paths <= 107 bytes
    with loopback_cluster(short, head_cpus=2) as cluster:
        worker = add_node(cluster, num_cpus=2, resources={"extract_node": 1})
        result["driver_node"] = ray.get_runtime_context().get_node_id()
        result["worker_node"] = worker.node_id

        # 1. actors on the worker node, into the object store; the driver commits
        first = _videos(dataset, work / "dataset", skip=KILL_VIDEOS)
        summary = extract_catalog(first, store, config, **place)
        result["first"] = {"extracted": summary.extracted, "failed": summary.failed}
        result["listeners"] = non_loopback_listeners()

        # 2. the worker node killed mid-run, after the run published its first group
        for video in sorted((dataset / "videos").glob("*.mp4"))[:KILL_VIDEOS]:
            shutil.copyfile(video, first / "videos" / video.name)
        before = _published(version)
        box: dict = {}

        def extract() -> None:
            try:
                box["summary"] = extract_catalog(first, store, config, **place)
            except PipelineError as exc:
                box["error"] = str(exc)

        thread = threading.Thread(target=extract)
        calls = work / "calls.log"  # a line per model call
        os.environ["LINKEDOUT_INVOCATION_LOG"] = str(calls)
        # without a node for its actors, the pool stops after this long, as one line
        DataContext.get_current().execution_no_progress_timeout_s = NO_PROGRESS_S
        os.environ["LINKEDOUT_FAULT_DELAY_S"] = "1"  # a slower model: the kill lands mid-run
        thread.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and thread.is_alive():  # in its second group
            if calls.exists() and len(calls.read_text().split()) >= 4:
                break
            time.sleep(0.05)
        published = _published(version)
        worker.kill_raylet()  # SIGKILL: the node dies with its workers, as a lost machine
        cluster.remove_node(worker, allow_graceful=False)  # the main thread: Ray needs it
        thread.join(300)
        del os.environ["LINKEDOUT_FAULT_DELAY_S"], os.environ["LINKEDOUT_INVOCATION_LOG"]
        DataContext.get_current().execution_no_progress_timeout_s = 1800  # Ray's default
        after = _published(version)
        result["kill"] = {
            "published_before": len(before),
            "published_at_kill": len(published),
            "published_after": len(after),  # results returned before the pool stopped count
            "error": box.get("error", ""),
            "finished": "summary" in box,
            "lost": sorted(item for item, row in published.items() if after.get(item) != row),
        }

        # 3. a new node, a rerun completes; a third run extracts nothing
        add_node(cluster, num_cpus=2, resources={"extract_node": 1})
        rerun = extract_catalog(first, store, config, **place)
        again = extract_catalog(first, store, config, **place)
        final = _published(version)
        result["rerun"] = {
            "extracted": rerun.extracted,
            "again": again.extracted,
            "items": len(final),
            "lost": sorted(item for item, row in published.items() if final.get(item) != row),
            "verify_ok": FeatureStore.open(version).verify().ok,
        }

        # 4. Ray Train, one worker on each node, both reading the store
        ingest(first)
        trained = train_run(
            first,
            store,
            work / "run",
            variant="full",
            epochs=1,
            workers=2,
            train_overrides={"placement": "STRICT_SPREAD", "rendezvous": "file"},
            progress=False,
        )
        result["train"] = {"hr@10": trained.metrics["test"]["overall"]["hr@10"]}
        result["listeners_end"] = non_loopback_listeners()
    nodes = (work / "nodes.log").read_text().split("\n") if (work / "nodes.log").exists() else []
    result["extract_nodes"] = sorted({n.split()[1] for n in nodes if n.startswith("extract ")})
    result["train_nodes"] = sorted({n.split()[1] for n in nodes if n.startswith("train ")})
    shutil.rmtree(short, ignore_errors=True)


def _videos(dataset: Path, to: Path, skip: int) -> Path:
    """A copy of `dataset` without its first `skip` videos (added later)."""
    shutil.copytree(dataset, to)
    for video in sorted((to / "videos").glob("*.mp4"))[:skip]:
        video.unlink()
    return to


def _published(version: str) -> dict[str, int]:
    """item -> the checksum of its committed row (its bytes, bound to it: compaction may move
    a row, never change it), as a reader sees it now."""
    from featurizer.store import FeatureStore, StoreError

    try:
        table = FeatureStore(version).index_table()
    except StoreError:
        return {}
    return {r["item"]: r["checksum"] for r in table.select(["item", "checksum"]).to_pylist()}


if __name__ == "__main__":
    found = main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    print("RESULT=" + json.dumps(found))
