"""Store integrity: row checksums recorded at commit, checked by reads and by verify; a lost
index is a failed store; CURRENT stays inside the root; unreadable metadata names its file.
The rows a, b, c sit in one shard object, one after the other (featurizer.store.layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featurizer.config import ExtractorConfig
from featurizer.store import FeatureStore, StoreError, read_current, set_current
from featurizer.store.rows import row_checksum
from tests.store_log import commit_entries

D = 16
CONFIG = ExtractorConfig(model="test-model", layers=(0, 4, 8), k_tokens=8, new_tokens=2)
ROW_BYTES = 3 * 8 * D * 2


def _features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3, 8, D)).astype(np.float16)


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)
    with store.writer() as w:
        rows = w.allocate(3)
        row_writer = w.row_writer()
        for i, (row, item) in enumerate(zip(rows, ["a", "b", "c"], strict=True)):
            checksum = row_writer.write(row, _features(i), item=item)
            w.commit(item, row, f"sha-{item}", 500, 2, prompt_sha256=f"p-{item}", checksum=checksum)
    return store


def _shard(store: FeatureStore) -> Path:
    return store.path.path / "features.zarr" / "features" / "c" / "0" / "0" / "0" / "0"


def _row_bytes(store: FeatureStore, row: int) -> bytes:
    return _shard(store).read_bytes()[row * ROW_BYTES : (row + 1) * ROW_BYTES]


def _flip_bit(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x04
    path.write_bytes(bytes(data))


def test_commit_records_the_checksum_of_the_row_bytes(store: FeatureStore) -> None:
    index = store.index_table()
    recorded = dict(
        zip(index.column("item").to_pylist(), index.column("checksum").to_pylist(), strict=True)
    )

    assert recorded["b"] == row_checksum(_features(1), "b")
    assert recorded["b"] == row_checksum(_row_bytes(store, 1), "b")


def test_commit_without_a_checksum_takes_it_from_the_written_row(tmp_path: Path) -> None:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)
    with store.writer() as w:
        (row,) = w.allocate(1)
        w.row_writer().write(row, _features(7), item="a")
        w.commit("a", row, "sha-a", 500, 2)

    assert store.index_table().column("checksum").to_pylist() == [row_checksum(_features(7), "a")]


def test_commit_of_a_row_never_written_is_refused(tmp_path: Path) -> None:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)
    with store.writer() as w:
        (row,) = w.allocate(1)
        with pytest.raises(StoreError, match="item a: row 0 was not written by a writer"):
            w.commit("a", row, "sha-a", 500, 2)


def test_verify_names_a_flipped_bit_with_its_item_and_shard_object(store: FeatureStore) -> None:
    shard = _shard(store)
    _flip_bit(shard, ROW_BYTES + 100)

    report = store.verify()

    assert not report.ok and report.problems == []
    assert list(report.bad_rows) == ["b"]
    assert str(shard) in report.bad_rows["b"] and "checksum" in report.bad_rows["b"]
    assert f"item b: row 1: {shard}" in report.describe()
    assert report.n_checked == 3 and report.bytes_read == 3 * ROW_BYTES


def test_verify_a_block_at_a_time_names_the_same_row(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of one row: each read while the one before is hashed, into alternating buffers."""
    import featurizer.store.verification as verification

    monkeypatch.setattr(verification, "VALUE_PASS_BYTES", 2 * ROW_BYTES)
    _flip_bit(_shard(store), 2 * ROW_BYTES + 100)

    report = store.verify()

    assert list(report.bad_rows) == ["c"] and report.n_checked == 3


def test_read_refuses_a_row_that_fails_its_checksum(store: FeatureStore) -> None:
    _flip_bit(_shard(store), 2 * ROW_BYTES + 100)

    with pytest.raises(StoreError) as info:
        store.read(["a", "c"])

    message = str(info.value)
    assert "item c (row 2)" in message and str(_shard(store)) in message
    assert "\n" not in message
    assert store.read_rows([2], check=False).shape == (1, 3, 8, D)  # as stored, unchecked


