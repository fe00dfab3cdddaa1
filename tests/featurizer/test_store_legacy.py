"""Format-1 stores (one chunk file a row, written before shards; tests/fixtures/store_v1): they
stay readable, refuse writes with the way out, and `upgrade` rewrites them into format 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from featurizer.config import ExtractorConfig
from featurizer.store import FeatureStore, StoreError, read_current
from featurizer.store.rows import row_checksum
from featurizer.store.upgrade import upgrade

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1"
LEGACY = "234a76041c6d"
# the extractor that wrote the fixture, as configured today (format 2)
CONFIG = ExtractorConfig(model="legacy-test-model", layers=(0, 4, 8), k_tokens=8, new_tokens=2)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE / "store", tmp_path / "store"))


@pytest.fixture
def rows() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / "rows.npz"))


def test_a_format_1_store_reads_its_rows_and_verifies(root: Path, rows) -> None:
    store = FeatureStore.open(root)

    assert store.format == 1 and store.fingerprint == LEGACY
    assert np.array_equal(store.read(["c", "a"]), np.stack([rows["c"], rows["a"]]))
    assert store.failures_table().column("item").to_pylist() == ["d"]
    assert store.verify().ok
    assert "format 1 (read-only): 3 chunk files" in store.info()


def test_a_format_1_version_refuses_writes_and_names_the_upgrade(root: Path) -> None:
    with pytest.raises(StoreError, match="format 1 .* read-only now: `linkedout store upgrade`"):
        with FeatureStore.open(root).writer():
            pass


def test_upgrade_is_the_version_the_same_extractor_makes_now(root: Path, rows) -> None:
    summary = upgrade(root)

    new = FeatureStore.open(root)
    assert summary.upgraded == {LEGACY: CONFIG.fingerprint()}
    assert new.fingerprint == CONFIG.fingerprint() == read_current(root)  # CURRENT followed
    assert new.format == 2 and new.extractor["upgraded_from"] == LEGACY
    assert np.array_equal(new.read(["a", "b", "c"]), np.stack([rows[k] for k in "abc"]))
    assert new.failures_table().column("item").to_pylist() == ["d"]
    assert new.pending({"a": "sha-a", "b": "sha-b", "c": "sha-c"}) == []  # nothing to extract
    assert new.verify().ok
    assert FeatureStore.open(root, LEGACY).verify().ok  # the old version is left as it was


def test_upgrade_checksums_each_rows_unchanged_bytes_bound_to_its_item(root: Path) -> None:
    legacy = FeatureStore.open(root)
    items = legacy.index_table().column("item").to_pylist()
    rows = legacy.read(items)

    upgrade(root)

    after = FeatureStore.open(root).index_table()
    recorded = dict(
        zip(after.column("item").to_pylist(), after.column("checksum").to_pylist(), strict=True)
    )
    assert recorded == {
        item: row_checksum(row, item) for item, row in zip(items, rows, strict=True)
    }


def test_rerunning_an_upgrade_copies_nothing(root: Path) -> None:
    upgrade(root)

    again = upgrade(root)

    assert again.rows == 0 and again.upgraded == {LEGACY: CONFIG.fingerprint()}
