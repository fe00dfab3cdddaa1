from __future__ import annotations

import numpy as np
import pyarrow as pa

from recmodel.data import (
    PAD,
    ItemFeatureBank,
    ItemFeatures,
    build_splits,
    training_examples,
)
from tests.recmodel.helpers import D, G, K, L, features


def _table(rows: list[tuple[str, str, int, str]]) -> pa.Table:
    return pa.table(
        {
            name: [r[i] for r in rows]
            for i, name in enumerate(["user", "item", "timestamp", "split"])
        }
    )


def test_splits_take_history_from_rows_before_the_target():
    table = _table(
        [
            ("u", "c", 3, "train"),
            ("u", "a", 1, "train"),
            ("u", "b", 2, "train"),
            ("u", "d", 4, "valid"),
            ("u", "e", 5, "test"),
            ("v", "a", 7, "train"),
            ("v", "b", 8, "valid"),
            ("v", "c", 9, "test"),
        ]
    )

    s = build_splits(table, max_history=3)

    a, b, c, d, e = range(5)
    assert [seq.tolist() for seq in s.train_sequences] == [[a, b, c], [a]]
    assert s.valid.history.tolist() == [[a, b, c], [PAD, PAD, a]]
    assert s.valid.target.tolist() == [d, b]
    assert s.test.history.tolist() == [[b, c, d], [PAD, a, b]]  # train + valid, last 3
    assert s.test.target.tolist() == [e, c]
    # masking covers the whole history, not only the last max_history items
    first = s.test.seen_items[s.test.seen_indptr[0] : s.test.seen_indptr[1]]
    assert sorted(first.tolist()) == [a, b, c, d]
    assert s.train_counts.tolist() == [2, 1, 1, 0, 0]


def test_timestamp_ties_are_broken_by_the_split_column():
    table = _table([("u", "a", 1, "train"), ("u", "c", 5, "test"), ("u", "b", 5, "valid")])

    s = build_splits(table)

    assert s.test.history[0, -2:].tolist() == [0, 1]  # a, then the valid item b


def test_training_examples_predict_each_next_item_once():
    sequences = [np.arange(1, 14)]  # 13 items: 12 targets, windows of 5 from the end

    x, y = training_examples(sequences, max_history=5)

    targets = sorted(y[y != PAD].tolist())
    assert targets == list(range(2, 14))
    assert x.tolist()[0] == [8, 9, 10, 11, 12] and y.tolist()[0] == [9, 10, 11, 12, 13]
    assert x.tolist()[-1] == [PAD, PAD, PAD, 1, 2] and y.tolist()[-1] == [PAD, PAD, PAD, 2, 3]


def test_feature_bank_in_memory_reads_the_store_once_in_chunks():
    item_features, table = features(10, missing=(2,))
    calls = []
    reader = ItemFeatures(
        item_features.item_rows, lambda r: calls.append(len(r)) or table[r], (L, K, D), G
    )
    row_bytes = L * K * D * 2

    bank = ItemFeatureBank(reader, "tokens", memory_bytes=1 << 20, read_chunk_bytes=4 * row_bytes)
    feats, has = bank.gather(np.array([0, 2, 5]))

    assert bank.in_memory and calls == [4, 4, 1]  # 9 items with features, 4 rows a read
    assert has.tolist() == [True, False, True]
    assert feats.shape == (2, L, K, D) and feats.dtype.is_floating_point
    assert np.array_equal(feats.numpy(), table[[0, 5]].astype(np.float32))
    bank.gather(np.array([0, 1]))
    assert calls == [4, 4, 1]  # later batches come from memory


def test_feature_bank_reads_per_batch_past_its_memory_budget():
    item_features, table = features(10)
    calls = []
    reader = ItemFeatures(
        item_features.item_rows, lambda r: calls.append(list(r)) or table[r], (L, K, D), G
    )

    bank = ItemFeatureBank(reader, "tokens", memory_bytes=100)
    feats, _ = bank.gather(np.array([1, 4, 7]))

    assert not bank.in_memory
    assert calls == [[1, 4, 7]]  # only the batch's unique items, once each
    assert np.array_equal(feats.numpy(), table[[1, 4, 7]].astype(np.float32))


def test_feature_bank_keeps_only_what_the_variant_reads():
    item_features, table = features(4)

    mean = ItemFeatureBank(item_features, "mean").gather(np.arange(4))[0]
    last = ItemFeatureBank(item_features, "last").gather(np.arange(4))[0]
    final = ItemFeatureBank(item_features, "last_layer_last_token").gather(np.arange(4))[0]

    assert mean.shape == (4, L, D) and last.shape == (4, L, D) and final.shape == (4, D)
    expected_mean = table.astype(np.float32).mean(axis=2)
    assert np.allclose(mean.numpy(), expected_mean, atol=1e-2)
    assert np.array_equal(last.numpy(), table[:, :, -1].astype(np.float32))
    assert np.array_equal(final.numpy(), table[:, -1, -1].astype(np.float32))


def test_feature_bank_counts_items_without_features():
    bank = ItemFeatureBank(features(8, missing=(1, 6))[0], "last")

    assert bank.n_missing == 2
    assert bank.has.tolist() == [True, False, True, True, True, True, False, True]
