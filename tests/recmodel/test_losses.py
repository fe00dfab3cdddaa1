from __future__ import annotations

import math

import torch

from recmodel.losses import (
    alignment_loss,
    full_softmax_loss,
    sampled_softmax_loss,
    uniformity_loss,
)


def test_sampled_softmax_over_every_item_uniformly_is_the_full_softmax():
    torch.manual_seed(0)
    users, items = torch.randn(4, 6), torch.randn(9, 6)
    targets = torch.tensor([0, 3, 3, 8])
    everything = torch.arange(9)
    log_q = torch.zeros(9)  # S = N draws, q = 1/N: log(S q) = 0

    sampled = sampled_softmax_loss(
        users,
        items[targets],
        items,
        log_q[targets],
        log_q,
        targets[:, None] == everything[None, :],
    )

    assert torch.allclose(sampled, full_softmax_loss(users, items, targets))


def test_log_q_correction_lowers_the_logit_of_frequently_drawn_items():
    users, positives = torch.ones(1, 2), torch.zeros(1, 2)
    negatives = torch.zeros(2, 2)  # every logit 0 before correction
    log_q_neg = torch.log(torch.tensor([4.0, 1.0]))

    loss = sampled_softmax_loss(
        users, positives, negatives, torch.zeros(1), log_q_neg, torch.zeros(1, 2, dtype=torch.bool)
    )

    # logits [0, -log 4, 0]: -log(1 / (1 + 1/4 + 1))
    assert math.isclose(loss.item(), math.log(2.25), rel_tol=1e-6)


def test_alignment_is_zero_for_aligned_pairs():
    x = torch.randn(5, 3)

    assert alignment_loss(x, 2 * x).item() < 1e-10
    assert alignment_loss(x, -x).item() > 0


def test_uniformity_is_lower_for_spread_out_vectors():
    spread = torch.eye(4)
    clumped = torch.ones(4, 4) + 0.01 * torch.eye(4)

    assert uniformity_loss(spread) < uniformity_loss(clumped)
