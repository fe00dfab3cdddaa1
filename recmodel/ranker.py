"""The recommendation head: a SASRec-style causal transformer (Kang & McAuley 2018) over the
vectors of a user's last <= max_history items; its state at the last position is the user
vector, and an item's score is the dot product with the item's vector.

Histories are left-padded (most recent item in the last slot), so positions are counted from
the end: the most recent item always gets the last position embedding, in training (padded to
max_history) and in serving (unpadded, any length).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recmodel.config import ModelConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, T, d); mask: (B, 1, T, T) bool, True = may attend; None = plain causal
        B, T, d = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(B, T, H, d // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, dh)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None,
        )  # (B, H, T, dh)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, d)))


class MLP(nn.Module):
    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block (nanoGPT's)."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = MLP(d, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class SASRec(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.max_history = cfg.max_history
        self.position = nn.Parameter(torch.randn(cfg.max_history, d) * 0.02)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            [Block(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_blocks)]
        )
        self.ln_f = nn.LayerNorm(d)

    def forward(self, items: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """items: (B, T) item vectors (B, T, d), left-padded; valid: (B, T) bool, False at
        padding (None: no padding). Returns the state after every position, (B, T, d): the
        state at t has seen items 0..t only."""
        B, T, _ = items.shape
        if T > self.max_history:
            raise ValueError(f"history of {T} items; the ranker takes at most {self.max_history}")
        x = self.dropout(items + self.position[self.max_history - T :])  # (B, T, d)
        mask = None
        if valid is not None:
            causal = torch.ones(T, T, dtype=torch.bool, device=items.device).tril()
            mask = causal & valid[:, None, :]  # (B, T, T): causal, and never a padded key
            # a padded query (left of every real item) would see no key at all and turn
            # softmax into NaN: let every position see itself; padded states are never used
            mask = mask | torch.eye(T, dtype=torch.bool, device=items.device)
            mask = mask.unsqueeze(1)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def user_vector(self, items: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, d) history vectors -> (B, d): the state after the most recent item."""
        return self(items, valid)[:, -1]
