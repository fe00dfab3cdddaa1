"""Store integrity: row checksums recorded at commit, checked by reads and by verify; a lost
index is a failed store; CURRENT stays inside the root; unreadable metadata names its file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from featurizer.config import ExtractorConfig
from featurizer.store import FeatureStore, StoreError, read_current, set_current
from featurizer.store.rows import row_checksum

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
            checksum = row_writer.write(row, _features(i))
            w.commit(item, row, f"sha-{item}", 500, 2, prompt_sha256=f"p-{item}", checksum=checksum)
    return store


def _flip_bit(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x04
    path.write_bytes(bytes(data))


def test_commit_records_the_checksum_of_the_row_bytes(store: FeatureStore) -> None:
    index = store.index_table()
    recorded = dict(
        zip(index.column("item").to_pylist(), index.column("checksum").to_pylist(), strict=True)
    )

    assert recorded["b"] == row_checksum(_features(1))
    assert recorded["b"] == row_checksum(store.chunk_path(1).read_bytes())


def test_commit_without_a_checksum_takes_it_from_the_written_row(tmp_path: Path) -> None:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)
    with store.writer() as w:
        (row,) = w.allocate(1)
        w.row_writer().write(row, _features(7))
        w.commit("a", row, "sha-a", 500, 2)

    assert store.index_table().column("checksum").to_pylist() == [row_checksum(_features(7))]


def test_commit_of_a_row_never_written_is_refused(tmp_path: Path) -> None:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)
    with store.writer() as w:
        (row,) = w.allocate(1)
        with pytest.raises(StoreError, match="item a: row 0 holds NaN/Inf or was never written"):
            w.commit("a", row, "sha-a", 500, 2)


def test_verify_names_a_flipped_bit_with_its_item_and_chunk_file(store: FeatureStore) -> None:
    chunk = store.chunk_path(1)
    _flip_bit(chunk)

    report = store.verify()

    assert not report.ok and report.problems == []
    assert list(report.bad_rows) == ["b"]
    assert str(chunk) in report.bad_rows["b"] and "checksum" in report.bad_rows["b"]
    assert f"item b: row 1: chunk file {chunk}" in report.describe()
    assert report.n_checked == 3 and report.bytes_read == 3 * ROW_BYTES


def test_read_refuses_a_row_that_fails_its_checksum(store: FeatureStore) -> None:
    _flip_bit(store.chunk_path(2))

    with pytest.raises(StoreError) as info:
        store.read(["a", "c"])

    message = str(info.value)
    assert "item c (row 2)" in message and str(store.chunk_path(2)) in message
    assert "\n" not in message
    assert store.read_rows([2], check=False).shape == (1, 3, 8, D)  # as stored, unchecked


def test_truncated_chunk_names_its_item_and_file(store: FeatureStore) -> None:
    chunk = store.chunk_path(0)
    chunk.write_bytes(chunk.read_bytes()[:50])

    with pytest.raises(StoreError, match=r"item a \(row 0\): chunk file .*0/0/0 holds 50 bytes"):
        store.read(["a"])
    report = store.verify()
    assert "holds 50 bytes, expected 768 (truncated)" in report.bad_rows["a"]


def test_missing_chunk_of_a_committed_row_is_a_bad_row(store: FeatureStore) -> None:
    store.chunk_path(1).unlink()

    report = store.verify()

    assert "is missing (the row was never written)" in report.bad_rows["b"]
    with pytest.raises(StoreError, match="item b"):
        store.read(["b"])


def test_rows_written_before_checksums_read_and_verify_for_nan_only(store: FeatureStore) -> None:
    index = store.path / "index.parquet"
    table = pq.read_table(index)
    pq.write_table(table.drop_columns(["checksum", "prompt_sha256"]), index)  # an older store
    _flip_bit(store.chunk_path(0))  # undetectable without a checksum: still finite

    assert store.read(["a"]).shape == (1, 3, 8, D)
    assert store.verify().ok
    assert store.pending_reasons({"a": "sha-a"}, {"a": "p-a"}) == {"a": "prompt unknown"}

    nan = np.full((3, 8, D), np.nan, np.float16).tobytes()
    store.chunk_path(1).write_bytes(nan)
    assert "holds NaN/Inf (a row without checksum)" in store.verify().bad_rows["b"]


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
    (store.path / "index.parquet").unlink()
    reopened = FeatureStore.open(store.path)

    report = reopened.verify()

    assert not report.ok
    assert "index.parquet is missing" in report.describe() and "FAILED" in report.describe()
    with pytest.raises(StoreError, match="the store is FAILED, not empty"):
        reopened.index()
    with pytest.raises(StoreError, match="index.parquet is missing"):
        with reopened.writer():
            pass


def test_new_version_is_born_with_an_empty_index(tmp_path: Path) -> None:
    store = FeatureStore.create_or_open(tmp_path / "store", CONFIG, hidden_size=D)

    assert (store.path / "index.parquet").is_file()
    assert store.index() == {} and store.verify().ok


def test_unreadable_index_names_the_file(store: FeatureStore) -> None:
    (store.path / "index.parquet").write_bytes(b"not parquet")

    with pytest.raises(StoreError, match=r"index.parquet is unreadable"):
        FeatureStore.open(store.path).index()


def test_corrupt_zarr_json_names_the_file(store: FeatureStore) -> None:
    meta = store.path / "features.zarr" / "features" / "zarr.json"
    meta.write_text("{not json")

    with pytest.raises(StoreError, match=r"features/zarr.json is unreadable"):
        FeatureStore.open(store.path).read(["a"])


def test_corrupt_extractor_json_names_the_file(store: FeatureStore) -> None:
    (store.path / "extractor.json").write_text("[1, 2")

    with pytest.raises(StoreError, match=r"extractor.json is not valid JSON"):
        FeatureStore.open(store.path)


@pytest.mark.parametrize("name", ["../elsewhere", "/tmp", "a/b", "..", ".hidden"])
def test_current_naming_anything_but_a_version_under_the_root_is_refused(
    store: FeatureStore, name: str
) -> None:
    root = store.path.parent
    (root / "CURRENT").write_text(name + "\n")

    with pytest.raises(StoreError, match="not a version directory directly under the store root"):
        read_current(root)
    with pytest.raises(StoreError, match="not a version directory"):
        set_current(root, name)


def test_writer_lists_the_items_committed_in_its_session(store: FeatureStore) -> None:
    with store.writer() as w:
        rows = w.allocate(2)
        for row, item in zip(rows, ["d", "e"], strict=True):
            w.commit(
                item, row, f"sha-{item}", 500, 2, checksum=w.row_writer().write(row, _features(9))
            )
        w.fail("e", "extract", "changed its mind")

        assert w.committed_items == ["d"]
