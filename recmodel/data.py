"""Interactions -> sequences, evaluation sets and batches (item features: features.py).

Split protocol (leave-one-out by timestamp; the `split` column of interactions.parquet is
authoritative, timestamps only order the rows of a user):
- training sequence: the user's train rows in time order;
- validation: target = the valid row, history = the train rows before it;
- test: target = the test row, history = the train and valid rows before it.
History items are masked out of the ranking (all of them, not only the last max_history the
ranker reads), except the target itself when the user saw it before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

PAD = -1  # padding / "no target" in item-index arrays
SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------------
# Sequences and splits


@dataclass
class EvalSet:
    """One evaluation split: M users, each with a history and one target."""

    users: np.ndarray  # (M,) user ids (str)
    history: np.ndarray  # (M, T) int64 item indices, left-padded with PAD, most recent last
    target: np.ndarray  # (M,) int64
    seen_indptr: np.ndarray  # (M + 1,) CSR over every history item of the user (to mask)
    seen_items: np.ndarray  # (nnz,) int64

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, rows: np.ndarray) -> EvalSet:
        starts, ends = self.seen_indptr[rows], self.seen_indptr[rows + 1]
        seen = [self.seen_items[s:e] for s, e in zip(starts, ends, strict=True)]
        return EvalSet(
            users=self.users[rows],
            history=self.history[rows],
            target=self.target[rows],
            seen_indptr=np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64),
            seen_items=np.concatenate(seen).astype(np.int64) if seen else np.empty(0, np.int64),
        )


@dataclass
class Splits:
    """Everything training and evaluation read from interactions, as catalog indices."""

    items: list[str]  # the catalog: item index -> item id
    train_sequences: list[np.ndarray]  # per user with >= 1 train row, item indices in time order
    valid: EvalSet
    test: EvalSet
    train_counts: np.ndarray  # (n_items,) int64 training interactions per item
    max_history: int

    @property
    def n_items(self) -> int:
        return len(self.items)


def build_splits(
    table: pa.Table, items: Sequence[str] | None = None, max_history: int = 10
) -> Splits:
    """`table` has columns user, item, timestamp, split. `items` is the catalog (sorted item
    ids, a superset of the table's items); default: the table's items, sorted."""
    missing = {"user", "item", "timestamp", "split"} - set(table.column_names)
    if missing:
        raise ValueError(f"interactions lack column(s): {', '.join(sorted(missing))}")
    users = _strings(table.column("user"))
    item_ids = _strings(table.column("item"))
    stamps = np.asarray(table.column("timestamp").to_numpy(zero_copy_only=False), dtype=np.int64)
    split_names = _strings(table.column("split"))
    bad = sorted(set(np.unique(split_names)) - set(SPLITS))
    if bad:
        raise ValueError(f"interactions: unknown split value(s) {bad}; expected {SPLITS}")
    split = np.select([split_names == "train", split_names == "valid"], [0, 1], default=2).astype(
        np.int8
    )

    catalog = sorted(set(item_ids.tolist())) if items is None else list(items)
    position = {item: i for i, item in enumerate(catalog)}
    unknown = sorted(set(item_ids.tolist()) - position.keys())
    if unknown:
        raise ValueError(f"interactions name items outside the catalog: {unknown[:5]}")
    item_idx = np.fromiter((position[i] for i in item_ids), dtype=np.int64, count=len(item_ids))

    user_ids, user_code = np.unique(users, return_inverse=True)
    # by user, then time; the split breaks timestamp ties (train before valid before test)
    order = np.lexsort((split, stamps, user_code))
    user_code, item_idx, split = user_code[order], item_idx[order], split[order]
    bounds = np.flatnonzero(np.diff(user_code)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(user_code)]])

    train_sequences: list[np.ndarray] = []
    evals: dict[int, list[tuple[str, np.ndarray, int]]] = {1: [], 2: []}
    for s, e in zip(starts, ends, strict=True):
        seq, sp = item_idx[s:e], split[s:e]
        train = seq[sp == 0]
        if len(train):
            train_sequences.append(train)
        for which in (1, 2):
            at = np.flatnonzero(sp == which)
            if len(at) == 0:
                continue
            first = at[0]
            before = seq[:first][sp[:first] < which]  # valid: train rows; test: train + valid
            if len(before):  # a user with no history cannot be ranked for; skipped
                evals[which].append((str(user_ids[user_code[s]]), before, int(seq[first])))

    train_counts = np.bincount(
        np.concatenate(train_sequences) if train_sequences else np.empty(0, np.int64),
        minlength=len(catalog),
    ).astype(np.int64)
    return Splits(
        items=catalog,
        train_sequences=train_sequences,
        valid=_eval_set(evals[1], max_history),
        test=_eval_set(evals[2], max_history),
        train_counts=train_counts,
        max_history=max_history,
    )


def _strings(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)


def _eval_set(rows: list[tuple[str, np.ndarray, int]], max_history: int) -> EvalSet:
    history = np.full((len(rows), max_history), PAD, dtype=np.int64)
    seen: list[np.ndarray] = []
    for r, (_, before, _) in enumerate(rows):
        recent = before[-max_history:]
        history[r, max_history - len(recent) :] = recent
        seen.append(np.unique(before))
    lengths = np.array([len(s) for s in seen], dtype=np.int64)
    return EvalSet(
        users=np.array([u for u, _, _ in rows], dtype=object),
        history=history,
        target=np.array([t for _, _, t in rows], dtype=np.int64),
        seen_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        seen_items=np.concatenate(seen).astype(np.int64) if seen else np.empty(0, np.int64),
    )


def training_examples(sequences: list[np.ndarray], max_history: int) -> tuple[np.ndarray, ...]:
    """SASRec's next-item examples: for a train sequence s, inputs s[:-1] predict targets s[1:]
    at every position. Long sequences are cut into windows of max_history from the end, so
    each training interaction (but the first) is a target exactly once.
    Returns inputs, targets: (M, T) int64, left-padded with PAD."""
    T = max_history
    windows: list[tuple[np.ndarray, np.ndarray]] = []
    for seq in sequences:
        inputs, targets = seq[:-1], seq[1:]
        for end in range(len(inputs), 0, -T):
            start = max(0, end - T)
            windows.append((inputs[start:end], targets[start:end]))
    x = np.full((len(windows), T), PAD, dtype=np.int64)
    y = np.full((len(windows), T), PAD, dtype=np.int64)
    for r, (i, t) in enumerate(windows):
        x[r, T - len(i) :] = i
        y[r, T - len(t) :] = t
    return x, y


def batch_order(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """A shuffled epoch: index arrays of `batch_size` (the last may be shorter)."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
