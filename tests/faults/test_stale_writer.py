"""A writer of an s3:// store that was paused until its lease lapsed (SIGSTOP, a long GC, a
frozen VM) while another writer took the version over: when it wakes it writes nothing over
what the other committed, creates no index snapshot, and stops in one line. Shard objects are
created, never replaced, on S3 as on a local disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featurizer.config import ExtractorConfig
from featurizer.errors import ShardTakenError
from featurizer.store import FeatureStore
from featurizer.store.lease import Fence
from featurizer.store.writing import RowWriter
from tests.faults.conftest import REPO, cli_env
from tests.s3 import environment

CONFIG = ExtractorConfig(model="stale", layers=(0, 1), k_tokens=4, new_tokens=2)
D = 8
LEASE_SECONDS = 2.0


def _write(store: FeatureStore, items: list[str], value: float) -> None:
    with store.writer() as writer:
        rows = writer.allocate(len(items))
        row_writer = writer.row_writer()
        for item, row in zip(items, rows, strict=True):
            row_writer.write(row, np.full(store.shape_per_item, value, np.float16), item=item)
            writer.commit(item, row, f"sha-{item}", 4, 2)


def _index_files(store: FeatureStore) -> list[str]:
    return sorted(key for key, _ in store.path.walk() if key.startswith("index/"))


def _objects(store: FeatureStore) -> dict[str, bytes]:
    return {key: (store.path / key).read_bytes() for key, _ in store.path.walk() if "/c/" in key}


def test_a_writer_that_lost_its_lease_overwrites_nothing_and_stops_in_one_line(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_report
) -> None:
    import featurizer.store.lease as lease

    monkeypatch.setattr(lease, "LEASE_SECONDS", LEASE_SECONDS)
    with environment(s3.env()):
        root = f"s3://{s3.bucket()}/store"
        store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
        stale = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.stale_writer", str(store.path), str(LEASE_SECONDS),
             "a1", "a2"],
            cwd=REPO, env=cli_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert stale.stdout.readline().strip() == "ready"  # its rows gathered for shard 0
            os.kill(stale.pid, signal.SIGSTOP)
            time.sleep(LEASE_SECONDS * 1.5)  # its lease lapses while it sleeps
            _write(store, ["b1", "b2", "b3", "b4"], 7.0)  # takes the lease, commits shard 0
            committed, index = _objects(store), _index_files(store)
            os.kill(stale.pid, signal.SIGCONT)
            _, stderr = stale.communicate("go\n", timeout=60)
        finally:
            if stale.poll() is None:
                os.kill(stale.pid, signal.SIGCONT)
                stale.kill()
        after = FeatureStore.open(root, CONFIG.fingerprint())
        report = after.verify()
        overwritten = [key for key, data in committed.items() if _objects(after).get(key) != data]

    line = stderr.strip()
    fault_report.record(
        "a paused S3 writer wakes after another took its lapsed lease and committed",
        survived=stale.returncode == 1 and not overwritten and report.ok,
        lost=len(overwritten),
        message=line,
    )
    assert stale.returncode == 1 and "\n" not in line
    assert "lost its lease" in line and str(store.path) in line
    assert not overwritten and report.ok and report.n_rows == 4
    assert _index_files(after) == index  # no commit of its own, none re-created
    assert np.all(after.read(["b1", "b2", "b3", "b4"]) == 7.0)


def test_a_shard_object_is_created_once_and_never_replaced(tmp_path: Path, fault_report) -> None:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)
    _write(store, ["b1", "b2"], 7.0)
    committed = _objects(store)
    stale = RowWriter(store.path, store.geometries, Fence())  # its fence check has just passed
    stale.write(0, np.full(store.shape_per_item, 1.0, np.float16), item="a1")

    with pytest.raises(ShardTakenError) as info:
        stale.flush()

    line = str(info.value)
    fault_report.record(
        "a writer creates a shard object another writer committed (local disk)",
        survived=_objects(store) == committed,
        lost=0 if _objects(store) == committed else 2,
        message=line,
    )
    assert "exists already" in line and "\n" not in line
    assert _objects(store) == committed and store.verify().ok
