"""A store's index tampered with or mixed up: two items whose entries were swapped, an entry
without its checksum beside a flipped byte, an old index file copied in under a higher number,
stray files in the index directory. Verification names each (rows bound to their item's
checksum; index files that say which commits of which version they are), reads refuse the bad
rows, `extract` refuses a store whose index does not hold together instead of extracting
everything again, and a stray file is ignored, not a store that "kept changing"."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from featurizer.config import hidden_size_of
from featurizer.errors import StoreError
from featurizer.store import FeatureStore, set_current
from tests.faults.conftest import assert_one_line_error, run_cli
from tests.s3 import environment
from tests.store_log import commit_entries
from tests.worker_hooks import INVOCATION_LOG_ENV


@pytest.fixture
def stored(demo_dataset: Path, tmp_path: Path, extract_config) -> tuple[Path, FeatureStore]:
    """A copy of the demo dataset and the version `extract` would write for it, every video's
    row written through the store API (random features), CURRENT set."""
    dataset = Path(shutil.copytree(demo_dataset, tmp_path / "dataset"))
    store = FeatureStore.create_or_open(
        tmp_path / "store", extract_config, hidden_size_of(extract_config)
    )
    items = sorted(p.stem for p in (dataset / "videos").glob("*.mp4"))
    rng = np.random.default_rng(0)
    with store.writer() as writer:
        rows = writer.allocate(len(items))
        row_writer = writer.row_writer()
        for item, row in zip(items, rows, strict=True):
            features = rng.standard_normal(store.shape_per_item).astype(np.float16)
            row_writer.write(row, features, item=item)
            writer.commit(item, row, "sha", 48, 16)
    set_current(tmp_path / "store", store.fingerprint)
    return dataset, FeatureStore(store.path)


def test_two_items_whose_entries_were_swapped_fail_verify_and_reads(stored, fault_report) -> None:
    _, store = stored
    a, b = store.index_table().to_pylist()[:2]
    moved = ("row", "offset", "checksum")
    commit_entries(
        store.path, [{**a, **{k: b[k] for k in moved}}, {**b, **{k: a[k] for k in moved}}]
    )

    report = FeatureStore(store.path).verify()

    fault_report.record(
        "two items' row, offset and checksum swapped in the index",
        survived={a["item"], b["item"]} <= set(report.bad_rows),
        message=report.bad_rows.get(a["item"], report.describe().splitlines()[0]),
    )
    assert {a["item"], b["item"]} <= set(report.bad_rows) and not report.ok
    assert "checksum recorded at commit for this item" in report.bad_rows[a["item"]]
    with pytest.raises(StoreError, match=f"item {a['item']}"):
        FeatureStore(store.path).read([a["item"]])


def test_an_entry_without_its_checksum_beside_a_flipped_byte_fails_verify(
    stored, fault_report
) -> None:
    _, store = stored
    entry = store.index_table().to_pylist()[0]
    shard = Path(store.where(entry["row"]))
    data = bytearray(shard.read_bytes())
    data[entry["offset"] + 100] ^= 0x08
    shard.write_bytes(bytes(data))
    commit_entries(store.path, [{**entry, "checksum": None}])

    report = FeatureStore(store.path).verify()

    fault_report.record(
        "a null checksum beside a flipped byte",
        survived=entry["item"] in report.bad_rows,
        message=report.bad_rows.get(entry["item"], report.describe().splitlines()[0]),
    )
    assert "the index gives no checksum" in report.bad_rows[entry["item"]]
    with pytest.raises(StoreError, match="the index gives no checksum"):
        FeatureStore(store.path).read([entry["item"]])


@pytest.mark.parametrize("place", ["checkpoint", "log"])
def test_an_empty_index_file_copied_in_under_a_higher_number_fails_verify_and_extract(
    place: str, stored, tmp_path: Path, extract_config, one_prompt_preset: Path, fault_report
) -> None:
    dataset, store = stored
    index = store.path.path / "index"
    empty = FeatureStore.create_or_open(
        tmp_path / "elsewhere", extract_config, store.shape_per_item[2]
    )
    born = empty.path.path / "index" / "checkpoint" / f"{0:020d}.parquet"  # an empty index
    copy = index / place / f"{99:020d}.parquet"
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(born, copy)
    calls = tmp_path / "calls.log"

    report = FeatureStore(store.path).verify()
    with environment({INVOCATION_LOG_ENV: str(calls)}):
        result = run_cli(
            ["extract", "--dataset", dataset, "--store", tmp_path / "store"]
            + ["--preset", one_prompt_preset]
        )

    line = assert_one_line_error(result, copy.name, "FAILED")
    fault_report.record(
        f"an empty index file copied to {place}/{copy.name}",
        survived=not report.ok and not calls.exists(),
        message=line,
    )
    assert not report.ok and copy.name in report.problems[0]
    assert not calls.exists()  # nothing extracted again


@pytest.mark.parametrize("name", ["7.parquet", "log/7.parquet", "checkpoint/notes.txt"])
def test_a_stray_file_in_the_index_is_ignored_and_named_by_verify(
    name: str, stored, fault_report
) -> None:
    _, store = stored
    stray = store.path.path / "index" / name
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"not an index file")

    reopened = FeatureStore(store.path)
    report = reopened.verify()

    fault_report.record(f"a stray index/{name}", survived=report.ok, message=" ".join(report.notes))
    assert report.ok and len(reopened.index()) == 12
    assert any(f"index/{name}" in note for note in report.notes)
