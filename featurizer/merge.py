"""Token merging without learned weights: bipartite soft matching (ToMe, Bolya et al. 2023).

The extractor reduces the N old tokens of one layer (the whole prompt: video + text) to
K - G rows before they go into the feature store. Each round of bipartite soft matching

1. splits the current tokens, in sequence order, alternately into A (even positions) and
   B (odd positions);
2. matches every A token to its most cosine-similar B token;
3. merges the r best-matched A tokens into their B partners, r = min(|A|, n - k), as
   size-weighted means (a token that already absorbed s inputs counts s times);

and rounds repeat until exactly k tokens remain (about log2(N / k) rounds, since one round
removes at most half). The similarity metric is the tokens themselves (ToMe uses the attention
keys; a frozen hidden-state dump has none, and no weights may be learned here).

Contract:
- every output row is the mean of the input rows it absorbed, so
  ``(sizes[:, None] * out).sum(0) == tokens.sum(0)`` and ``sizes.sum() == N``;
- output order: merged tokens are ordered by the position of their first (earliest) member,
  so the result keeps the prompt's order (video frames before the title, early frames first);
- N == k returns the tokens unchanged (as float32); N < k raises ValueError: padding would
  invent rows the recommender could not tell from real ones, and a real prompt always has
  N >> k, so a short one is a bug upstream;
- deterministic: ties go to the lowest index (stable sorts, first argmax). On CUDA,
  ``index_add_`` accumulates with atomics, so results may differ in the last bits between runs
  unless ``torch.use_deterministic_algorithms(True)`` is set; on the CPU they are bitwise equal.
- computed in float32 on the input's device; only a loop over rounds, none over tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def merge_tokens(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """(N, D) tokens -> (k, D) float32 by bipartite soft matching; see the module docstring."""
    merged, _ = merge_tokens_with_sizes(tokens, k)
    return merged


def merge_tokens_with_sizes(tokens: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) tokens -> ((k, D) float32 merged tokens, (k,) int64 sizes: inputs per output)."""
    if tokens.ndim != 2:
        raise ValueError(f"merge_tokens expects (N, D) tokens, got shape {tuple(tokens.shape)}")
    n = tokens.shape[0]
    if k < 1:
        raise ValueError(f"merge_tokens: k must be >= 1, got {k}")
    if n < k:
        raise ValueError(f"merge_tokens: cannot merge {n} tokens up to k={k} (need N >= k)")

    x = tokens.detach().to(torch.float32)  # (n, D) current tokens, each a mean of its members
    size = torch.ones(n, dtype=torch.float32, device=x.device)  # (n,) members per token
    first = torch.arange(n, device=x.device)  # (n,) position of each token's first member
    while x.shape[0] > k:
        x, size, first = _bipartite_round(x, size, first, k)
    return x, size.round().to(torch.int64)


def _bipartite_round(
    x: torch.Tensor, size: torch.Tensor, first: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One round: merge r = min(|A|, n - k) A tokens into B; returns tokens in `first` order."""
    n = x.shape[0]
    xa, xb = x[0::2], x[1::2]  # (nA, D), (nB, D)
    sa, sb = size[0::2], size[1::2]
    fa, fb = first[0::2], first[1::2]
    r = min(xa.shape[0], n - k)

    metric = F.normalize(x, dim=-1)
    scores = metric[0::2] @ metric[1::2].T  # (nA, nB) cosine similarity
    best_score, best_b = scores.max(dim=-1)  # (nA,) each A token's closest B token
    order = torch.argsort(best_score, descending=True, stable=True)
    src = order[:r]  # A tokens merged this round
    dst = best_b[src]  # their B partners

    wsum = xb * sb[:, None]  # (nB, D) size-weighted sums
    wsum.index_add_(0, dst, xa[src] * sa[src, None])
    sb = sb.index_add(0, dst, sa[src])
    xb = wsum / sb[:, None]
    fb = fb.scatter_reduce(0, dst, fa[src], reduce="amin")

    keep = torch.ones(xa.shape[0], dtype=torch.bool, device=x.device)
    keep[src] = False
    x = torch.cat([xa[keep], xb])
    size = torch.cat([sa[keep], sb])
    first = torch.cat([fa[keep], fb])
    perm = torch.argsort(first)  # first positions are distinct, so the order is total
    return x[perm], size[perm], first[perm]
