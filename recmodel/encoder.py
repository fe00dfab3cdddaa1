"""The paper's Cross-Layer Knowledge-Fusion MoE (section 3.3): stored VLLM hidden states of one
item, (L, K, D), become one item vector z in R^dz.

    features (B, L, K, D) ──TokenCompressorExpert──► e (B, L, dc)      one expert per layer
                           ──LayerExperts──────────► h (B, L, dz)      residual MLP per layer
                           ──LayerGate(h)──────────► pi (B, L)         softmax over layers
                           z = sum_l pi_l h_l       (B, dz)

Every per-layer module holds separate weights per tapped layer, but runs all layers in one
batched matmul (PerLayerLinear) instead of a Python loop over L modules; only the first D -> d
projection of the raw rows loops over layers (NormProjection says why).

Why the gate reads h and not z: the paper's equation 3 writes pi = softmax(G(z)) with
z = sum_l pi_l h_l, so the gate would need its own output. We condition it on the layer
summaries h_1..h_L instead (concatenated, normalised), which is what its text describes
("layer encoders summarise the compressed tokens, and layer-level soft-gating produces
context-conditioned mixture weights").

Prompt mixture (a variant that reads a prompt bank, §3.3.2 and §3.4): with a bank of P prompts an item has P
rows of (L, K, D). The Token Compressor Experts (shared by the prompts: a layer's experts read
that layer's tokens whatever the prompt) give e (B, P, L, dc); a PromptGate mixes the prompts per
item, alpha = softmax over P, into e~_l = sum_p alpha_p e_{p,l}, "the compressed vector after
token compression and prompt mixing" that the layer experts and the layer gate then read as in
`full`. One mixture per item, not per layer: it says which prompt (which attributes) the item is
read by, the readable explanation §3.4 asks of it, and leaves depth to the layer gate.

Token merging: the paper's old-token branch merges, then compresses. The merge has no learned
weights, so the featurizer does it at extraction time (bipartite soft matching down to K - G
rows); here the old branch only compresses (attention pooling over those K - G rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recmodel.config import ModelConfig


class PerLayerLinear(nn.Module):
    """L independent linear maps applied to the L layer slices of one tensor in one bmm."""

    def __init__(self, n_layers: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default init, per layer
        self.weight = nn.Parameter(torch.empty(n_layers, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_layers, 1, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, L, ..., d_in) -> (B, L, ..., d_out)
        B, L = x.shape[:2]
        middle = x.shape[2:-1]
        flat = x.transpose(0, 1).reshape(L, -1, x.shape[-1])  # (L, B*..., d_in)
        out = torch.baddbmm(self.bias, flat, self.weight)  # (L, B*..., d_out)
        return out.reshape(L, B, *middle, -1).transpose(0, 1)


class NormProjection(nn.Module):
    """Per layer: normalise each stored D-vector and project it D -> d, (B, L, ..., D) float16 or
    float32 -> (B, L, ..., d) float32. LLM hidden states have outlier dimensions and per-layer
    scales that differ by orders of magnitude (layer 0 is the embedding output), hence the norm.

    It loops over the L layers, reading each layer's slice where it lies: one batched matmul
    would first copy the whole (B, L, K, D) input into layer-major order, which at D = 4096
    costs more than the matmul itself; float16 rows are converted one layer at a time too."""

    def __init__(self, n_layers: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n_layers, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_layers, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        D = x.shape[-1]
        out = [
            F.layer_norm(x[:, ell].float(), (D,)) @ self.weight[ell] + self.bias[ell]
            for ell in range(self.weight.shape[0])
        ]  # L x (B, ..., d)
        return torch.stack(out, dim=1)


class AttentionPool(nn.Module):
    """Q learnable queries per layer attend over a layer's tokens: (B, L, T, d) -> (B, L, Q, d)."""

    def __init__(self, n_layers: int, d: int, n_queries: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        # unit-scale queries: attention starts clearly non-uniform, so the Q queries differ
        self.queries = nn.Parameter(torch.randn(n_layers, n_queries, d))
        self.key = PerLayerLinear(n_layers, d, d)
        self.value = PerLayerLinear(n_layers, d, d)
        self.out = PerLayerLinear(n_layers, d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, T, d = x.shape
        H, Q = self.n_heads, self.queries.shape[1]
        x = F.layer_norm(x, (d,))
        k = self.key(x).view(B, L, T, H, d // H).transpose(2, 3)  # (B, L, H, T, dh)
        v = self.value(x).view(B, L, T, H, d // H).transpose(2, 3)  # (B, L, H, T, dh)
        q = self.queries.view(L, Q, H, d // H).transpose(1, 2)  # (L, H, Q, dh)
        q = q.unsqueeze(0).expand(B, L, H, Q, d // H)  # (B, L, H, Q, dh)
        pooled = F.scaled_dot_product_attention(q, k, v)  # (B, L, H, Q, dh)
        pooled = pooled.transpose(2, 3).reshape(B, L, Q, d)  # (B, L, Q, d)
        return self.out(pooled)


class TokenCompressorExpert(nn.Module):
    """Section 3.3.1, for all L layers at once: per layer, normalise the K tokens and project
    D -> d (early, so a 4096-wide backbone costs one D x d matrix per layer), pool the K - G
    old tokens with Qo queries and the G new tokens with Qn queries, concatenate:
    (B, L, K, D) -> e (B, L, (Qo + Qn) * d). The paper's "normalization and projection"."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        L, D, d = cfg.n_layers, cfg.feature_dim, cfg.d_model
        self.n_old = cfg.n_tokens - cfg.n_new
        self.project = NormProjection(L, D, d)
        self.old_pool = AttentionPool(L, d, cfg.n_queries_old, cfg.pool_heads)
        self.new_pool = AttentionPool(L, d, cfg.n_queries_new, cfg.pool_heads)
        self.out_dim = (cfg.n_queries_old + cfg.n_queries_new) * d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.project(x)  # (B, L, K, D) -> (B, L, K, d)
        old = self.old_pool(tokens[:, :, : self.n_old])  # (B, L, Qo, d)
        new = self.new_pool(tokens[:, :, self.n_old :])  # (B, L, Qn, d)
        return torch.cat([old, new], dim=2).flatten(2)  # (B, L, (Qo+Qn)*d)


class LayerProjection(nn.Module):
    """The ablations' per-layer summariser: one (already pooled) D-vector per layer, normalised
    and projected: (B, L, D) -> (B, L, d)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.project = NormProjection(cfg.n_layers, cfg.feature_dim, cfg.d_model)
        self.out_dim = cfg.d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x)  # (B, L, D) -> (B, L, d)


class LayerExperts(nn.Module):
    """Equation 2: h_l = E_l(e_l), a per-layer MLP with a residual, into the common space dz."""

    def __init__(self, n_layers: int, d_in: int, d: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.inp = PerLayerLinear(n_layers, d_in, d)
        self.fc = PerLayerLinear(n_layers, d, mult * d)
        self.proj = PerLayerLinear(n_layers, mult * d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        x = self.inp(e)  # (B, L, d)
        return x + self.dropout(self.proj(F.gelu(self.fc(F.layer_norm(x, x.shape[-1:])))))


class LayerGate(nn.Module):
    """pi = softmax(G([h_1; ...; h_L])): soft weights over layers from the normalised layer
    summaries (not from z, see the module docstring). The last layer starts at zero, so every
    item starts with uniform weights, i.e. the mean of the experts."""

    def __init__(self, n_layers: int, d: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_layers * d, hidden)
        self.out = nn.Linear(hidden, n_layers)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        summary = F.layer_norm(h, h.shape[-1:]).flatten(1)  # (B, L*d)
        return torch.softmax(self.out(F.gelu(self.fc(summary))), dim=-1)  # (B, L)


class PromptGate(nn.Module):
    """alpha = softmax over prompts of a score per prompt: one MLP, shared by the prompts, reads
    a prompt's normalised layer summaries; a learned bias per prompt says how much each prompt
    serves on average. (B, P, L, dc) -> (B, P). Its last layer starts at zero, so every item
    starts with the mean of the prompts."""

    def __init__(self, n_prompts: int, n_layers: int, d_in: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_layers * d_in, hidden)
        self.out = nn.Linear(hidden, 1)
        self.bias = nn.Parameter(torch.zeros(n_prompts))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        summary = F.layer_norm(e, e.shape[-1:]).flatten(2)  # (B, P, L*dc)
        score = self.out(F.gelu(self.fc(summary))).squeeze(-1) + self.bias  # (B, P)
        return torch.softmax(score, dim=-1)


@dataclass
class MoEOutput:
    z: torch.Tensor  # (B, dz) the item vector
    gates: torch.Tensor  # (B, L) pi, sums to 1 per item
    h: torch.Tensor  # (B, L, dz) the layer experts' outputs, for the gate analysis
    prompt_gates: torch.Tensor | None = None  # (B, P) alpha over a prompt bank's prompts


class CrossLayerMoE(nn.Module):
    """Section 3.3.2: per-layer experts and a dense soft gate over all tapped layers (the paper
    uses no top-k routing with so few experts, nor do we). (B, L, d_in) -> z (B, dz)."""

    def __init__(self, cfg: ModelConfig, d_in: int) -> None:
        super().__init__()
        L, d = cfg.n_layers, cfg.d_model
        self.experts = LayerExperts(L, d_in, d, cfg.expert_mult, cfg.dropout)
        self.gate = LayerGate(L, d, cfg.gate_hidden)

    def forward(self, e: torch.Tensor) -> MoEOutput:
        h = self.experts(e)  # (B, L, dz)
        pi = self.gate(h)  # (B, L)
        z = torch.einsum("bl,bld->bd", pi, h)  # (B, dz)
        return MoEOutput(z=z, gates=pi, h=h)


class ContentEncoder(nn.Module):
    """One variant's path from stored features to an item vector (B, dz), by the encoder kind
    of its record (variants.py); the input (float16 as stored, or float32) is already reduced
    to the variant's view (features.reduce_features):

    - token_moe: (B, L, K, D) -> TokenCompressorExpert -> CrossLayerMoE; with a prompt bank,
      (B, P*L, K, D) prompt-major -> TokenCompressorExpert per prompt -> PromptGate mixture
      -> CrossLayerMoE
    - layer_moe: (B, L, D) -> LayerProjection -> CrossLayerMoE
    - linear: (B, D) -> norm + one linear projection, no MoE
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.summarize: nn.Module | None
        self.moe: CrossLayerMoE | None
        self.prompt_gate: PromptGate | None = None
        self.n_prompts = cfg.n_prompts
        spec = cfg.spec
        if spec.encoder == "linear":
            self.summarize, self.moe = None, None
            self.project = nn.Linear(cfg.feature_dim, cfg.d_model)
            # Start item vectors at the ID embeddings' scale (std d^-0.5 per component, norm
            # about 1; the MoE variants start there too). nn.Linear's default init on a
            # normalised D-vector gives std 3^-0.5, a norm of about 4.6: against the ranker's
            # layer-normed user vectors (norm sqrt(d)) the first logits spread over +-15 and
            # the first epochs' loss is 2-3x the uniform one.
            nn.init.normal_(self.project.weight, std=(cfg.feature_dim * cfg.d_model) ** -0.5)
            nn.init.zeros_(self.project.bias)
        elif spec.encoder == "layer_moe":
            self.summarize = LayerProjection(cfg)
            self.moe = CrossLayerMoE(cfg, d_in=self.summarize.out_dim)
        elif spec.encoder == "token_moe":
            self.summarize = TokenCompressorExpert(cfg)
            self.moe = CrossLayerMoE(cfg, d_in=self.summarize.out_dim)
            if spec.prompt_bank:
                self.prompt_gate = PromptGate(
                    cfg.n_prompts, cfg.n_layers, self.summarize.out_dim, cfg.gate_hidden
                )
        else:
            raise ValueError(f"variant {cfg.variant} has no content encoder")

    def forward(self, x: torch.Tensor) -> MoEOutput | torch.Tensor:
        if self.moe is None:
            return self.project(F.layer_norm(x.float(), x.shape[-1:]))  # (B, D) -> (B, dz)
        assert self.summarize is not None
        if self.prompt_gate is None:
            return self.moe(self.summarize(x))
        B, P = x.shape[0], self.n_prompts
        e = self.summarize(x.reshape(B * P, x.shape[1] // P, *x.shape[2:]))  # (B*P, L, dc)
        e = e.view(B, P, *e.shape[1:])  # (B, P, L, dc)
        alpha = self.prompt_gate(e)  # (B, P)
        out = self.moe(torch.einsum("bp,bpld->bld", alpha, e))  # e~ (B, L, dc) -> z
        out.prompt_gates = alpha
        return out