def test_checked_read_a_block_at_a_time_reads_every_row_and_refuses_the_bad_one(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of one row: each read while the one before is hashed."""
    import featurizer.store.reading as reading

    monkeypatch.setattr(reading, "CHECK_BLOCK_BYTES", ROW_BYTES)
    rows = store.read_rows([0, 1, 2])
    _flip_bit(_shard(store), 2 * ROW_BYTES + 100)

    assert all(np.array_equal(rows[i], _features(i)) for i in range(3))
    with pytest.raises(StoreError, match=r"item c \(row 2\)"):
        store.read_rows([0, 1, 2])


def test_truncated_shard_names_its_items_and_object(store: FeatureStore) -> None:
    shard = _shard(store)
    shard.write_bytes(shard.read_bytes()[: ROW_BYTES + 50])

    with pytest.raises(StoreError, match=r"item b \(row 1\): shard object .*0/0/0/0: .*truncated"):
        store.read(["b"])
    report = store.verify()
    assert sorted(report.bad_rows) == ["a", "b", "c"]  # its index, at its end, is gone too
    assert "0/0/0/0 holds 818 bytes (truncated)" in report.bad_rows["b"]


def test_missing_shard_of_committed_rows_is_a_bad_row_each(store: FeatureStore) -> None:
    _shard(store).unlink()

    report = store.verify()

    assert "shard object" in report.bad_rows["b"] and "is missing" in report.bad_rows["b"]
    with pytest.raises(StoreError, match=r"item b \(row 1\): shard object .* is missing"):
        store.read(["b"])


def test_a_shard_whose_own_index_disagrees_is_named(store: FeatureStore) -> None:
    shard = _shard(store)
    _flip_bit(shard, len(shard.read_bytes()) - 100)  # in its index (zarr reads by it)

    report = store.verify()

    assert sorted(report.bad_rows) == ["a", "b", "c"]
    assert "does not match its crc32c" in report.bad_rows["a"]


def test_rows_committed_without_prompt_identities_are_pending_as_prompt_unknown(
    store: FeatureStore,
) -> None:
    older = [{**r, "prompt_sha256": None} for r in store.index_table().to_pylist()]
    commit_entries(store.path, older)  # as rows committed before prompt identities

    assert store.read(["a"]).shape == (1, 3, 8, D)
    assert store.verify().ok
    assert store.pending_reasons({"a": "sha-a"}, {"a": "p-a"}) == {"a": "prompt unknown"}


def test_pending_reasons_name_new_changed_video_and_changed_prompt(store: FeatureStore) -> None:
    sources = {"a": "sha-a", "b": "sha-b2", "c": "sha-c", "d": "sha-d"}
    prompts = {"a": "p-a", "b": "p-b", "c": "p-c2", "d": "p-d"}

    assert store.pending_reasons(sources, prompts) == {
        "b": "video changed",
        "c": "prompt changed",
        "d": "new",
    }
    assert store.pending(sources) == ["b", "d"]  # without prompts: the video alone


def test_missing_index_beside_rows_is_a_failed_store(store: FeatureStore) -> None:
    for file in (store.path.path / "index").rglob("*.parquet"):
        file.unlink()
    reopened = FeatureStore.open(store.path)

    report = reopened.verify()

    assert not report.ok
    assert "index snapshots are missing" in report.describe() and "FAILED" in report.describe()
    with pytest.raises(StoreError, match="the store is FAILED, not empty"):
        reopened.index()
    with pytest.raises(StoreError, match="index snapshots are missing"):
        with reopened.writer():
            pass


def test_new_version_is_born_with_an_empty_index(tmp_path: Path) -> None:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)

    index = store.path.path / "index"
    assert [str(p.relative_to(index)) for p in index.rglob("*.parquet")] == [
        f"checkpoint/{0:020d}.parquet"
    ]
    assert store.index() == {} and store.verify().ok


def test_unreadable_index_names_the_file(store: FeatureStore) -> None:
    snapshot = max((store.path.path / "index").rglob("*.parquet"), key=lambda p: p.name)
    snapshot.write_bytes(b"not parquet")

    with pytest.raises(StoreError, match=rf"{snapshot.name} is unreadable"):
        FeatureStore.open(store.path).index()


def test_corrupt_zarr_json_names_the_file(store: FeatureStore) -> None:
    meta = store.path.path / "features.zarr" / "features" / "zarr.json"
    meta.write_text("{not json")

    with pytest.raises(StoreError, match=r"features/zarr.json is unreadable"):
        FeatureStore.open(store.path).read(["a"])


def test_corrupt_extractor_json_names_the_file(store: FeatureStore) -> None:
    (store.path.path / "extractor.json").write_text("[1, 2")

    with pytest.raises(StoreError, match=r"extractor.json is not valid JSON"):
        FeatureStore.open(store.path)


@pytest.mark.parametrize("name", ["../elsewhere", "/tmp", "a/b", "..", ".hidden"])
def test_current_naming_anything_but_a_version_under_the_root_is_refused(
    store: FeatureStore, name: str
) -> None:
    root = store.path.path.parent
    (root / "CURRENT").write_text(name + "\n")

    with pytest.raises(StoreError, match="not a version directory directly under the store root"):
        read_current(root)
    with pytest.raises(StoreError, match="not a version directory"):
        set_current(root, name)


def test_writer_lists_the_items_committed_in_its_session(store: FeatureStore) -> None:
    with store.writer() as w:
        rows = w.allocate(2)
        row_writer = w.row_writer()
        for row, item in zip(rows, ["d", "e"], strict=True):
            w.commit(
                item, row, f"sha-{item}", 500, 2,
                checksum=row_writer.write(row, _features(9), item=item),
            )  # fmt: skip
        w.fail("e", "extract", "changed its mind")

        assert w.committed_items.to_pylist() == ["d"]
