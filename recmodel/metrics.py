"""Full-ranking evaluation: HR@k and NDCG@k of one held-out target per user.

- Every catalog item is ranked; the user's history items are masked out (never the target).
- rank = number of unmasked items scored strictly higher than the target, plus, pessimistically,
  the number of *other* items scored exactly the same. Counting only strictly-greater scores
  (optimistic) would give a model that scores everything alike a perfect HR; a tie costs the
  target the whole tied block instead. `ties="optimistic"` is available for comparison.
- A non-finite target score ranks last.
- HR@k = [rank < k]; NDCG@k = 1 / log2(rank + 2) if rank < k else 0 (one relevant item).

Groups reported besides "overall" (by the target's number of training interactions, c):
- cold_start: c = 0 (the item never appears in training);
- tail / mid / head: terciles of c over the items with c >= 1: tail c <= t1, mid t1 < c <= t2,
  head c > t2, where t1, t2 are the 1/3 and 2/3 quantiles of c over those items (a tercile
  holds about a third of the warm items; ties at a threshold fall into the lower bucket).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from recmodel.data import EvalSet

KS: tuple[int, ...] = (10, 20)
GROUPS: tuple[str, ...] = ("overall", "cold_start", "head", "mid", "tail")


def target_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    seen_indptr: np.ndarray,
    seen_items: np.ndarray,
    ties: str = "pessimistic",
) -> torch.Tensor:
    """scores: (M, N); targets: (M,); seen: CSR (M + 1,), (nnz,) of the items to mask per row.
    Returns the 0-based rank of each target, (M,) int64."""
    if ties not in ("pessimistic", "optimistic"):
        raise ValueError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
    M, N = scores.shape
    rows = torch.arange(M)
    scores = scores.clone()
    target_scores = scores[rows, targets]  # (M,)
    lengths = torch.from_numpy(np.diff(seen_indptr))
    seen_rows = torch.repeat_interleave(rows, lengths)
    scores[seen_rows, torch.from_numpy(seen_items)] = float("-inf")
    scores[rows, targets] = target_scores  # the target is never masked
    t = target_scores.unsqueeze(1)
    rank = (scores > t).sum(1)
    if ties == "pessimistic":
        rank = rank + (scores == t).sum(1) - 1  # minus the target itself
    return torch.where(torch.isfinite(target_scores), rank, torch.full_like(rank, N))


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, Any]:
    """HR@k and NDCG@k averaged over targets; None (JSON null) when there are none."""
    ranks = np.asarray(ranks)
    out: dict[str, Any] = {"n": int(len(ranks))}
    for k in ks:
        hit = ranks < k
        gain = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
        out[f"hr@{k}"] = float(hit.mean()) if len(ranks) else None
        out[f"ndcg@{k}"] = float(gain.mean()) if len(ranks) else None
    return out


def ndcg_at(ranks: np.ndarray, k: int = 10) -> float:
    ranks = np.asarray(ranks)
    if len(ranks) == 0:
        return 0.0
    return float(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0).mean())


def popularity_thresholds(train_counts: np.ndarray) -> tuple[float, float]:
    warm = train_counts[train_counts > 0]
    if len(warm) == 0:
        return (math.inf, math.inf)
    t1, t2 = np.quantile(warm, [1 / 3, 2 / 3])
    return float(t1), float(t2)


def target_groups(targets: np.ndarray, train_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks over targets for every group in GROUPS."""
    t1, t2 = popularity_thresholds(train_counts)
    c = train_counts[targets]
    return {
        "overall": np.ones(len(targets), dtype=bool),
        "cold_start": c == 0,
        "head": c > t2,
        "mid": (c > t1) & (c <= t2),
        "tail": (c > 0) & (c <= t1),
    }


def summarize(
    ranks: np.ndarray, targets: np.ndarray, train_counts: np.ndarray, ks: tuple[int, ...] = KS
) -> dict[str, Any]:
    """Metrics of every group, plus the tercile thresholds used."""
    groups = target_groups(targets, train_counts)
    out: dict[str, Any] = {name: ranking_metrics(ranks[mask], ks) for name, mask in groups.items()}
    t1, t2 = popularity_thresholds(train_counts)
    out["popularity_thresholds"] = {"t1": t1, "t2": t2}
    return out


@torch.no_grad()
def rank_eval_set(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    evalset: EvalSet,
    batch_size: int = 512,
    ties: str = "pessimistic",
    max_bytes: int = 1 << 30,
) -> np.ndarray:
    """Ranks of every target of `evalset` by dot-product scores, in chunks of at most
    `batch_size` users whose (users, items) scores and masks take at most about `max_bytes`
    (a float32 score matrix, its masked copy and two comparisons: 16 bytes per score)."""
    ranks = []
    ptr = evalset.seen_indptr
    n_items = max(1, item_vectors.shape[0])
    batch_size = max(1, min(batch_size, max_bytes // (16 * n_items)))
    for start in range(0, len(evalset), batch_size):
        stop = min(start + batch_size, len(evalset))
        scores = user_vectors[start:stop] @ item_vectors.T  # (b, N)
        ranks.append(
            target_ranks(
                scores,
                torch.from_numpy(evalset.target[start:stop]),
                ptr[start : stop + 1] - ptr[start],
                evalset.seen_items[ptr[start] : ptr[stop]],
                ties,
            ).numpy()
        )
    return np.concatenate(ranks) if ranks else np.empty(0, dtype=np.int64)
