"""Compact views derived from a store version: fewer layers, fewer old tokens, no re-extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from featurizer.errors import StoreError
from featurizer.merge import merge_tokens
from featurizer.store import FeatureStore, list_versions
from featurizer.store.derive import Derivation, derive_version
from featurizer.store.layout import SHARD_ROWS
from tests.synthetic import write_topic_store

INDEX_BYTES = SHARD_ROWS * 16 + 4  # a shard object's index and its crc32c

ITEMS = [f"i{i:03d}" for i in range(10)]


@pytest.fixture()
def source(tmp_path: Path) -> FeatureStore:
    """Rows (L=3 at layers 0, 4, 8; K=6 with G=2 new tokens; D=8) for 10 items, 1 failure."""
    root = write_topic_store(tmp_path / "store", ITEMS, n_topics=3, failed=("i099",))
    return FeatureStore.open(root)


def test_layers_view_holds_the_sources_rows_at_those_layers(source: FeatureStore) -> None:
    view = derive_version(source, Derivation(layers=(0, 8))).view

    assert view.shape_per_item == (2, 6, 8)
    assert view.extractor["layers"] == [0, 8]
    np.testing.assert_array_equal(view.read(ITEMS), source.read(ITEMS)[:, [0, 2]])


def test_k_tokens_view_merges_the_old_tokens_and_keeps_the_new_ones(source: FeatureStore) -> None:
    view = derive_version(source, Derivation(k_tokens=4)).view
    rows, full = view.read(ITEMS), source.read(ITEMS)

    assert view.shape_per_item == (3, 4, 8)
    np.testing.assert_array_equal(rows[:, :, 2:], full[:, :, 4:])  # the G = 2 new tokens
    old = torch.from_numpy(full[3, 1, :4].astype(np.float32))
    expected = merge_tokens(old, 2).numpy().astype(np.float16)
    np.testing.assert_array_equal(rows[3, 1, :2], expected)


def test_view_is_a_version_that_verifies_with_a_fingerprint_of_its_source(
    source: FeatureStore,
) -> None:
    view = derive_version(source, Derivation(layers=(4,), k_tokens=3)).view
    again = derive_version(source, Derivation(layers=(4,), k_tokens=3)).view

    assert view.path.parent == source.path.parent
    assert view.fingerprint == again.fingerprint != source.fingerprint
    assert view.extractor["derived_from"]["fingerprint"] == source.fingerprint
    assert view.verify().ok


def test_view_of_a_view_derives_from_the_view(source: FeatureStore) -> None:
    fewer_layers = derive_version(source, Derivation(layers=(0, 8))).view

    fewer_tokens = derive_version(fewer_layers, Derivation(k_tokens=4)).view

    assert fewer_tokens.shape_per_item == (2, 4, 8)
    assert fewer_tokens.extractor["derived_from"]["fingerprint"] == fewer_layers.fingerprint
    assert fewer_tokens.verify().ok
    assert len(list_versions(source.path.parent)) == 3


def test_rerun_derives_only_what_the_source_gained(source: FeatureStore) -> None:
    first = derive_version(source, Derivation(layers=(0,)))
    with source.writer() as writer:
        row_writer = writer.row_writer()
        for item, row in zip(["i010", "i011"], writer.allocate(2), strict=True):
            checksum = row_writer.write(row, np.ones((3, 6, 8), np.float16), item=item)
            writer.commit(item, row, f"sha-{item}", 4, 2, checksum=checksum)

    second = derive_version(source, Derivation(layers=(0,)))

    assert (first.derived, first.skipped) == (10, 0)
    assert (second.derived, second.skipped) == (2, 10)
    assert second.view.read(["i011"]).tolist() == np.ones((1, 1, 6, 8)).tolist()


def test_items_the_source_failed_are_failure_rows_of_the_view(source: FeatureStore) -> None:
    summary = derive_version(source, Derivation(layers=(0,)))

    failures = summary.view.failures_table().to_pylist()
    assert summary.failed == 1
    assert [(f["item"], f["stage"]) for f in failures] == [("i099", "decode")]


@pytest.mark.parametrize(
    ("derivation", "message"),
    [
        (Derivation(layers=(0, 12)), r"--layers: \[12\] not in the source's tapped layers"),
        (Derivation(layers=(0, 0)), r"--layers: \[0, 0\] names a layer twice"),
        (Derivation(k_tokens=2), r"--k-tokens: 2 must be more than the G = 2 new tokens"),
        (Derivation(k_tokens=7), r"--k-tokens: 7 .* at most the source's K = 6"),
        (Derivation(), "nothing to derive"),
    ],
)
def test_derivation_the_source_cannot_give_is_a_value_error_naming_the_flag(
    source: FeatureStore, derivation: Derivation, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        derive_version(source, derivation)
    assert list_versions(source.path.parent) == [source.fingerprint]


def test_int8_view_reads_back_within_half_a_step_of_each_tokens_scale(
    source: FeatureStore,
) -> None:
    view = derive_version(source, Derivation(int8=True)).view
    full = source.read(ITEMS).astype(np.float32)

    rows = view.read(ITEMS)

    step = np.abs(full).max(axis=-1, keepdims=True) / 127  # each token's int8 step
    assert rows.dtype == np.float16 and rows.shape == full.shape
    assert (np.abs(rows.astype(np.float32) - full) <= step / 2 + 1e-2).all()


def test_int8_view_stores_one_byte_a_value_plus_a_scale_per_token(source: FeatureStore) -> None:
    view = derive_version(source, Derivation(int8=True)).view
    row = view.index()["i003"]

    assert view.extractor["dtype"] == "int8"
    assert view.row_bytes == 3 * 6 * 8 + 3 * 6 * 2  # L * K * D int8, L * K float16 scales
    assert source.row_bytes == 3 * 6 * 8 * 2
    values, scales = view.read_rows_int8([row])
    assert values.dtype == np.int8 and scales.dtype == np.float16
    assert _shard(view, "features").stat().st_size == len(view.index()) * 3 * 6 * 8 + INDEX_BYTES
    assert _shard(view, "scales").stat().st_size == len(view.index()) * 3 * 6 * 2 + INDEX_BYTES


def _shard(store: FeatureStore, array: str) -> Path:
    """The one shard object of `array` (the views here hold fewer rows than a shard): shard 0,
    at chunk key c/0/0/0/0 of the (N, L, K, D) features, c/0/0/0 of the (N, L, K) scales."""
    key = "c/0/0/0/0" if array == "features" else "c/0/0/0"
    return store.path.path / "features.zarr" / array / key


def test_int8_row_whose_scales_changed_is_named_by_verify_and_refused_by_reads(
    source: FeatureStore,
) -> None:
    view = derive_version(source, Derivation(int8=True)).view
    scales_file = _shard(view, "scales")
    data = bytearray(scales_file.read_bytes())
    data[view.index()["i005"] * 3 * 6 * 2] ^= 0x01  # the row's first scale
    scales_file.write_bytes(bytes(data))

    report = view.verify()

    assert list(report.bad_rows) == ["i005"] and str(scales_file) in report.bad_rows["i005"]
    with pytest.raises(StoreError, match="i005.*does not match the checksum"):
        view.read(["i005"])


def test_views_of_an_int8_view_derive_from_its_values(source: FeatureStore) -> None:
    compact = derive_version(source, Derivation(layers=(0, 8), int8=True)).view

    fewer_tokens = derive_version(compact, Derivation(k_tokens=4, int8=True)).view

    assert fewer_tokens.shape_per_item == (2, 4, 8) and fewer_tokens.int8
    assert fewer_tokens.verify().ok


def test_int8_view_gives_its_rows_as_stored_for_training(source: FeatureStore) -> None:
    view = derive_version(source, Derivation(int8=True)).view
    rows = np.array([view.index()[item] for item in ("i004", "i001")])

    values, scales = view.read_rows_int8(rows)

    assert values.dtype == np.int8 and values.shape == (2, 3, 6, 8)
    assert scales.dtype == np.float16 and scales.shape == (2, 3, 6)
    dequantized = values.astype(np.float32) * scales[..., None].astype(np.float32)
    assert np.allclose(dequantized, view.read_rows(rows).astype(np.float32), rtol=2e-3)
    with pytest.raises(StoreError, match="float16, not int8"):
        source.read_rows_int8(rows)
