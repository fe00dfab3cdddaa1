"""The training loop: AdamW over the encoder and head groups, early stopping on validation
NDCG@10, a checkpoint every epoch (checkpoint.py), and resumption that reproduces an
uninterrupted run.

Per epoch: the shuffled batches are planned first (step.py: each step's gradient-carrying
items and micro-batches), so a background reader (prefetch.py) reads the rows of the coming
steps while the current one computes; then one optimizer step per batch; then validation,
whose item vectors are also the next epoch's negative cache when it refreshes once per epoch.
Memory follows the plan memory.py makes from `memory_budget_bytes`; the device and precision
follow `device` and `precision` (bf16 autocast for the item encoder on a GPU, float32 on the
CPU; stored rows stay float16 and travel in pinned host buffers to a GPU).

Several workers (torch.distributed already initialised, e.g. by Ray Train's TorchTrainer on
gloo): every worker shuffles identically and takes its share of each global batch; losses are
sums divided by the global batch's number of targets and gradients are summed with one
all_reduce, so a step is the same mean over the global batch as in one process (DDP is not
used: it cannot sync steps where a parameter, such as the missing-content vector, gets no
gradient, without the cost of find_unused_parameters). Validation is split over workers and
summed, so all of them take the same early-stopping decision. Rank 0 writes the checkpoint.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from recmodel.checkpoint import (
    EpochLog,
    LoopState,
    gather_rng_states,
    load_checkpoint,
    save_checkpoint,
    world,
)
from recmodel.config import ModelConfig, TrainConfig
from recmodel.data import PAD, Splits, batch_order, training_examples
from recmodel.encoding import encode_catalog
from recmodel.features import ItemFeatureBank
from recmodel.memory import MemoryPlan, default_budget, plan_memory
from recmodel.metrics import ndcg_at, rank_eval_set
from recmodel.model import LinkedOutModel, build_model
from recmodel.negatives import ItemVectorCache, negative_proposal
from recmodel.plan import loss_kind, resolve_config
from recmodel.prefetch import Prefetcher
from recmodel.ranker import history_user_vectors
from recmodel.step import Step


@dataclass
class FitResult:
    model: LinkedOutModel  # with the best epoch's weights
    best_epoch: int  # 0: no epoch ran (or none improved on the initial weights)
    best_valid_ndcg10: float
    epochs_run: int
    stopped_early: bool
    history: list[EpochLog] = field(default_factory=list)
    seconds: float = 0.0
    time_to_best: float = 0.0  # elapsed seconds at the end of the best epoch
    loss_kind: str = "full_softmax"
    negatives: str = "exact"
    steps: int = 0

    @property
    def sequences_per_second(self) -> float:
        """Training throughput over all epochs, optimizer steps only (no validation)."""
        train_seconds = sum(log.train_seconds for log in self.history)
        return sum(log.sequences for log in self.history) / train_seconds if train_seconds else 0.0


# ---------------------------------------------------------------------------------------------
# The loop


def fit(
    model_cfg: ModelConfig,
    train: TrainConfig,
    splits: Splits,
    bank: ItemFeatureBank | None,
    checkpoint_path: Path | None,
    *,
    memory: MemoryPlan | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    on_event: Callable[[str], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
    resume: bool = True,
    data_version: str | None = None,
) -> FitResult:
    """Train one learned variant; resumes from `checkpoint_path` when it exists and `resume`
    (and it was trained on `data_version`, checkpoint.py). `memory` defaults to the plan of
    `train.memory_budget_bytes`. `on_event` gets a line per cache refresh;
    `on_step(epoch, step, steps)` is called after every optimizer step."""
    if model_cfg.uses_features and bank is None:
        raise ValueError(f"variant {model_cfg.variant} needs item features")
    if bank is not None and memory is None:
        budget = train.memory_budget_bytes or default_budget()
        memory = plan_memory(
            budget,
            bank.view_shape,
            model_cfg.d_model,
            train.encode_batch_size,
            micro_batch_items=train.micro_batch_items,
        )
    train = resolve_config(model_cfg, train, splits, memory)
    device, bf16 = torch.device(train.device), train.precision == "bf16"
    rank, size = world()

    torch.manual_seed(train.seed)  # the same initial weights on every worker
    model = build_model(model_cfg)
    if model.items.fusion is not None:
        model.items.fusion.set_known(torch.from_numpy(splits.train_counts > 0))
    model.to(device)
    if size > 1:  # on the device: NCCL reduces GPU tensors only
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
    optimizer = torch.optim.AdamW(
        model.param_groups(train), lr=train.lr_encoder, weight_decay=train.weight_decay
    )
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    state = LoopState()
    shuffle_rng = np.random.default_rng(train.seed)  # identical on every worker
    sample_rng = np.random.default_rng([train.seed, rank])  # negatives differ per worker
    torch.manual_seed(train.seed + rank)  # dropout differs per worker
    cache = ItemVectorCache(train.cache_refresh_steps) if train.negatives == "cached" else None
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        blob = load_checkpoint(checkpoint_path, model_cfg, train, data_version)
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        state = LoopState.from_checkpoint(blob)
        rng = blob["rng"]
        shuffle_rng.bit_generator.state = json.loads(rng["shuffle"])
        if len(rng["sample"]) == size:  # else: a new worker count, fresh per-worker streams
            sample_rng.bit_generator.state = json.loads(rng["sample"][rank])
            torch.set_rng_state(rng["torch"][rank])
        if cache is not None and blob.get("negative_cache"):
            cache.load_state_dict(blob["negative_cache"], device)

    inputs, targets = training_examples(splits.train_sequences, model_cfg.max_history)
    kind = loss_kind(model_cfg, train)
    step = Step(
        model,
        bank,
        train,
        full_softmax=kind == "full_softmax",
        proposal=negative_proposal(splits.train_counts, train.negative_power),
        sample_rng=sample_rng,
        cache=cache,
        micro_batch=memory.micro_batch if memory else sys.maxsize,
        step_bytes=memory.step_bytes if memory else 0,
        device=device,
        bf16=bf16,
    )
    encode = _CatalogEncoder(model, bank, splits.n_items, train, memory, device, bf16)

    for epoch in range(state.epoch + 1, train.epochs + 1):
        if state.stopped_early or (train.max_steps and state.global_step >= train.max_steps):
            break
        t0 = time.perf_counter()
        model.train()
        batches = list(batch_order(len(inputs), train.batch_size, shuffle_rng))
        if train.max_steps:
            batches = batches[: train.max_steps - state.global_step]
        plans = [step.plan(inputs[b[rank::size]], targets[b[rank::size]]) for b in batches]
        log = EpochLog(epoch, 0.0, 0.0, False, 0.0, 0.0, 0.0, sequences=len(inputs))
        loss_sum, n_targets = 0.0, 0
        reader = None
        if bank is not None:
            requests = (r for plan in plans for r in plan.requests())
            # the step buffer is the reader's too: what a step keeps for its second pass is
            # held against the same bound (prefetch.py)
            room = encode.readahead + (memory.step_bytes if memory else 0)
            reader = Prefetcher(bank, requests, room, device.type == "cuda")
        try:
            for i, (batch, plan) in enumerate(zip(batches, plans, strict=True)):
                if cache is not None and cache.due(state.global_step, epoch_start=i == 0):
                    started = time.perf_counter()
                    cache.update(encode().to(device), state.global_step)
                    seconds = time.perf_counter() - started
                    log.refreshes += 1
                    log.refresh_seconds += seconds
                    model.train()
                    if on_event is not None:
                        on_event(
                            f"{model_cfg.variant} epoch {epoch}: item-vector cache refreshed at "
                            f"step {state.global_step}: {splits.n_items} items in {seconds:.1f} s "
                            f"({splits.n_items / max(seconds, 1e-9):.0f} items/s)"
                        )
                scale = train.lr_gamma ** (epoch - 1) * _warmup(
                    state.global_step, train.warmup_steps
                )
                for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = lr * scale
                global_targets = int((targets[batch] != PAD).sum())
                optimizer.zero_grad(set_to_none=True)
                loss_sum += step(plan, reader, global_targets)
                if size > 1:
                    _sum_gradients(model)
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                optimizer.step()
                n_targets += global_targets
                state.global_step += 1
                log.steps += 1
                log.items_encoded += len(plan.items)
                if on_step is not None:
                    on_step(epoch, i + 1, len(plans))
        finally:
            if reader is not None:
                log.io_wait_seconds = reader.wait_seconds
                reader.close()
        if size > 1:
            total = torch.tensor([loss_sum], dtype=torch.float64, device=device)
            dist.all_reduce(total)
            loss_sum = float(total.item())
        log.train_seconds = time.perf_counter() - t0 - log.refresh_seconds
        ndcg, vectors = validate(
            model, bank, splits, train.eval_batch_size, encode=encode, device=device
        )
        if cache is not None and train.cache_refresh_steps == 0:
            cache.update(vectors.to(device), state.global_step, counted=False)
        log.seconds = time.perf_counter() - t0
        state.elapsed += log.seconds
        log.elapsed, log.valid_ndcg10 = state.elapsed, ndcg
        log.loss = loss_sum / max(n_targets, 1)
        log.improved = ndcg > state.best_metric
        if log.improved:
            state.best_metric, state.best_epoch, state.bad_epochs = ndcg, epoch, 0
            state.best_model = {k: v.cpu() for k, v in copy.deepcopy(model.state_dict()).items()}
            state.time_to_best = state.elapsed
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        state.stopped_early = state.bad_epochs >= train.patience
        state.history.append(log)
        if checkpoint_path is not None:
            rngs = gather_rng_states(sample_rng)
            if rank == 0:
                save_checkpoint(
                    checkpoint_path,
                    model_cfg,
                    train,
                    model,
                    optimizer,
                    state,
                    shuffle_rng,
                    rngs,
                    cache.state_dict() if cache is not None else None,
                    data_version,
                )
        if on_epoch is not None:
            on_epoch(log)

    model.cpu()
    if state.best_model is not None:
        model.load_state_dict(state.best_model)
    return FitResult(
        model=model,
        best_epoch=state.best_epoch,
        best_valid_ndcg10=max(state.best_metric, 0.0),
        epochs_run=state.epoch,
        stopped_early=state.stopped_early,
        history=state.history,
        seconds=state.elapsed,
        time_to_best=state.time_to_best,
        loss_kind=kind,
        negatives=train.negatives,
        steps=state.global_step,
    )


def _warmup(step: int, warmup_steps: int) -> float:
    """Linear warmup: the share of the base lr at optimizer step `step` (0-based)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


