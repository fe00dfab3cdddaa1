from __future__ import annotations

import numpy as np
import pyarrow as pa

from recmodel.data import PAD, build_splits, training_examples


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
