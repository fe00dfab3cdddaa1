"""ID fusion (the DFF study, Sun et al. 2025): z' = g * e_id + (1 - g) * z with a learned gate.

The study's finding is that fusing LVLM features with item-ID embeddings beats replacing IDs:
IDs carry collaborative signal that content does not. An ID embedding is only worth something
for an item seen in training, though: a cold-start item's ID row was never a positive, so its
gate is forced to 0 (pure content) through the `known` mask, set from the training counts.

ID dropout (as in DropoutNet, Volkovs et al. 2017): in training, each warm item is treated as
cold (g = 0) with probability `id_dropout`. Without it the gate learns to route warm items to
their IDs, the content path gets little gradient of its own, and the content vectors that cold
items fall back on never learn to stand alone in the same space.
"""

from __future__ import annotations

import torch
from torch import nn


class IDFusion(nn.Module):
    def __init__(self, n_items: int, d: int, id_dropout: float = 0.0) -> None:
        super().__init__()
        self.id_dropout = id_dropout
        self.id_embedding = nn.Embedding(n_items, d)
        nn.init.normal_(self.id_embedding.weight, std=d**-0.5)
        self.gate = nn.Linear(2 * d, 1)
        # items with at least one training interaction; the rest use content only
        self.register_buffer("known", torch.ones(n_items, dtype=torch.bool))

    def set_known(self, known: torch.Tensor) -> None:
        self.known.copy_(known.to(torch.bool))

    def forward(self, items: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # items: (B,) catalog indices, z: (B, d) content vectors -> fused (B, d), gate g (B,)
        e_id = self.id_embedding(items)  # (B, d)
        g = torch.sigmoid(self.gate(torch.cat([e_id, z], dim=-1))).squeeze(-1)  # (B,)
        use_id = self.known[items]  # cold-start items: g = 0
        if self.training and self.id_dropout > 0:
            use_id = use_id & (torch.rand(len(items), device=items.device) >= self.id_dropout)
        g = g * use_id
        return g.unsqueeze(-1) * e_id + (1 - g.unsqueeze(-1)) * z, g