class _CatalogEncoder:
    """Every item's vector with the run's memory plan, device and precision: (n_items, d) on
    the CPU. Used by validation and by cache refreshes."""

    def __init__(
        self,
        model: LinkedOutModel,
        bank: ItemFeatureBank | None,
        n_items: int,
        train: TrainConfig,
        memory: MemoryPlan | None,
        device: torch.device,
        bf16: bool,
    ) -> None:
        self.model, self.bank, self.n_items = model, bank, n_items
        self.batch = memory.encode_batch if memory else train.encode_batch_size
        self.readahead = memory.readahead_bytes if memory else 0
        self.eval_bytes = memory.activation_bytes if memory else 1 << 30
        self.device, self.bf16 = device, bf16

    def __call__(self) -> torch.Tensor:
        return encode_catalog(
            self.model,
            self.bank,
            self.n_items,
            self.batch,
            readahead_bytes=self.readahead,
            device=self.device,
            bf16=self.bf16,
        ).vectors


@torch.no_grad()
def validate(
    model: LinkedOutModel,
    bank: ItemFeatureBank | None,
    splits: Splits,
    batch_size: int = 512,
    encode_batch_size: int = 256,
    *,
    encode: _CatalogEncoder | None = None,
    device: torch.device | None = None,
) -> tuple[float, torch.Tensor]:
    """Validation NDCG@10 (full ranking, history masked), split over workers and summed, and
    the item vectors it ranked with."""
    rank, size = world()
    if encode is None:
        vectors = encode_catalog(model, bank, splits.n_items, encode_batch_size).vectors
        max_bytes = 1 << 30
    else:
        vectors, max_bytes = encode(), encode.eval_bytes
    part = (
        splits.valid if size == 1 else splits.valid.subset(np.arange(rank, len(splits.valid), size))
    )
    users = history_user_vectors(model.ranker, vectors, part.history, batch_size)
    ranks = rank_eval_set(users, vectors, part, batch_size, max_bytes=max_bytes)
    total = torch.tensor(
        [ndcg_at(ranks, 10) * len(ranks), len(ranks)], dtype=torch.float64, device=device
    )
    if size > 1:
        dist.all_reduce(total)
    return (float(total[0] / total[1]) if total[1] else 0.0), vectors


def _sum_gradients(model: LinkedOutModel) -> None:
    """One all_reduce over all gradients (zeros for parameters this step did not touch)."""
    params = list(model.parameters())
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
