"""What a training run holds before it starts: the memory plan for its budget (memory.py), the
feature bank of the variant's view with the most trained-on items in memory, and the config
with every automatic value resolved (budget, device, precision, exact or cached negatives),
which is what config.json records."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from recmodel.config import ModelConfig, TrainConfig
from recmodel.data import Splits
from recmodel.features import ItemFeatureBank, ItemFeatures, view_shape
from recmodel.memory import MemoryPlan, check_budget, default_budget, plan_memory


def loss_kind(model_cfg: ModelConfig, train: TrainConfig) -> str:
    full = model_cfg.n_items <= train.full_softmax_max_items
    return "full_softmax" if full else "sampled_softmax"


@dataclass
class TrainingPlan:
    train: TrainConfig  # every "auto" and 0-means-default resolved: what config.json records
    memory: MemoryPlan | None  # None: the variant reads no features


def plan_training(
    model_cfg: ModelConfig,
    train: TrainConfig,
    splits: Splits,
    feature_shape: tuple[int, int, int] | None,
    workers_per_machine: int = 1,
) -> TrainingPlan:
    """The memory plan for `train`'s budget (default: half this machine's memory, shared by
    its training processes) and the config with every automatic value resolved."""
    if train.memory_budget_bytes:
        check_budget(train.memory_budget_bytes)
    budget = train.memory_budget_bytes or default_budget(workers_per_machine)
    train = replace(train, memory_budget_bytes=budget)
    memory = None
    if model_cfg.uses_features:
        if feature_shape is None:
            raise ValueError(f"variant {model_cfg.variant} needs item features")
        shape = view_shape(model_cfg.spec.view, feature_shape)
        memory = plan_memory(
            budget,
            shape,
            model_cfg.d_model,
            train.encode_batch_size,
            micro_batch_items=train.micro_batch_items,
        )
    return TrainingPlan(resolve_config(model_cfg, train, splits, memory), memory)


def feature_bank(
    features: ItemFeatures, model_cfg: ModelConfig, memory: MemoryPlan, splits: Splits
) -> ItemFeatureBank:
    """The variant's view of `features`, the most trained-on items held in memory up to the
    plan's hot-row share."""
    view = model_cfg.spec.view
    return ItemFeatureBank(features, view, memory.hot_bytes, priority=splits.train_counts)


def resolve_config(
    model_cfg: ModelConfig, train: TrainConfig, splits: Splits, memory: MemoryPlan | None
) -> TrainConfig:
    """`train` with its automatic values made concrete (idempotent)."""
    values = train.to_dict()
    if not values["memory_budget_bytes"]:
        values["memory_budget_bytes"] = memory.budget if memory else default_budget()
    if values["device"] == "auto":
        values["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    if values["precision"] == "auto":
        values["precision"] = "bf16" if values["device"] == "cuda" else "fp32"
    if values["negatives"] == "auto":
        values["negatives"] = "exact"
        if memory is not None:
            n = _exact_step_items(model_cfg, train, splits)
            fits = (
                n * memory.grad_bytes_per_item <= memory.activation_bytes
                and n * memory.item_bytes <= memory.step_bytes
            )
            values["negatives"] = "exact" if fits else "cached"
    return TrainConfig(**values)


def _exact_step_items(model_cfg: ModelConfig, train: TrainConfig, splits: Splits) -> int:
    """Most items an exact-negatives step encodes with gradients."""
    n_seen = int((splits.train_counts > 0).sum())
    if loss_kind(model_cfg, train) == "full_softmax":
        return n_seen
    return min(n_seen, train.batch_size * (model_cfg.max_history + 1) + train.n_negatives)
