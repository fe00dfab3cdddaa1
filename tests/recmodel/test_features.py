"""ItemFeatureBank: hot rows within a byte budget, the rest read per request in row order."""

from __future__ import annotations

import numpy as np

from recmodel.features import ItemFeatureBank, ItemFeatures
from tests.recmodel.helpers import D, G, K, L, features

ROW_BYTES = L * K * D * 2


def _counting(n_items: int, missing: tuple[int, ...] = (), rows: np.ndarray | None = None):
    item_features, table = features(n_items, missing=missing)
    calls: list[list[int]] = []
    item_rows = item_features.item_rows if rows is None else rows

    def read_rows(r: np.ndarray) -> np.ndarray:
        calls.append(list(r))
        return table[np.asarray(r)]

    return ItemFeatures(item_rows, read_rows, (L, K, D), G), table, calls


def test_bank_with_room_for_every_item_reads_the_store_once_in_chunks():
    reader, table, calls = _counting(10, missing=(2,))

    bank = ItemFeatureBank(reader, "tokens", hot_bytes=1 << 20, read_chunk_bytes=4 * ROW_BYTES)
    feats, has = bank.gather(np.array([0, 2, 5]))

    assert bank.all_hot and [len(c) for c in calls] == [4, 4, 1]  # 9 rows, 4 a read
    assert has.tolist() == [True, False, True]
    assert np.array_equal(feats.numpy(), table[[0, 5]])
    bank.gather(np.array([0, 1]))
    assert len(calls) == 3  # later requests come from memory


def test_bank_holds_the_most_trained_on_items_within_its_hot_budget():
    reader, table, calls = _counting(6)
    counts = np.array([1, 9, 0, 5, 7, 2])

    bank = ItemFeatureBank(reader, "tokens", hot_bytes=3 * ROW_BYTES, priority=counts)

    assert bank.n_hot == 3 and not bank.all_hot
    assert calls == [[1, 3, 4]]  # the three most trained-on items, read in row order
    calls.clear()
    feats, _ = bank.read(np.array([4, 1]))
    assert calls == [] and np.array_equal(feats, table[[4, 1]])


def test_bank_reads_cold_items_per_request_sorted_by_row():
    rows = np.array([5, 3, 9, 0, 7])  # the store's rows are not in catalog order
    reader, table, calls = _counting(10, rows=rows)

    bank = ItemFeatureBank(reader, "tokens", hot_bytes=0)
    feats, _ = bank.read(np.array([2, 0, 4]))

    assert calls == [[5, 7, 9]]  # one read, in row order
    assert np.array_equal(feats, table[[9, 5, 7]])  # back in the order asked for


def test_bank_reads_into_a_given_buffer():
    reader, table, _ = _counting(5)
    bank = ItemFeatureBank(reader, "tokens", hot_bytes=ROW_BYTES, priority=np.arange(5))
    out = np.zeros((3, L, K, D), dtype=np.float16)

    bank.read(np.array([4, 0, 2]), out=out)  # item 4 hot, 0 and 2 cold

    assert np.array_equal(out, table[[4, 0, 2]])


def test_bank_keeps_only_what_the_variant_reads():
    item_features, table = features(4)

    mean = ItemFeatureBank(item_features, "mean").gather(np.arange(4))[0]
    last = ItemFeatureBank(item_features, "last").gather(np.arange(4))[0]
    final = ItemFeatureBank(item_features, "last_layer_last_token").gather(np.arange(4))[0]

    assert mean.shape == (4, L, D) and last.shape == (4, L, D) and final.shape == (4, D)
    expected_mean = table.astype(np.float32).mean(axis=2)
    assert np.allclose(mean.numpy(), expected_mean, atol=1e-2)
    assert np.array_equal(last.numpy(), table[:, :, -1])
    assert np.array_equal(final.numpy(), table[:, -1, -1])


def test_bank_counts_items_without_features():
    bank = ItemFeatureBank(features(8, missing=(1, 6))[0], "last")

    assert bank.n_missing == 2
    assert bank.has.tolist() == [True, False, True, True, True, True, False, True]
    assert bank.nbytes(np.array([0, 1, 2])) == 2 * L * D * 2


def _int8(n_items: int):
    """An int8 store's rows (values, per-token scales) and what they dequantize to."""
    rng = np.random.default_rng(0)
    values = rng.integers(-127, 128, size=(n_items, L, K, D), dtype=np.int8)
    scales = rng.uniform(0.01, 0.1, size=(n_items, L, K)).astype(np.float16)
    table = (values.astype(np.float32) * scales[..., None].astype(np.float32)).astype(np.float16)
    reader = ItemFeatures(
        np.arange(n_items),
        lambda r: table[np.asarray(r)],
        (L, K, D),
        G,
        read_rows_int8=lambda r: (values[np.asarray(r)], scales[np.asarray(r)]),
    )
    return reader, values, scales, table


def test_int8_bank_keeps_the_rows_as_stored_and_reads_them_as_float16():
    reader, values, scales, table = _int8(6)

    bank = ItemFeatureBank(reader, "tokens", hot_bytes=3 * L * K * (D + 2))  # 3 of 6 hot
    got_values, got_scales, has = bank.read_int8(np.array([4, 0, 5]))
    feats, _ = bank.read(np.array([4, 0, 5]))

    assert bank.int8 and bank.n_hot == 3 and has.all()
    assert np.array_equal(got_values, values[[4, 0, 5]])
    assert np.array_equal(got_scales, scales[[4, 0, 5]])
    assert np.allclose(feats.astype(np.float32), table[[4, 0, 5]], rtol=2e-3, atol=1e-4)


def test_int8_bank_holds_about_twice_the_items_in_one_hot_budget():
    int8_reader, *_ = _int8(40)
    float16_reader, _, _ = _counting(40)

    int8_bank = ItemFeatureBank(int8_reader, "tokens", hot_bytes=10 * ROW_BYTES)
    float16_bank = ItemFeatureBank(float16_reader, "tokens", hot_bytes=10 * ROW_BYTES)

    assert float16_bank.n_hot == 10 and int8_bank.n_hot == 10 * ROW_BYTES // (L * K * (D + 2))
    assert int8_bank.n_hot >= 1.5 * float16_bank.n_hot


def test_int8_store_read_for_a_reduced_view_is_float16():
    reader, _, _, table = _int8(4)

    bank = ItemFeatureBank(reader, "last", hot_bytes=0)
    feats, _ = bank.read(np.array([1, 2]))

    assert not bank.int8 and feats.dtype == np.float16
    assert np.array_equal(feats, table[[1, 2], :, -1])
