"""The feature store (format 2, sharded): versions by fingerprint, committed-index reads, whole
shards written once, crash safety, one writer, snapshots committed create-only."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from featurizer.config import ExtractorConfig
from featurizer.store import (
    FeatureStore,
    MissingItemsError,
    StoreBusyError,
    StoreError,
    list_versions,
    log,
    read_current,
    set_current,
)
from featurizer.store.layout import SHARD_ROWS
from tests.store_log import commit_entries

REPO = Path(__file__).resolve().parents[2]
D = 16
ROW_BYTES = 3 * 8 * D * 2
INDEX_BYTES = SHARD_ROWS * 16 + 4
CONFIG = ExtractorConfig(model="test-model", layers=(0, 4, 8), k_tokens=8, new_tokens=2)


def _features(seed: int, shape: tuple[int, ...] = (3, 8, D)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float16)


def _write(store: FeatureStore, items: dict[str, str], seed: int = 0) -> dict[str, np.ndarray]:
    """Extract `items` (item -> sha256) with synthetic features; returns what was written."""
    written = {}
    with store.writer() as w:
        rows = w.allocate(len(items))
        row_writer = w.row_writer()
        for i, (row, (item, sha)) in enumerate(zip(rows, items.items(), strict=True)):
            written[item] = _features(seed + i)
            row_writer.write(row, written[item], item=item)
            w.commit(item, row, sha, n_old=500, n_new=2)
    return written


def _shards(store: FeatureStore) -> dict[str, int]:
    """Shard object (relative path) -> size."""
    base = store.path.path / "features.zarr" / "features" / "c"
    return {str(f.relative_to(base)): f.stat().st_size for f in base.rglob("*") if f.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)


def test_written_rows_read_back_after_reopen(store: FeatureStore, tmp_path: Path) -> None:
    written = _write(store, {"a": "sha-a", "b": "sha-b", "c": "sha-c"})

    reopened = FeatureStore.open(tmp_path / "store", CONFIG.fingerprint())
    features = reopened.read(["c", "a"])

    assert features.dtype == np.float16 and features.shape == (2, 3, 8, D)
    assert np.array_equal(features[0], written["c"]) and np.array_equal(features[1], written["a"])
    assert sorted(reopened.index()) == ["a", "b", "c"]
    assert reopened.shape_per_item == (3, 8, D)
    assert reopened.extractor["token_split"] == {"old": [0, 6], "new": [6, 8]}
    assert reopened.format == 2


def test_rows_of_one_allocation_go_into_one_shard_object_written_once(
    store: FeatureStore,
) -> None:
    _write(store, {"a": "sha-a", "b": "sha-b", "c": "sha-c"})

    assert _shards(store) == {"0/0/0/0": 3 * ROW_BYTES + INDEX_BYTES}  # raw rows, then its index


def test_each_allocation_starts_a_fresh_shard(store: FeatureStore) -> None:
    with store.writer() as w:
        first, second = w.allocate(2), w.allocate(1)

    assert (first, second) == ([0, 1], [SHARD_ROWS])


def test_zarr_reads_the_sharded_array_as_the_store_wrote_it(store: FeatureStore) -> None:
    written = _write(store, {"a": "sha-a", "b": "sha-b"})

    array = zarr.open_array(str(store.path.path / "features.zarr"), path="features", mode="r")

    assert array.shards == (SHARD_ROWS, 3, 8, D) and array.chunks == (1, 3, 8, D)
    assert np.array_equal(array[1], written["b"]) and np.array_equal(array[0], written["a"])


def test_a_second_write_of_a_shard_is_refused(store: FeatureStore) -> None:
    with store.writer() as w:
        rows = w.allocate(2)
        writer = w.row_writer()
        writer.write(rows[0], _features(0), item="a")
        writer.flush()
        with pytest.raises(StoreError, match="its shard 0 was already written"):
            writer.write(rows[1], _features(1), item="b")


def test_unwritten_shards_are_invisible_after_a_crash_and_the_rerun_writes_fresh_ones(
    store: FeatureStore,
) -> None:
    crash = textwrap.dedent(f"""
        import os, sys
        import numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from featurizer.store import FeatureStore
        store = FeatureStore.open({str(store.path)!r})
        with store.writer() as w:
            rows = w.allocate(2)
            writer = w.row_writer()
            for row, item in zip(rows, ["a", "b"]):
                writer.write(row, np.full((3, 8, {D}), 7, np.float16), item=item)
                w.commit(item, row, "sha-" + item, 500, 2)
            writer.flush()  # the shard is written ...
            os._exit(1)  # ... and the driver killed before it commits
    """)
    result = subprocess.run([sys.executable, "-c", crash], capture_output=True, timeout=60)
    assert result.returncode == 1, result.stderr.decode()

    assert store.index() == {}
    assert list(_shards(store)) == ["0/0/0/0"]  # the garbage shard exists, but nothing names it
    assert store.verify().ok
    sources = {"a": "sha-a", "b": "sha-b"}
    assert store.pending(sources) == ["a", "b"]

    garbage = _shards(store)["0/0/0/0"]
    written = _write(store, sources)  # the garbage shard is never written again: skipped

    assert store.index() == {"a": SHARD_ROWS, "b": SHARD_ROWS + 1}
    assert _shards(store)["0/0/0/0"] == garbage
    assert np.array_equal(store.read(["b"])[0], written["b"])
    assert store.pending(sources) == []


def test_pending_lists_only_new_or_changed_items(store: FeatureStore) -> None:
    _write(store, {"a": "sha-a", "b": "sha-b"})

    pending = store.pending({"a": "sha-a", "b": "sha-b2", "c": "sha-c"})

    assert pending == ["b", "c"]


def test_changed_video_gets_a_new_row_and_keeps_the_old_one(store: FeatureStore) -> None:
    first = _write(store, {"a": "sha-a", "b": "sha-b"}, seed=0)

    second = _write(store, {"a": "sha-a2"}, seed=10)

    assert store.index() == {"a": SHARD_ROWS, "b": 1}
    assert np.array_equal(store.read(["a"])[0], second["a"])
    assert np.array_equal(store.read_rows([0])[0], first["a"])  # garbage, never overwritten


def test_failed_item_is_retried_and_its_failure_cleared_on_success(store: FeatureStore) -> None:
    with store.writer() as w:
        w.fail("a", "decode", "RuntimeError: Error reading a.mp4\n(truncated)")
    assert (
        store.failures_table().to_pylist()[0]["error"]
        == "RuntimeError: Error reading a.mp4 (truncated)"
    )
    assert store.pending({"a": "sha-a"}) == ["a"]

    _write(store, {"a": "sha-a"})

    assert store.failures_table().num_rows == 0
    assert store.index() == {"a": 0}


def test_changed_prompt_or_layers_gives_a_new_version(tmp_path: Path) -> None:
    root = tmp_path / "store"
    base = FeatureStore.create_or_open(root, CONFIG, hidden_size=D)
    other_prompt = FeatureStore.create_or_open(
        root, CONFIG.replace(prompt_template="<video>\n{title}"), hidden_size=D
    )
    other_layers = FeatureStore.create_or_open(root, CONFIG.replace(layers=(0, 4)), hidden_size=D)

    fingerprints = {base.fingerprint, other_prompt.fingerprint, other_layers.fingerprint}

    assert len(fingerprints) == 3
    assert sorted(list_versions(root)) == sorted(fingerprints)
    assert other_layers.shape_per_item == (2, 8, D)
    assert FeatureStore.create_or_open(root, CONFIG, hidden_size=D).path == base.path


def test_reopening_with_another_hidden_size_fails(store: FeatureStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="hidden_size 16 in extractor.json, but the model has 32"):
        FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=32)


def test_d4096_row_takes_its_raw_size_in_its_shard(tmp_path: Path) -> None:
    config = ExtractorConfig(model="wide", layers=(0, 4, 8, 12, 16, 20), k_tokens=64)
    store = FeatureStore.create_or_open(tmp_path / "store", config, hidden_size=4096)
    features = _features(0, (6, 64, 4096))

    with store.writer() as w:
        (row,) = w.allocate(1)
        w.row_writer().write(row, features, item="v")
        w.commit("v", row, "sha-v", 6000, 16)

    assert _shards(store) == {"0/0/0/0": 6 * 64 * 4096 * 2 + INDEX_BYTES}  # 3.15 MB, no codec
    codecs = store.metadata()["codecs"][0]["configuration"]["codecs"]
    assert codecs == [{"name": "bytes", "configuration": {"endian": "little"}}]
    assert "3.15 MB raw" in store.info()


def test_second_writer_fails_at_once_while_the_first_holds_the_lock(store: FeatureStore) -> None:
    written = _write(store, {"a": "sha-a"})
    other = FeatureStore.open(store.path)

    with store.writer():
        with pytest.raises(StoreBusyError, match="is busy: another extraction holds") as busy:
            with other.writer(wait=0):
                pass
        assert np.array_equal(other.read(["a"])[0], written["a"])  # readers never block

    assert str(store.path) in str(busy.value) and "\n" not in str(busy.value)
    with other.writer(wait=0):  # released on exit
        pass


def test_a_writer_whose_commit_another_made_first_stops(store: FeatureStore) -> None:
    with pytest.raises(
        StoreBusyError, match="another writer committed index/log/0+1.parquet first"
    ):
        with store.writer() as w:
            commit_entries(store.path, [])  # as if a second writer got there first
            w.fail("a", "decode", "broken")

    assert store.failures_table().num_rows == 0  # the stale writer committed nothing


def test_each_publish_is_one_delta_of_what_it_changed(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log, "SETTLE_ENTRIES", 0)  # no fold of a small index at a session's end
    for i in range(5):
        _write(store, {f"item{i}": f"sha-{i}"}, seed=i)

    log_dir = store.path.path / "index" / "log"

    assert sorted(p.name for p in log_dir.iterdir()) == [f"{s:020d}.parquet" for s in range(1, 6)]
    assert [pq.read_metadata(p).num_rows for p in sorted(log_dir.iterdir())] == [1] * 5
    assert len(store.index()) == 5


def test_publish_on_exception_keeps_finished_work(store: FeatureStore) -> None:
    with pytest.raises(RuntimeError, match="driver died"):
        with store.writer() as w:
            (row,) = w.allocate(1)
            w.row_writer().write(row, _features(0), item="a")
            w.commit("a", row, "sha-a", 500, 2)
            raise RuntimeError("driver died")

    assert store.index() == {"a": 0}


def test_verify_names_a_row_changed_after_commit(store: FeatureStore) -> None:
    _write(store, {"a": "sha-a", "b": "sha-b"})
    shard = store.path.path / "features.zarr" / "features" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[ROW_BYTES + 10] ^= 0x10  # a bit of row 1 (b)
    shard.write_bytes(bytes(data))

    report = store.verify()

    assert not report.ok
    assert list(report.bad_rows) == ["b"], report.describe()
    assert "does not match the checksum" in report.bad_rows["b"]
    assert str(store.path / "features.zarr/features/c/0/0/0/0") in report.bad_rows["b"]


def test_verify_flags_an_out_of_range_index_row(store: FeatureStore) -> None:
    _write(store, {"a": "sha-a"})
    commit_entries(store.path, [{**store.index_table().to_pylist()[0], "row": 99}])

    report = store.verify()

    assert not report.ok
    assert f"outside the array's rows [0, {SHARD_ROWS})" in report.bad_rows["a"], report.describe()
    assert report.describe().startswith("FAILED")


def test_a_lost_index_beside_shards_is_a_failed_store(store: FeatureStore) -> None:
    _write(store, {"a": "sha-a"})
    shutil.rmtree(store.path.path / "index")

    with pytest.raises(StoreError, match="index snapshots are missing"):
        with store.writer():
            pass


def test_row_writer_pickles_and_writes_where_it_was_made_for(store: FeatureStore) -> None:
    with store.writer() as w:
        (row,) = w.allocate(1)
        row_writer = pickle.loads(pickle.dumps(w.row_writer()))
        checksum = row_writer.write(row, _features(5), item="a")
        offsets = row_writer.flush()
        w.commit("a", row, "sha-a", 500, 2, checksum=checksum, offset=offsets[row])

    assert np.array_equal(store.read(["a"])[0], _features(5))


def test_row_writer_rejects_non_finite_features(store: FeatureStore) -> None:
    features = _features(0).astype(np.float32)
    features[0, 0, 0] = 1e6  # overflows float16

    with store.writer() as w:
        (row,) = w.allocate(1)
        with pytest.raises(StoreError, match="NaN/Inf"):
            w.row_writer().write(row, features, item="a")


def test_read_of_a_missing_item_names_it(store: FeatureStore) -> None:
    _write(store, {"a": "sha-a"})

    with pytest.raises(MissingItemsError, match=r"1 item\(s\) not in the index: zz"):
        store.read(["a", "zz"])


def test_current_round_trip(store: FeatureStore, tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert read_current(root) is None
    with pytest.raises(StoreError, match="no CURRENT file"):
        FeatureStore.open(root)

    set_current(root, store.fingerprint)

    assert read_current(root) == store.fingerprint
    assert FeatureStore.open(root).path == store.path


def test_publish_leaves_no_temp_files(store: FeatureStore, tmp_path: Path) -> None:
    _write(store, {"a": "sha-a"})
    with store.writer() as w:
        w.fail("b", "extract", "out of memory")
    set_current(tmp_path / "store", store.fingerprint)

    names = sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file())

    assert not [n for n in names if "tmp" in n or "partial" in n], names
    assert {"extractor.json", "CURRENT", "zarr.json", f"{2:020d}.parquet"} <= set(names)
    assert store.verify().ok
