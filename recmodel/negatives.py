"""Negatives: which items a step's softmax ranks the target against, and where their vectors
come from.

Which: the items with at least one training interaction. Items never seen in training are no
negatives: the loss could only push them down, and they are exactly the cold-start items a
content encoder exists for. All of them (full softmax) or `n_negatives` drawn from
q(i) ~ count ** power (sampled softmax with log-Q correction, losses.py).

Where from, TrainConfig.negatives:
- exact: every negative is encoded with gradients at every step, the one-shot computation.
  Its cost grows with the catalog (a full softmax encodes every seen item every step).
- cached: cross-batch negatives (Wang et al., SIGIR 2021, "Cross-Batch Negative Sampling for
  Training Two-Tower Recommenders"), a memory bank of every item's vector computed without
  gradients (ItemVectorCache). A step encodes with gradients only the items it needs them
  for, its histories and targets, and puts those fresh vectors in place of their cached
  ones; every other negative comes from the cache. After the step, its fresh vectors
  (detached) overwrite their rows of the cache, as CBNS reuses the embeddings of recent
  mini-batches, so the items trained on most are also the freshest negatives.

What caching changes. The cached vectors are stale: an item's row was computed when the item
was last in a batch or at the last refresh (every `cache_refresh_steps` steps, or at the start
of the epoch), whichever came later; refreshed rows come from eval mode (no dropout), batch
rows from train mode. Negatives therefore push the user vectors away from slightly old item
vectors, and no gradient reaches an item's encoder through its role as a negative, only
through its appearances as a history item or a target. With a slowly moving encoder (the
paper's learning rates) the lag is small; XBM/CBNS report that it costs little once the
embeddings settle. A refresh costs one no-grad pass over every item with features, one read
of the store in row order; "once per epoch" reuses the vectors validation computes anyway.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def negative_proposal(train_counts: np.ndarray, power: float) -> np.ndarray:
    """q(i) ~ count ** power over the items seen in training, 0 elsewhere; (n_items,)."""
    seen = train_counts > 0
    proposal = np.where(seen, train_counts.astype(np.float64), 0.0) ** power
    if not seen.any():  # no training interaction at all: there are no steps either
        proposal = np.ones(len(seen))
    return proposal / proposal.sum()


class ItemVectorCache:
    """Every item's vector without gradients, (n_items, d) float32, refreshed every
    `refresh_steps` optimizer steps, or at the start of every epoch when that is 0."""

    def __init__(self, refresh_steps: int) -> None:
        self.refresh_steps = refresh_steps
        self.vectors: torch.Tensor | None = None
        self.refreshed_step = -1  # the global step the vectors belong to
        self.refreshes = 0  # how many times they were computed (validation reuse not counted)

    def due(self, global_step: int, epoch_start: bool) -> bool:
        if self.vectors is None:
            return True
        if self.refresh_steps == 0:
            return epoch_start and self.refreshed_step != global_step
        return global_step - self.refreshed_step >= self.refresh_steps

    def update(self, vectors: torch.Tensor, global_step: int, counted: bool = True) -> None:
        self.vectors = vectors.detach()
        self.refreshed_step = global_step
        self.refreshes += int(counted)

    def state_dict(self) -> dict[str, Any]:
        return {
            "vectors": None if self.vectors is None else self.vectors.cpu(),
            "refreshed_step": self.refreshed_step,
            "refreshes": self.refreshes,
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        vectors = state["vectors"]
        self.vectors = None if vectors is None else vectors.to(device)
        self.refreshed_step = int(state["refreshed_step"])
        self.refreshes = int(state["refreshes"])
