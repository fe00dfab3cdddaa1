"""Configs of the learned half: what the model is (ModelConfig) and how it is trained (TrainConfig).

Both are plain dataclasses of numbers and strings, so they go into config.json and model.pt
as-is and come back with `from_dict` (no pickled classes, so `torch.load(weights_only=True)`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# The ablation table's rows (paper Table 4 plus two baselines), in the order a report shows them.
VARIANTS: tuple[str, ...] = (
    "popularity",  # train-count ranking, nothing learned
    "id_only",  # SASRec over learned item-ID embeddings
    "last_layer_last_token",  # last tapped layer's last token, one linear projection, no MoE
    "mean_pool_moe",  # mean over all K tokens per layer, then the cross-layer MoE
    "last_token_moe",  # last token per layer, then the cross-layer MoE
    "full",  # Token Compressor Experts (old/new branches) + cross-layer MoE
    "full_id_fusion",  # full, fused with an ID embedding by a learned gate (DFF study)
)
CONTENT_VARIANTS: frozenset[str] = frozenset(VARIANTS) - {"popularity", "id_only"}
MOE_VARIANTS: frozenset[str] = frozenset(
    {"mean_pool_moe", "last_token_moe", "full", "full_id_fusion"}
)


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    return variant


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any]):  # noqa: ANN206 - returns cls
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        return cls(**values)


@dataclass
class ModelConfig(_Serializable):
    """The item encoder and the ranker. Feature fields describe the store rows (L, K, D, G);
    id_only and popularity ignore them."""

    variant: str = "full"
    n_items: int = 0  # catalog size (items are indexed 0..n_items-1)
    # feature layout of one item: L tapped layers x K tokens x D hidden; the last G of the K
    # rows of each layer are the new (generated) tokens, the first K - G the merged old ones
    n_layers: int = 6
    n_tokens: int = 64
    feature_dim: int = 4096
    n_new: int = 16
    # widths: d_model is the item-vector width dz and the ranker width (scores are dot products)
    d_model: int = 64
    n_queries_old: int = 4  # learnable queries of the old-token attention pool
    n_queries_new: int = 2  # ... and of the new-token pool
    pool_heads: int = 2
    expert_mult: int = 2  # hidden width of each layer expert's MLP = expert_mult * d_model
    gate_hidden: int = 64
    id_dropout: float = 0.2  # full_id_fusion: share of warm items trained as if cold (fusion.py)
    # ranker (SASRec)
    n_blocks: int = 2
    n_heads: int = 2
    max_history: int = 10
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_variant(self.variant)
        if self.d_model % self.n_heads or self.d_model % self.pool_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads} "
                f"and pool_heads={self.pool_heads}"
            )
        if self.variant in {"full", "full_id_fusion"} and not 0 < self.n_new < self.n_tokens:
            raise ValueError(
                f"variant {self.variant} splits K={self.n_tokens} tokens into old and new: "
                f"needs 0 < n_new < K, got n_new={self.n_new}"
            )

    @property
    def uses_features(self) -> bool:
        return self.variant in CONTENT_VARIANTS

    @property
    def uses_moe(self) -> bool:
        return self.variant in MOE_VARIANTS


@dataclass
class TrainConfig(_Serializable):
    """Defaults follow the supplementary's Table 6 (AdamW, lr 1e-4 encoders / 1e-5 head, weight
    decay 0.1, clip 5.0, batch 256, history <= 10, seed 42, 100 epochs, constant schedule).

    Parameter groups: "encoder" = everything that turns an item into a vector (ID embeddings,
    Token Compressor Experts, layer experts, gate, ID-fusion gate, missing-content vector);
    "head" = the recommendation module (the SASRec ranker: positions, blocks, final norm).
    Table 6's lrs assume 100 epochs on 8 GPUs; a few CPU epochs need larger ones (the demo uses
    1e-3 for both groups after a short warmup, see pipelines/train.py).

    Training negatives (full or sampled softmax) are the items with at least one training
    interaction; items without one are cold-start items and stay out of the loss (train.py)."""

    lr_encoder: float = 1e-4
    lr_head: float = 1e-5
    weight_decay: float = 0.1  # on matrices and embeddings; not on biases, norms, queries' 1-D
    grad_clip: float = 5.0
    lr_gamma: float = 1.0  # step_schedule_with_warmup: lr *= gamma every epoch (1.0: constant)
    # linear warmup over the first warmup_steps optimizer steps (0: none, Table 6's constant
    # schedule); AdamW's first steps move every weight by about lr whatever its gradient
    warmup_steps: int = 0
    batch_size: int = 256  # sequences per optimizer step, over all workers
    epochs: int = 100
    patience: int = 10  # early stopping: epochs without a better validation NDCG@10
    seed: int = 42
    # loss: softmax cross-entropy over the whole catalog (its items seen in training) while it
    # has at most this many items (the encoder then runs on every such item each step), else
    # sampled softmax with log-Q correction
    full_softmax_max_items: int = 4096
    n_negatives: int = 1024  # shared sampled negatives per step (sampled softmax only)
    negative_power: float = 0.75  # proposal q(i) ~ train count ** power (0 for unseen items)
    # the paper's alignment / uniformity terms (Wang & Isola 2020, as in DirectAU); 0 = off.
    # The paper gives no weights; they are off by default so the loss is plain cross-entropy.
    align_weight: float = 0.0
    uniform_weight: float = 0.0
    # feature access: keep the (variant-reduced) feature table in memory up to this many bytes,
    # else read rows per batch through the store
    feature_memory_bytes: int = 2 << 30
    eval_batch_size: int = 512
    encode_batch_size: int = 256  # items per encoder call when encoding the whole catalog

    def __post_init__(self) -> None:
        if min(self.batch_size, self.epochs, self.patience) < 1:
            raise ValueError("batch_size, epochs and patience must be >= 1")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must be >= 0")

    # Fields that may change between an interrupted run and its resumption.
    RESUMABLE_CHANGES = (
        "epochs",
        "patience",
        "feature_memory_bytes",
        "eval_batch_size",
        "encode_batch_size",
    )

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must agree on to be resumed."""
        values = self.to_dict()
        for name in self.RESUMABLE_CHANGES:
            values.pop(name)
        return values
