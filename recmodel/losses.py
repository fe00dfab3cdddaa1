"""Training objectives. All return a sum over examples; the caller divides by the number of
targets in the (global) batch, so several workers' gradients add up to one batch's mean.

- full softmax: cross-entropy of the target against every catalog item it is given (step.py
  gives the items seen in training);
- sampled softmax: against S negatives shared by the batch, drawn from a proposal q, with the
  log-Q correction (logit - log(S q(i)), Bengio & Senecal 2008; Jean et al. 2015) so the
  sampled loss estimates the full one; a negative equal to the row's target is masked out;
- alignment / uniformity (Wang & Isola 2020, used for recommendation by DirectAU): pull a user
  vector towards its target's vector, spread user and item vectors over the sphere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_loss(
    users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    # users: (M, d), items: (N, d), targets: (M,) indices into items
    return F.cross_entropy(users @ items.T, targets, reduction="sum")


def sampled_softmax_loss(
    users: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    log_q_pos: torch.Tensor,
    log_q_neg: torch.Tensor,
    accidental: torch.Tensor,
) -> torch.Tensor:
    """users, positives: (M, d); negatives: (S, d); log_q_*: log of the expected number of
    times the item is drawn (log S q(i)), (M,) and (S,); accidental: (M, S) True where the
    negative is the row's target."""
    pos = (users * positives).sum(-1, keepdim=True) - log_q_pos.unsqueeze(1)  # (M, 1)
    neg = users @ negatives.T - log_q_neg.unsqueeze(0)  # (M, S)
    neg = neg.masked_fill(accidental, float("-inf"))
    logits = torch.cat([pos, neg], dim=1)  # (M, 1 + S), the target in column 0
    zeros = torch.zeros(len(users), dtype=torch.long, device=users.device)
    return F.cross_entropy(logits, zeros, reduction="sum")


def alignment_loss(users: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Sum over rows of ||u - v+||^2 on the unit sphere (alpha = 2)."""
    return (F.normalize(users, dim=-1) - F.normalize(positives, dim=-1)).pow(2).sum()


def uniformity_loss(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log E exp(-t ||x_i - x_j||^2) over distinct pairs on the unit sphere; (n, d) -> scalar."""
    if len(x) < 2:
        return x.sum() * 0.0
    return torch.pdist(F.normalize(x, dim=-1)).pow(2).mul(-t).exp().mean().log()
