"""The recommendation head: a SASRec-style causal transformer (Kang & McAuley 2018) over the
vectors of a user's last <= max_history items; its state at the last position is the user
vector, and an item's score is the dot product with the item's vector.

Histories are left-padded (most recent item in the last slot), so positions are counted from
the end: the most recent item always gets the last position embedding, in training (padded to
max_history) and in serving (unpadded, any length).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recmodel.config import ModelConfig
from recmodel.data import PAD


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

    def query_vector(self, items: torch.Tensor) -> torch.Tensor:
        """One unpadded history (T, d) -> its user vector (d,), in eval mode: the math of
        user_vector (tests/recmodel/test_ranker.py holds them equal), written for one query.
        A query's cost here is per-op overhead, not FLOPs, so this calls functional ops on
        the modules' weights (no dropout or module calls) and runs the last block for the
        last position only, the one state a query reads."""
        T, d = items.shape
        if T > self.max_history:
            raise ValueError(f"history of {T} items; the ranker takes at most {self.max_history}")
        x = items + self.position[self.max_history - T :]  # (T, d)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            attn, mlp = block.attn, block.mlp
            H = attn.n_heads
            h = F.layer_norm(x, (d,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
            qkv = F.linear(h, attn.qkv.weight, attn.qkv.bias)  # (T, 3d)
            qkv = qkv.view(T, 3, H, d // H).permute(1, 2, 0, 3)  # (3, H, T, dh)
            if i == last:  # the last position attends to every item: no mask
                y = F.scaled_dot_product_attention(qkv[0, :, -1:], qkv[1], qkv[2])  # (H, 1, dh)
                x = x[-1:]  # (1, d)
            else:
                y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
            x = x + F.linear(y.transpose(0, 1).reshape(-1, d), attn.proj.weight, attn.proj.bias)
            h = F.layer_norm(x, (d,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
            h = F.linear(
                F.gelu(F.linear(h, mlp.fc.weight, mlp.fc.bias)), mlp.proj.weight, mlp.proj.bias
            )
            x = x + h
        return F.layer_norm(x[-1], (d,), self.ln_f.weight, self.ln_f.bias, self.ln_f.eps)


@torch.no_grad()
def history_user_vectors(
    ranker: SASRec, item_vectors: torch.Tensor, history: np.ndarray, batch_size: int = 512
) -> torch.Tensor:
    """history: (M, T) item indices, left-padded with PAD -> user vectors (M, d) on the CPU;
    the ranker runs where its weights are."""
    was_training = ranker.training
    ranker.eval()
    device = next(ranker.parameters()).device
    out = []
    for start in range(0, len(history), batch_size):
        h = torch.from_numpy(history[start : start + batch_size])
        valid = (h != PAD).to(device)
        out.append(ranker.user_vector(item_vectors[h.clamp(min=0)].to(device), valid).cpu())
    ranker.train(was_training)
    if not out:
        return torch.empty(0, item_vectors.shape[1])
    return torch.cat(out)
