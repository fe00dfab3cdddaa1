"""Items through the item encoder in bounded pieces.

- `encode_catalog`: every item without gradients (validation, the negative cache, export),
  streamed from the feature bank in row order, `batch_size` items a call, with the rows of
  the next call read while this one computes.
- `GradCache`: exact gradients through the encoder for more items than fit at once (Gao et
  al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"). Pass 1
  encodes the step's items micro-batch by micro-batch without a graph; the loss is taken over
  those vectors as leaves, giving dL/dv per item; pass 2 re-encodes each micro-batch with a
  graph and back-propagates its slice of dL/dv. Parameters get the sum over micro-batches of
  dL/dv * dv/dtheta, the one-shot gradient. Dropout draws the same masks in both passes: each
  micro-batch replays the RNG state it started pass 1 with.

Both run the encoder under bf16 autocast where `autocast` is given (GPUs); vectors come out
float32.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from recmodel.features import ItemFeatureBank
from recmodel.model import ItemEncoding, LinkedOutModel
from recmodel.prefetch import Block, Prefetcher


@contextlib.contextmanager
def encoder_precision(device: torch.device, bf16: bool):
    """bf16 autocast on a GPU; a no-op otherwise."""
    if bf16:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def encode_block(
    model: LinkedOutModel,
    items: np.ndarray,
    block: Block | None,
    device: torch.device,
    bf16: bool = False,
) -> ItemEncoding:
    """One call of the item encoder on `items` (block: their features; None for id_only)."""
    ids = torch.from_numpy(np.asarray(items, dtype=np.int64)).to(device)
    features = has = None
    if block is not None:
        features = block.on_device(device)
        has = block.has.to(device, non_blocking=True)
    with encoder_precision(device, bf16):
        out = model.items(ids, features, has)
    return out


@torch.no_grad()
def encode_catalog(
    model: LinkedOutModel,
    bank: ItemFeatureBank | None,
    n_items: int,
    batch_size: int = 256,
    *,
    readahead_bytes: int = 256 << 20,
    device: torch.device | None = None,
    bf16: bool = False,
    on_done: Callable[[int, float], None] | None = None,
) -> ItemEncoding:
    """Every catalog item through the item encoder, in eval mode. Vectors (n_items, d) float32
    in catalog order; gates and h_norm (F, L) of the F items with features, in catalog order.
    `on_done(n_items, seconds)` is told when it is over."""
    started = time.perf_counter()
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    order = np.arange(n_items)
    if bank is not None:  # row order for the store; items without features first
        order = np.lexsort((bank.features.item_rows,))
    chunks = [order[s : s + batch_size] for s in range(0, n_items, batch_size)]
    vectors: torch.Tensor | None = None
    gates = h_norm = id_gate = prompt_gates = None
    reader = Prefetcher(bank, chunks, readahead_bytes, device.type == "cuda") if bank else None
    try:
        for chunk in chunks:
            block = next(reader) if reader is not None else None
            out = encode_block(model, chunk, block, device, bf16)
            idx = torch.from_numpy(chunk)
            if vectors is None:
                vectors = torch.empty(n_items, out.vectors.shape[1])
            vectors[idx] = out.vectors.float().cpu()
            if out.gates is not None:
                if gates is None:
                    gates = torch.zeros(n_items, out.gates.shape[1])
                    h_norm = torch.zeros(n_items, out.gates.shape[1])
                with_features = idx[block.has] if block is not None else idx
                gates[with_features] = out.gates.float().cpu()
                h_norm[with_features] = out.h_norm.float().cpu()  # type: ignore[index,union-attr]
                if out.prompt_gates is not None:
                    if prompt_gates is None:
                        prompt_gates = torch.zeros(n_items, out.prompt_gates.shape[1])
                    prompt_gates[with_features] = out.prompt_gates.float().cpu()
            if out.id_gate is not None:
                if id_gate is None:
                    id_gate = torch.zeros(n_items)
                id_gate[idx] = out.id_gate.float().cpu()
    finally:
        if reader is not None:
            reader.close()
        model.train(was_training)
    if vectors is None:
        vectors = torch.empty(0, model.config.d_model)
    has = torch.from_numpy(bank.has.copy()) if bank is not None else None
    if gates is not None and has is not None:
        gates, h_norm = gates[has], h_norm[has]  # type: ignore[index]
        prompt_gates = prompt_gates[has] if prompt_gates is not None else None
    if on_done is not None:
        on_done(n_items, time.perf_counter() - started)
    return ItemEncoding(
        vectors=vectors,
        has_features=has,
        gates=gates,
        h_norm=h_norm,
        id_gate=id_gate,
        prompt_gates=prompt_gates,
    )


class GradCache:
    """Pass 1 and pass 2 of the module docstring, for one step's micro-batches."""

    def __init__(self, model: LinkedOutModel, device: torch.device, bf16: bool = False) -> None:
        self.model, self.device, self.bf16 = model, device, bf16
        self._rng: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(
        self, micro_batches: Sequence[np.ndarray], blocks: Iterable[Block | None]
    ) -> torch.Tensor:
        """Vectors (U, d) of every micro-batch's items, in order: a leaf that requires grad."""
        self._rng = []
        parts = []
        with torch.no_grad():
            for items, block in zip(micro_batches, blocks, strict=True):
                self._rng.append(self._rng_state())
                out = encode_block(self.model, items, block, self.device, self.bf16)
                parts.append(out.vectors.float())
        return torch.cat(parts).requires_grad_()

    def backward(
        self,
        grad: torch.Tensor,
        micro_batches: Sequence[np.ndarray],
        blocks: Iterable[Block | None],
    ) -> None:
        """Accumulate the parameters' gradients given dL/dv (U, d) of forward()'s vectors."""
        after = self._rng_state()  # the loss's own draws (ranker dropout) came after pass 1
        start = 0
        for items, block, state in zip(micro_batches, blocks, self._rng, strict=True):
            self._set_rng_state(state)
            out = encode_block(self.model, items, block, self.device, self.bf16)
            stop = start + len(items)
            out.vectors.float().backward(grad[start:stop])
            start = stop
        self._set_rng_state(after)

    def _rng_state(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set_rng_state(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)
