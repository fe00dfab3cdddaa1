from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recmodel.metrics import ranking_metrics, summarize, target_ranks


def _ranks(scores, targets, seen=None, ties="pessimistic"):
    seen = seen or [[] for _ in targets]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    items = np.array([i for s in seen for i in s], dtype=np.int64)
    return target_ranks(
        torch.tensor(scores, dtype=torch.float32), torch.tensor(targets), indptr, items, ties
    ).tolist()


def test_rank_counts_items_scored_strictly_higher():
    assert _ranks([[0.1, 0.9, 0.5, 0.7]], [2]) == [2]
    assert _ranks([[0.1, 0.9, 0.5, 0.7]], [1]) == [0]


def test_ties_count_against_the_target():
    scores = [[0.5, 0.5, 0.5, 0.9]]

    assert _ranks(scores, [1]) == [3]  # 0.9 above, two others tied: pessimistic
    assert _ranks(scores, [1], ties="optimistic") == [1]


def test_constant_scores_rank_the_target_last():
    assert _ranks([[1.0] * 5], [2]) == [4]


def test_history_items_are_masked_but_never_the_target():
    scores = [[0.9, 0.8, 0.7, 0.1]]

    assert _ranks(scores, [2], seen=[[0, 1]]) == [0]
    assert _ranks(scores, [2], seen=[[0, 2]]) == [1]  # target seen before: still ranked


def test_non_finite_target_score_ranks_last():
    assert _ranks([[0.1, float("nan"), 0.3]], [1]) == [3]


def test_hit_rate_and_ndcg_at_the_k_boundary():
    m = ranking_metrics(np.array([0, 9, 10, 19, 20]))

    assert m["n"] == 5
    assert m["hr@10"] == pytest.approx(2 / 5)
    assert m["hr@20"] == pytest.approx(4 / 5)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(11)) / 5)
    assert m["ndcg@20"] == pytest.approx(
        (1.0 + 1 / math.log2(11) + 1 / math.log2(12) + 1 / math.log2(21)) / 5
    )


def test_empty_group_reports_null_metrics():
    assert ranking_metrics(np.array([], dtype=np.int64)) == {
        "n": 0,
        "hr@10": None,
        "ndcg@10": None,
        "hr@20": None,
        "ndcg@20": None,
    }


def test_groups_split_targets_into_cold_start_and_popularity_terciles():
    counts = np.array([0, 1, 2, 3, 4, 5, 6])  # warm counts 1..6: t1 = 2.67, t2 = 4.33
    targets = np.array([0, 1, 2, 3, 4, 5, 6])
    ranks = np.array([0, 50, 50, 0, 50, 0, 0])

    out = summarize(ranks, targets, counts)

    assert out["overall"]["n"] == 7
    assert out["cold_start"]["n"] == 1 and out["cold_start"]["hr@10"] == 1.0
    assert out["tail"]["n"] == 2 and out["tail"]["hr@10"] == 0.0  # counts 1, 2
    assert out["mid"]["n"] == 2 and out["mid"]["hr@10"] == 0.5  # counts 3, 4
    assert out["head"]["n"] == 2 and out["head"]["hr@10"] == 1.0  # counts 5, 6
    assert out["popularity_thresholds"]["t1"] == pytest.approx(8 / 3)
