from __future__ import annotations

import torch

from recmodel.ranker import SASRec
from tests.recmodel import helpers


def test_query_vector_equals_the_batched_user_vector_for_every_history_length() -> None:
    torch.manual_seed(0)
    ranker = SASRec(helpers.model_config("id_only", 20, n_blocks=2, d_model=16)).eval()
    items = torch.randn(ranker.max_history, 16)

    with torch.inference_mode():
        pairs = [
            (ranker.query_vector(items[-t:]), ranker.user_vector(items[-t:].unsqueeze(0))[0])
            for t in range(1, ranker.max_history + 1)
        ]

    for single, batched in pairs:
        torch.testing.assert_close(single, batched, rtol=1e-5, atol=1e-6)
