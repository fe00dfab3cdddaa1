"""The store's index as a log (featurizer.store.log): each publish adds a delta of what it
changed, deltas merge in tiers and fold into checkpoints on a geometric rule, and a crash at
any point, or two writers racing for one commit, loses nothing committed; on a local disk and on
an S3 server alike. Compaction rewrites partial shards while readers keep reading, and a store
written before the log reads, takes new commits and compacts."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from featurizer.config import ExtractorConfig
from featurizer.errors import StoreBusyError
from featurizer.store import FeatureStore, log
from featurizer.store.compaction import compact, partial_shards
from featurizer.store.layout import SHARD_ROWS
from tests.s3 import environment

CONFIG = ExtractorConfig(model="log-test", layers=(0, 1), k_tokens=4, new_tokens=2)
D = 8
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v2_snapshots"


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store root on the local disk, or in a bucket of the S3 server the tests start."""
    if request.param == "local":
        yield str(tmp_path / "store")
        return
    s3 = request.getfixturevalue("s3")
    with environment(s3.env()):
        yield f"s3://{s3.bucket()}/store"


@pytest.fixture(autouse=True)
def no_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log as commits leave it: no fold of a small index when a session ends."""
    monkeypatch.setattr(log, "SETTLE_ENTRIES", 0)


@pytest.fixture
def small_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiers of 4 deltas and folds from 8 entries, so a few publishes show them."""
    monkeypatch.setattr(log, "TIER", 4)
    monkeypatch.setattr(log, "FOLD_MIN_ENTRIES", 8)


def _row(i: int) -> np.ndarray:
    return np.full((2, 4, D), i % 1000, np.float16)


def _publish(store: FeatureStore, items: list[str], first: int = 0) -> None:
    """One writing session that commits `items` (one publish)."""
    with store.writer() as writer:
        rows = writer.allocate(len(items))
        row_writer = writer.row_writer()
        for i, (item, row) in enumerate(zip(items, rows, strict=True)):
            row_writer.write(row, _row(first + i), item=item)
            writer.commit(item, row, f"sha-{item}", 2, 2)


def _names(store: FeatureStore, where: str) -> list[str]:
    return (store.path / "index" / where).children()


def _all_rows(store: FeatureStore) -> dict[str, bytes]:
    items = sorted(store.index())
    return {item: row.tobytes() for item, row in zip(items, store.read(items), strict=True)}


def test_a_publish_writes_only_the_entries_it_changed(root: str) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    for k in range(3):
        _publish(store, [f"v{k}-{i}" for i in range(5)], first=5 * k)

    head = log.read_head(store.path)

    assert [f.entries for f in head.cover] == [5, 5, 5]  # not 5, 10, 15: no whole snapshots
    assert len(store.index()) == 15


def test_deltas_merge_in_tiers_and_readers_cover_them_with_few_files(root: str, small_log) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    for k in range(7):  # commits 1..7: deltas, and commits 4..7 merged into one tier
        _publish(store, [f"v{k}"], first=k)

    head = log.read_head(store.path)

    assert f"{4:020d}-{7:020d}.parquet" in _names(store, "log")
    assert [(f.first, f.last) for f in head.cover] == [(1, 1), (2, 2), (3, 3), (4, 7)]
    assert sorted(store.index()) == [f"v{k}" for k in range(7)]


def test_the_log_folds_into_a_checkpoint_when_its_entries_reach_a_share_of_it(
    root: str, small_log
) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    _publish(store, [f"a{i}" for i in range(8)])  # 8 entries since an empty checkpoint: fold
    after_first = _names(store, "checkpoint")
    _publish(store, [f"b{i}" for i in range(3)])  # 3 < 8 / 2: no fold yet
    _publish(store, [f"c{i}" for i in range(3)])  # 6 >= 8 / 2... and < 8: no fold (minimum 8)
    _publish(store, [f"d{i}" for i in range(3)])  # 9 >= max(8, 4): fold

    assert after_first == [f"{1:020d}.parquet"]
    assert _names(store, "checkpoint") == [f"{4:020d}.parquet"]  # the older one pruned
    assert _names(store, "log") == []  # folded, then pruned
    assert len(store.index()) == 17 and store.verify().ok


