"""A background reader: features for a known sequence of requests, read ahead of the compute.

Training knows an epoch's batches before it starts them, so the items every step will encode
are known too. `Prefetcher` reads them on one thread, in request order (each request's rows
sorted), and keeps at most `max_bytes` of finished blocks waiting, so I/O runs while the
previous step computes and memory stays bounded. Reads release the GIL (file reads, numpy
copies), so the thread costs the compute little.

A request larger than `max_bytes` is still read, once nothing else is waiting: the bound is
then that one block, which the caller sized. Blocks the consumer keeps after taking them
(gradient caching keeps a step's features for its second pass) count against the bound while
held: `take(hold=True)`, then `release(n)`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from recmodel.features import ItemFeatureBank, dequantize

_DONE = object()


class Block:
    """The features of one request, as tensors (pinned host memory where asked): float16, or
    an int8 bank's rows as stored (values and per-token scales), dequantized by `on_device`."""

    __slots__ = ("items", "features", "scales", "has", "nbytes")

    def __init__(
        self,
        items: np.ndarray,
        features: torch.Tensor,
        has: torch.Tensor,
        scales: torch.Tensor | None = None,
    ) -> None:
        self.items = items  # (U,) catalog indices, as requested
        self.features = features  # (F, *view) float16 (or int8), F = has.sum()
        self.scales = scales  # (F, L, K) float16 for int8 features, else None
        self.has = has  # (U,) bool
        self.nbytes = sum(t.numel() * t.element_size() for t in (features, scales) if t is not None)

    def on_device(self, device: torch.device | str) -> torch.Tensor:
        """(F, *view) float16 on `device`: int8 rows move as they are and are dequantized there."""
        features = self.features.to(device, non_blocking=True)
        if self.scales is None:
            return features
        return dequantize(features, self.scales.to(device, non_blocking=True))


class Prefetcher:
    """Iterate over Blocks of `requests` (each an array of catalog indices), read ahead."""

    def __init__(
        self,
        bank: ItemFeatureBank,
        requests: Iterable[np.ndarray],
        max_bytes: int,
        pin_memory: bool = False,
    ) -> None:
        self.bank = bank
        self.max_bytes = max(0, int(max_bytes))
        self.pin_memory = pin_memory
        self.wait_seconds = 0.0  # time the consumer spent waiting for a block
        self.read_seconds = 0.0  # time the thread spent reading
        self.bytes_read = 0
        self._requests = iter(requests)
        self._ready: deque = deque()
        self._waiting_bytes = 0
        self._held_bytes = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="feature-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Block]:
        return self

    def __next__(self) -> Block:
        return self.take()

    def take(self, hold: bool = False) -> Block:
        """The next block; with `hold`, it keeps counting against the bound until released
        (taken and held in one step, so the reader cannot fill its room in between)."""
        started = time.perf_counter()
        with self._cond:
            while not self._ready:
                self._cond.wait()
            entry = self._ready.popleft()
            if entry is _DONE:
                self._ready.appendleft(_DONE)  # iteration stays over
                raise StopIteration
            if isinstance(entry, BaseException):
                self._ready.appendleft(entry)
                raise entry
            self._waiting_bytes -= entry.nbytes
            if hold:
                self._held_bytes += entry.nbytes
            self._cond.notify_all()
        self.wait_seconds += time.perf_counter() - started
        return entry

    def release(self, nbytes: int) -> None:
        with self._cond:
            self._held_bytes = max(0, self._held_bytes - nbytes)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._ready.clear()
            self._waiting_bytes = 0
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            for items in self._requests:
                items = np.asarray(items, dtype=np.int64)
                size = self.bank.nbytes(items)
                with self._cond:
                    while (
                        not self._stop
                        and self._ready
                        and self._waiting_bytes + self._held_bytes + size > self.max_bytes
                    ):
                        self._cond.wait()
                    if self._stop:
                        return
                block = self._read(items)
                with self._cond:
                    if self._stop:
                        return
                    self._ready.append(block)
                    self._waiting_bytes += block.nbytes
                    self._cond.notify_all()
            final: object = _DONE
        except BaseException as exc:  # handed to the consumer, raised there
            final = exc
        with self._cond:
            self._ready.append(final)
            self._cond.notify_all()

    def _read(self, items: np.ndarray) -> Block:
        started = time.perf_counter()
        n = int(self.bank.has[items].sum())
        pin = self.pin_memory
        if self.bank.int8:
            values = torch.empty((n, *self.bank.view_shape), dtype=torch.int8, pin_memory=pin)
            scales = torch.empty((n, *self.bank.scales_shape), dtype=torch.float16, pin_memory=pin)
            *_, has = self.bank.read_int8(items, out=(values.numpy(), scales.numpy()))
            block = Block(items, values, torch.from_numpy(has), scales)
        else:
            out = torch.empty((n, *self.bank.view_shape), dtype=torch.float16, pin_memory=pin)
            _, has = self.bank.read(items, out=out.numpy())
            block = Block(items, out, torch.from_numpy(has))
        self.read_seconds += time.perf_counter() - started
        self.bytes_read += block.nbytes
        return block
