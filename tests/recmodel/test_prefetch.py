"""Prefetcher: blocks in request order, read ahead within a byte bound, errors raised where
the consumer is."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from recmodel.features import ItemFeatureBank, ItemFeatures
from recmodel.prefetch import Prefetcher
from tests.recmodel.helpers import D, G, K, L, features

ROW_BYTES = L * K * D * 2


def _cold_bank(n_items: int, read_rows=None) -> tuple[ItemFeatureBank, np.ndarray]:
    item_features, table = features(n_items)
    reader = ItemFeatures(
        item_features.item_rows, read_rows or (lambda r: table[np.asarray(r)]), (L, K, D), G
    )
    return ItemFeatureBank(reader, "tokens", hot_bytes=0), table


def test_prefetcher_yields_blocks_in_request_order():
    bank, table = _cold_bank(8)
    requests = [np.array([3, 1]), np.array([7]), np.array([0, 5, 6])]

    with Prefetcher(bank, requests, max_bytes=1 << 20) as reader:
        blocks = list(reader)

    assert [b.items.tolist() for b in blocks] == [r.tolist() for r in requests]
    for block, request in zip(blocks, requests, strict=True):
        assert np.array_equal(block.features.numpy(), table[request])


def _wait_for_rows(bank: ItemFeatureBank, n: int) -> None:
    deadline = time.monotonic() + 10
    while bank.rows_read < n and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # and give the thread the chance to read past it


def test_prefetcher_reads_ahead_at_most_max_bytes():
    bank, _ = _cold_bank(10)
    requests = [np.array([i]) for i in range(10)]

    reader = Prefetcher(bank, requests, max_bytes=3 * ROW_BYTES)
    _wait_for_rows(bank, 3)

    assert bank.rows_read == 3
    next(reader)
    _wait_for_rows(bank, 4)
    assert bank.rows_read == 4  # one block taken: room for one more
    reader.close()


def test_prefetcher_raises_a_read_error_in_the_consumer():
    def broken(rows):
        raise OSError("feature store /x: chunk c/3/0/0/0 is truncated")

    bank, _ = _cold_bank(4, read_rows=broken)

    with Prefetcher(bank, [np.array([3])], max_bytes=1 << 20) as reader:
        with pytest.raises(OSError, match="truncated"):
            next(reader)


def test_prefetcher_close_stops_the_thread_before_its_requests_end():
    bank, _ = _cold_bank(10)
    reader = Prefetcher(bank, ([i] for i in range(10_000)), max_bytes=ROW_BYTES)

    next(reader)
    reader.close()

    assert not any(t.name == "feature-prefetch" and t.is_alive() for t in threading.enumerate())


def test_blocks_the_consumer_holds_count_against_the_bound():
    bank, _ = _cold_bank(10)
    reader = Prefetcher(bank, [np.array([i]) for i in range(10)], max_bytes=3 * ROW_BYTES)
    _wait_for_rows(bank, 3)

    reader.take(hold=True)  # taken, but kept (a step's first pass)
    time.sleep(0.3)
    assert bank.rows_read == 3  # no room freed: the held block still counts
    reader.release(ROW_BYTES)
    _wait_for_rows(bank, 4)
    assert bank.rows_read == 4
    reader.close()


def test_blocks_of_an_int8_bank_move_as_int8_and_dequantize_on_the_device():
    rng = np.random.default_rng(0)
    values = rng.integers(-127, 128, size=(5, L, K, D), dtype=np.int8)
    scales = rng.uniform(0.01, 0.1, size=(5, L, K)).astype(np.float16)
    reader = ItemFeatures(
        np.arange(5),
        lambda r: None,  # never read: the bank keeps the rows as stored
        (L, K, D),
        G,
        read_rows_int8=lambda r: (values[np.asarray(r)], scales[np.asarray(r)]),
    )
    bank = ItemFeatureBank(reader, "tokens", hot_bytes=0)

    with Prefetcher(bank, [np.array([3, 1])], max_bytes=1 << 20) as prefetcher:
        block = next(prefetcher)

    assert block.features.dtype == torch.int8 and block.nbytes == 2 * L * K * (D + 2)
    on_device = block.on_device("cpu")
    assert on_device.dtype == torch.float16
    assert np.array_equal(on_device.numpy(), bank.read(np.array([3, 1]))[0])
