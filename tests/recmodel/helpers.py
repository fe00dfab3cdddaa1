"""Tiny synthetic inputs for recmodel tests: interactions with a content signal, and features."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recmodel.config import ModelConfig, TrainConfig
from recmodel.data import Splits, build_splits
from recmodel.features import ItemFeatureBank, ItemFeatures
from recmodel.variants import get_variant

L, K, D, G = 3, 6, 8, 2  # tapped layers, tokens per layer, hidden size, new tokens


def interactions(
    n_users: int = 60, n_items: int = 24, n_topics: int = 3, seed: int = 0
) -> pa.Table:
    """Users stick to one topic (items i % n_topics == topic); leave-one-out split by time."""
    rng = np.random.default_rng(seed)
    users, items, stamps, splits = [], [], [], []
    for u in range(n_users):
        topic = u % n_topics
        pool = np.arange(topic, n_items, n_topics)
        n = int(rng.integers(4, min(9, len(pool)) + 1))
        seq = rng.choice(pool, n, replace=False)
        for t, item in enumerate(seq):
            users.append(f"u{u:03d}")
            items.append(f"i{item:03d}")
            stamps.append(1000 + t)
            splits.append("test" if t == n - 1 else "valid" if t == n - 2 else "train")
    return pa.table({"user": users, "item": items, "timestamp": stamps, "split": splits})


def features(
    n_items: int, n_topics: int = 3, missing: tuple[int, ...] = (), seed: int = 0
) -> tuple[ItemFeatures, np.ndarray]:
    """(L, K, D) float16 rows whose mean encodes the topic; `missing` items have no row."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((n_items, L, K, D)).astype(np.float16)
    for i in range(n_items):
        table[i, :, :, i % n_topics] += 3.0
    rows = np.arange(n_items)
    rows[list(missing)] = -1
    return ItemFeatures(rows, lambda r: table[np.asarray(r)], (L, K, D), G), table


def splits(**kwargs) -> Splits:
    return build_splits(interactions(**kwargs))


def model_config(variant: str, n_items: int, **overrides) -> ModelConfig:
    values = dict(
        variant=variant,
        n_items=n_items,
        n_layers=L,
        n_tokens=K,
        feature_dim=D,
        n_new=G,
        d_model=8,
        n_queries_old=2,
        n_queries_new=1,
        pool_heads=2,
        gate_hidden=8,
        n_blocks=1,
        n_heads=2,
        dropout=0.1,
    )
    values.update(overrides)
    return ModelConfig(**values)


def train_config(**overrides) -> TrainConfig:
    values = dict(lr_encoder=3e-3, lr_head=3e-3, epochs=2, patience=5, batch_size=32)
    values.update(overrides)
    return TrainConfig(**values)


def bank(variant: str, item_features: ItemFeatures, **kwargs) -> ItemFeatureBank | None:
    view = get_variant(variant).view
    if view is None:
        return None
    return ItemFeatureBank(item_features, view, **kwargs)
