"""One model class for every learned variant: an ItemEncoder, built from the variant's record
(variants.py: its encoder kind and ID fusion), and the SASRec ranker on top. A variant that
learns nothing (popularity) has no module.

Items without features (no video, or extraction failed) get a learned "missing content"
vector in the content variants: they all look alike to the ranker unless ID fusion gives them
an ID of their own. Their number is reported by the feature bank (features.ItemFeatureBank).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recmodel.config import ModelConfig, TrainConfig
from recmodel.encoder import ContentEncoder, MoEOutput
from recmodel.fusion import IDFusion
from recmodel.ranker import SASRec


@dataclass
class ItemEncoding:
    vectors: torch.Tensor  # (U, dz) one vector per requested item
    has_features: torch.Tensor | None = None  # (U,) bool; None for id_only
    gates: torch.Tensor | None = None  # (F, L) layer weights of the F items with features
    h_norm: torch.Tensor | None = None  # (F, L) ||h_l|| of those items
    id_gate: torch.Tensor | None = None  # (U,) g of the ID fusion
    prompt_gates: torch.Tensor | None = None  # (F, P) prompt mixture alpha of those items


class ItemEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.id_embedding: nn.Embedding | None = None
        self.content: ContentEncoder | None = None
        self.missing: nn.Parameter | None = None
        self.fusion: IDFusion | None = None
        spec = cfg.spec
        if spec.encoder == "id":
            self.id_embedding = nn.Embedding(cfg.n_items, d)
            nn.init.normal_(self.id_embedding.weight, std=d**-0.5)
        elif spec.uses_features:
            self.content = ContentEncoder(cfg)
            self.missing = nn.Parameter(torch.randn(d) * d**-0.5)
            if spec.id_fusion:
                self.fusion = IDFusion(cfg.n_items, d, cfg.id_dropout)
        else:
            raise ValueError(f"variant {cfg.variant} has no item encoder")

    def forward(
        self,
        items: torch.Tensor,
        features: torch.Tensor | None = None,
        has_features: torch.Tensor | None = None,
    ) -> ItemEncoding:
        """items: (U,) catalog indices; features: (F, *view) for the F items where
        has_features (U,) is True, in the same order."""
        if self.id_embedding is not None:
            return ItemEncoding(vectors=self.id_embedding(items))
        assert self.content is not None and self.missing is not None
        if features is None or has_features is None:
            raise ValueError("a content variant needs features and has_features")
        U, d = items.shape[0], self.missing.shape[0]
        idx = has_features.nonzero().squeeze(1)  # (F,)
        gates = h_norm = prompt_gates = None
        content = torch.zeros(U, d, dtype=self.missing.dtype, device=items.device)
        if idx.numel():
            out = self.content(features)
            if isinstance(out, MoEOutput):
                gates, h_norm = out.gates, out.h.norm(dim=-1)
                prompt_gates = out.prompt_gates
                out = out.z
            # float32 whatever the encoder ran in (bf16 under autocast)
            content = content.index_copy(0, idx, out.to(content.dtype))  # (U, d)
        # items without features: the learned missing-content vector
        content = content + (~has_features).unsqueeze(1).to(content.dtype) * self.missing
        id_gate = None
        if self.fusion is not None:
            content, id_gate = self.fusion(items, content)
        return ItemEncoding(content, has_features, gates, h_norm, id_gate, prompt_gates)


class LinkedOutModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.items = ItemEncoder(cfg)
        self.ranker = SASRec(cfg)

    def user_vectors(self, history: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """history: (B, T, d) item vectors, left-padded -> (B, d)."""
        return self.ranker.user_vector(history, valid)

    def param_groups(self, train: TrainConfig) -> list[dict]:
        """AdamW groups after Table 6: the item encoders at lr_encoder, the recommendation head
        (ranker) at lr_head; weight decay on matrices and embeddings only (not on biases,
        norms or the 1-D missing-content vector), as nanoGPT does."""
        groups = []
        for name, module, lr in (
            ("encoder", self.items, train.lr_encoder),
            ("head", self.ranker, train.lr_head),
        ):
            decay, no_decay = [], []
            for pname, p in module.named_parameters():
                (decay if p.dim() >= 2 and not pname.endswith("bias") else no_decay).append(p)
            groups.append({"name": f"{name}", "params": decay, "lr": lr})
            groups.append(
                {"name": f"{name}_no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0}
            )
        return groups


def build_model(cfg: ModelConfig) -> LinkedOutModel:
    if not cfg.spec.learned:
        raise ValueError(f"{cfg.variant} has no model: it learns nothing")
    return LinkedOutModel(cfg)
