"""The memory budget of one training process and how it is shared out.

Peak resident memory is set by `TrainConfig.memory_budget_bytes`, not by the store, the catalog
or the batch size. What the process holds before training (interpreter, torch, the splits, the
model: the baseline, measured) comes off the top; the rest is shared out as

    activations   25%   one micro-batch of items encoded with gradients (sets its size)
    step buffer   30%   a step's features, kept for the second pass of gradient caching;
                        the background reader fills what a step does not keep
    read-ahead    15%   rows the background reader has read for the coming steps
    hot rows      25%   the most-read items' features, held for the whole run
    slack          5%   the micro-batch's own rows, vectors, the negative cache, allocator

Nothing else grows with the data: the item-vector cache is (n_items, dz) float32 (5 MB for
20,000 items at dz = 64) and evaluation scores users in chunks sized from the activation share.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SHARES = {"activations": 0.25, "step": 0.30, "readahead": 0.15, "hot": 0.25}


def process_rss() -> int:
    """Resident bytes of this process now (Linux /proc; 0 where unknown)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_budget(workers_per_machine: int = 1) -> int:
    """Half of this machine's memory, shared by the training processes on it."""
    return machine_memory() // 2 // max(1, workers_per_machine)


def encoder_activation_bytes(view_shape: tuple[int, ...], d_model: int) -> int:
    """Bytes autograd keeps per item encoded with gradients, for a stored view of `view_shape`.

    The first projection normalises each stored D-vector and projects it to d
    (encoder.NormProjection): the float32 normalised input, 4 bytes per stored value, is what
    its weight gradient needs; the float32 copy made on the way is freed per layer. Everything
    after it is d-wide: about 8 d-vectors per token (pools, experts), 12 counted. The 1.25
    covers a layer's float32 copy in flight and the allocator's rounding (measured on the CPU:
    6-10 MB held per item at (6, 64, 3584), estimate 8.4 MB)."""
    values = math.prod(view_shape)
    tokens = math.prod(view_shape[:-1])
    return int(1.25 * (4 * values + 12 * tokens * d_model * 4)) + 4096


def encoder_transient_bytes(view_shape: tuple[int, ...], d_model: int) -> int:
    """Bytes per item in flight while encoding without gradients (one layer's float32 copy and
    its normalised form at a time, then d-wide values)."""
    n_layers = view_shape[0] if len(view_shape) > 1 else 1
    values = math.prod(view_shape)
    return int(1.25 * (8 * values / n_layers + 12 * (values // view_shape[-1]) * d_model * 4))


@dataclass(frozen=True)
class MemoryPlan:
    budget: int  # the configured (or default) budget, bytes
    baseline: int  # resident bytes before training began
    activation_bytes: int
    step_bytes: int
    readahead_bytes: int
    hot_bytes: int
    micro_batch: int  # items per encoder call with gradients
    encode_batch: int  # items per encoder call without gradients
    grad_bytes_per_item: int
    item_bytes: int  # one item's stored view, float16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        gib = 1 << 30
        return (
            f"memory budget {self.budget / gib:.1f} GiB: baseline {self.baseline / gib:.2f}, "
            f"activations {self.activation_bytes / gib:.2f} ({self.micro_batch} items a "
            f"micro-batch), step buffer {self.step_bytes / gib:.2f}, read-ahead "
            f"{self.readahead_bytes / gib:.2f}, hot rows {self.hot_bytes / gib:.2f}"
        )


class BudgetError(ValueError):
    """A budget that cannot be kept: too small for what must be held at once, or more than
    the machine has."""


def check_budget(budget: int) -> None:
    """Refuse a budget above what this machine can hold (machine_memory): no plan could keep
    it, and the process would be killed instead of refused."""
    memory = machine_memory()
    if budget > memory:
        raise BudgetError(
            f"memory_budget_bytes={budget} ({budget / 2**30:.1f} GiB): more than this machine's "
            f"memory ({memory / 2**30:.1f} GiB); give at most that, or 0 for half of it"
        )


def plan_memory(
    budget: int,
    view_shape: tuple[int, ...],
    d_model: int,
    encode_batch_size: int,
    baseline: int | None = None,
    micro_batch_items: int = 0,
) -> MemoryPlan:
    """Share `budget` out (see the module docstring) for items stored as `view_shape` float16;
    `micro_batch_items` caps the micro-batch below what the activation share holds."""
    baseline = process_rss() if baseline is None else baseline
    available = budget - baseline
    item_bytes = 2 * math.prod(view_shape)
    grad = encoder_activation_bytes(view_shape, d_model)
    # the least that works: one item's activations, and a step buffer and read-ahead of a few
    # rows each; below that the budget cannot be honoured
    streaming = SHARES["step"] + SHARES["readahead"]
    least = baseline + max(grad / SHARES["activations"], 8 * item_bytes / streaming)
    if budget < least:
        raise BudgetError(
            f"memory_budget_bytes={budget}: too small; {baseline / 2**30:.2f} GiB is in use "
            f"before training and one item of shape {view_shape} needs "
            f"{(grad + item_bytes) / 2**20:.0f} MiB to encode with gradients; give at least "
            f"{least / 2**30:.1f} GiB"
        )
    shares = {name: int(available * share) for name, share in SHARES.items()}
    transient = encoder_transient_bytes(view_shape, d_model) + item_bytes
    return MemoryPlan(
        budget=budget,
        baseline=baseline,
        activation_bytes=shares["activations"],
        step_bytes=shares["step"],
        readahead_bytes=shares["readahead"],
        hot_bytes=shares["hot"],
        micro_batch=max(1, min(micro_batch_items or sys.maxsize, shares["activations"] // grad)),
        encode_batch=max(1, min(encode_batch_size, shares["activations"] // transient)),
        grad_bytes_per_item=grad,
        item_bytes=item_bytes,
    )