def test_a_crash_after_a_delta_loses_nothing_it_committed(
    root: str, small_log, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    _publish(store, ["a", "b", "c"])

    def crash(head: log.Head) -> log.Head:
        raise KeyboardInterrupt("killed after its delta")

    monkeypatch.setattr(log, "_merge_tiers", crash)
    with pytest.raises(KeyboardInterrupt):
        _publish(store, ["d", "e"], first=3)
    monkeypatch.undo()
    _publish(FeatureStore(store.path), ["f"], first=5)  # the next writer goes on after it

    reopened = FeatureStore(store.path)
    assert sorted(reopened.index()) == ["a", "b", "c", "d", "e", "f"]
    assert reopened.verify().ok


def test_a_crash_in_the_middle_of_a_checkpoint_loses_nothing_committed(
    root: str, small_log, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    monkeypatch.setattr(log, "PART_ENTRIES", 4)  # a checkpoint of several parts
    _publish(store, [f"a{i}" for i in range(9)])  # folds into parts, then its manifest
    written = log._write

    def crash_at_the_manifest(location, table, meta, *args, **kwargs):  # noqa: ANN001, ANN202
        if "parts" in meta:
            raise KeyboardInterrupt("killed before the checkpoint's manifest")
        return written(location, table, meta, *args, **kwargs)

    monkeypatch.setattr(log, "_write", crash_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        _publish(store, [f"b{i}" for i in range(9)], first=9)
    monkeypatch.setattr(log, "_write", written)

    reader = FeatureStore(store.path)
    assert len(reader.index()) == 18 and reader.verify().ok  # the old checkpoint and deltas
    _publish(reader, [f"c{i}" for i in range(9)], first=18)  # the next fold completes
    assert len(FeatureStore(store.path).index()) == 27 and FeatureStore(store.path).verify().ok


def test_of_two_writers_racing_for_one_commit_one_stops_and_nothing_is_lost(root: str) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    _publish(store, ["a"])
    head = log.read_head(store.path)  # both writers start from this head
    first = _entries(store, ["b"], row=SHARD_ROWS)
    second = _entries(store, ["c"], row=2 * SHARD_ROWS)

    log.append(head, first)
    with pytest.raises(StoreBusyError, match="another writer committed"):
        log.append(head, second)

    assert sorted(FeatureStore(store.path).index_table().column("item").to_pylist()) == [
        "a",
        "b",
    ]


def _entries(store: FeatureStore, items: list[str], row: int):  # noqa: ANN202
    import pyarrow as pa

    schema = pa.schema([f for f in log.ENTRY_SCHEMA if f.name != "seq"])
    entries = [
        {"item": item, "row": row + i, "source_sha256": f"sha-{item}", "checksum": 1, "offset": 0}
        for i, item in enumerate(items)
    ]
    return pa.Table.from_pylist(
        [{n: e.get(n) for n in schema.names} for e in entries], schema=schema
    )


def test_compaction_rewrites_partial_shards_into_full_ones_byte_for_byte(root: str) -> None:
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    for run in range(8):  # eight incremental runs of 10 videos: eight partial shards
        _publish(store, [f"v{run:02d}{i}" for i in range(10)], first=10 * run)
    before = _all_rows(store)
    assert partial_shards(store) == (8, 8)

    summary = compact(store, retain=0)

    after = FeatureStore(store.path)
    shards = [k for k, _ in after.path.walk() if "/c/" in k]
    assert _all_rows(after) == before
    assert summary.moved == 80 and len(shards) == 2 and partial_shards(after) == (1, 2)
    assert after.verify().ok


def test_a_small_index_folds_when_its_writing_session_ends(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log, "SETTLE_ENTRIES", 4096)
    store = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    for k in range(3):
        _publish(store, [f"v{k}-{i}" for i in range(5)], first=5 * k)

    assert _names(store, "log") == []  # three runs, one checkpoint
    assert _names(store, "checkpoint") == [f"{3:020d}.parquet"]
    assert len(store.index()) == 15


def test_a_reader_reads_the_same_rows_while_compaction_runs(tmp_path: Path) -> None:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)
    for run in range(6):
        _publish(store, [f"v{run}{i}" for i in range(20)], first=20 * run)
    reader = FeatureStore(store.path)
    expected = _all_rows(reader)
    seen: list[bool] = []
    done = threading.Event()

    def read_all_the_time() -> None:
        while not done.is_set():
            try:
                seen.append(_all_rows(reader) == expected)
            except Exception:  # noqa: BLE001 - a reader that fails is what this test is about
                seen.append(False)

    thread = threading.Thread(target=read_all_the_time)
    thread.start()
    try:
        compact(FeatureStore(store.path))  # retired shards are kept for the readers
    finally:
        done.set()
        thread.join()
    seen.append(_all_rows(reader) == expected)

    assert seen and all(seen)
    assert _all_rows(FeatureStore(store.path)) == expected


def test_a_store_written_before_the_log_reads_takes_commits_compacts_and_verifies(
    tmp_path: Path,
) -> None:
    root = Path(shutil.copytree(FIXTURE / "store", tmp_path / "store"))
    written = dict(np.load(FIXTURE / "rows.npz"))
    store = FeatureStore.open(root)
    assert store.verify().ok
    assert sorted(store.index()) == ["a", "b", "c"] and len(store.extraction_runs()) == 1

    with store.writer() as writer:  # a new commit, after the snapshot
        (row,) = writer.allocate(1)
        writer.row_writer().write(row, np.ones((3, 8, 16), np.float16), item="e")
        writer.commit("e", row, "sha-e", 6, 2)
    compact(store, retain=0)

    after = FeatureStore.open(root)
    assert [p.name for p in (after.path.path / "index").glob("*.parquet")] == []  # folded
    assert np.array_equal(after.read(["a", "b", "c"]), np.stack([written[k] for k in "abc"]))
    assert after.failures_table().column("item").to_pylist() == ["d"]
    assert after.verify().ok
