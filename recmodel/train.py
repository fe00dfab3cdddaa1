"""The training loop: AdamW over the encoder and head groups, early stopping on validation
NDCG@10, a checkpoint every epoch, and resumption that reproduces an uninterrupted run.

Checkpoint (`checkpoint.pt`, written atomically after every epoch; tensors and plain values
only, so `torch.load(weights_only=True)` reads it): model and optimizer state, the best
model's state, epoch, best metric and epoch, epochs without improvement, the per-epoch log,
elapsed time, and the RNG states of every worker (torch, the shared shuffling generator and
each worker's negative-sampling generator). A run resumed from it after epoch e continues
exactly as the uninterrupted run would have after epoch e: same batches, same negatives, same
dropout masks, so the same final metrics (up to float round-off).

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
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from recmodel.config import ModelConfig, TrainConfig
from recmodel.data import (
    PAD,
    ItemFeatureBank,
    Splits,
    batch_order,
    training_examples,
)
from recmodel.losses import (
    alignment_loss,
    full_softmax_loss,
    sampled_softmax_loss,
    uniformity_loss,
)
from recmodel.metrics import ndcg_at, rank_eval_set
from recmodel.serving import encode_catalog, history_user_vectors, load_tensors
from recmodel.variants import LinkedOutModel, build_model

CHECKPOINT_FORMAT = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint from a run with another model, data or training configuration."""


@dataclass
class EpochLog:
    epoch: int
    loss: float  # mean training loss per target
    valid_ndcg10: float
    improved: bool
    seconds: float  # this epoch, training and validation
    train_seconds: float  # this epoch's optimizer steps only
    elapsed: float  # since the run started, over all resumptions
    sequences: int  # training sequences seen this epoch (all workers)


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

    @property
    def sequences_per_second(self) -> float:
        """Training throughput over all epochs, optimizer steps only (no validation)."""
        train_seconds = sum(log.train_seconds for log in self.history)
        return sum(log.sequences for log in self.history) / train_seconds if train_seconds else 0.0


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def loss_kind(model_cfg: ModelConfig, train: TrainConfig) -> str:
    full = model_cfg.n_items <= train.full_softmax_max_items
    return "full_softmax" if full else "sampled_softmax"


def fit(
    model_cfg: ModelConfig,
    train: TrainConfig,
    splits: Splits,
    bank: ItemFeatureBank | None,
    checkpoint_path: Path | None,
    *,
    on_epoch: Callable[[EpochLog], None] | None = None,
    resume: bool = True,
) -> FitResult:
    """Train one learned variant; resumes from `checkpoint_path` when it exists and `resume`."""
    if model_cfg.uses_features and bank is None:
        raise ValueError(f"variant {model_cfg.variant} needs item features")
    rank, world = _world()
    torch.manual_seed(train.seed)  # the same initial weights on every worker
    model = build_model(model_cfg)
    if world > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
    if model.items.fusion is not None:
        model.items.fusion.set_known(torch.from_numpy(splits.train_counts > 0))
    optimizer = torch.optim.AdamW(
        model.param_groups(train), lr=train.lr_encoder, weight_decay=train.weight_decay
    )
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    state = _LoopState()
    shuffle_rng = np.random.default_rng(train.seed)  # identical on every worker
    sample_rng = np.random.default_rng([train.seed, rank])  # negatives differ per worker
    torch.manual_seed(train.seed + rank)  # dropout differs per worker
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        blob = load_checkpoint(checkpoint_path, model_cfg, train)
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        state = _LoopState.from_checkpoint(blob)
        rng = blob["rng"]
        shuffle_rng.bit_generator.state = json.loads(rng["shuffle"])
        if len(rng["sample"]) == world:  # else: a new worker count, fresh per-worker streams
            sample_rng.bit_generator.state = json.loads(rng["sample"][rank])
            torch.set_rng_state(rng["torch"][rank])

    inputs, targets = training_examples(splits.train_sequences, model_cfg.max_history)
    kind = loss_kind(model_cfg, train)
    # Negatives come from the items seen in training only (train count >= 1). An item with no
    # training interaction is one the training window could not have shown anyone (a new item,
    # the cold start); ranked below every target at every step, the model would learn "never
    # recommend it" from the mere absence of data, and a content encoder, which tells items
    # apart by their features, learns exactly that for the cold-start items' features. Left
    # out of the loss, they are ranked by what their content (or untrained ID) says.
    seen = splits.train_counts > 0
    proposal = np.where(seen, splits.train_counts.astype(np.float64), 0.0) ** train.negative_power
    if not seen.any():  # no training interaction at all: there are no steps either
        proposal = np.ones(len(seen))
    proposal = proposal / proposal.sum()
    step = _Step(model, bank, train, kind, proposal, sample_rng)
    steps_per_epoch = math.ceil(len(inputs) / train.batch_size)

    start_epoch = state.epoch + 1
    for epoch in range(start_epoch, train.epochs + 1):
        if state.stopped_early:
            break
        t0 = time.perf_counter()
        model.train()
        loss_sum, n_targets = 0.0, 0
        for i, batch in enumerate(batch_order(len(inputs), train.batch_size, shuffle_rng)):
            scale = train.lr_gamma ** (epoch - 1) * _warmup(
                (epoch - 1) * steps_per_epoch + i, train.warmup_steps
            )
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * scale
            global_targets = int((targets[batch] != PAD).sum())
            local = batch[rank::world]
            optimizer.zero_grad(set_to_none=True)
            loss = step(inputs[local], targets[local], global_targets)
            if world > 1:
                _sum_gradients(model)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            optimizer.step()
            loss_sum += loss
            n_targets += global_targets
        if world > 1:
            total = torch.tensor([loss_sum], dtype=torch.float64)
            dist.all_reduce(total)
            loss_sum = float(total.item())
        train_seconds = time.perf_counter() - t0
        ndcg = validate(model, bank, splits, train.eval_batch_size, train.encode_batch_size)
        seconds = time.perf_counter() - t0
        state.elapsed += seconds
        improved = ndcg > state.best_metric
        if improved:
            state.best_metric, state.best_epoch, state.bad_epochs = ndcg, epoch, 0
            state.best_model = copy.deepcopy(model.state_dict())
            state.time_to_best = state.elapsed
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        state.stopped_early = state.bad_epochs >= train.patience
        log = EpochLog(
            epoch=epoch,
            loss=loss_sum / max(n_targets, 1),
            valid_ndcg10=ndcg,
            improved=improved,
            seconds=seconds,
            train_seconds=train_seconds,
            elapsed=state.elapsed,
            sequences=len(inputs),
        )
        state.history.append(log)
        if checkpoint_path is not None:
            rngs = _gather_rng_states(sample_rng)
            if rank == 0:
                save_checkpoint(
                    checkpoint_path, model_cfg, train, model, optimizer, state, shuffle_rng, rngs
                )
        if on_epoch is not None:
            on_epoch(log)

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
    )


def _warmup(step: int, warmup_steps: int) -> float:
    """Linear warmup: the share of the base lr at optimizer step `step` (0-based)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


@torch.no_grad()
def validate(
    model: LinkedOutModel,
    bank: ItemFeatureBank | None,
    splits: Splits,
    batch_size: int = 512,
    encode_batch_size: int = 256,
) -> float:
    """Validation NDCG@10 (full ranking, history masked), split over workers and summed."""
    rank, world = _world()
    vectors = encode_catalog(model, bank, splits.n_items, encode_batch_size).vectors
    part = (
        splits.valid
        if world == 1
        else splits.valid.subset(np.arange(rank, len(splits.valid), world))
    )
    users = history_user_vectors(model.ranker, vectors, part.history, batch_size)
    ranks = rank_eval_set(users, vectors, part, batch_size)
    total = torch.tensor([ndcg_at(ranks, 10) * len(ranks), len(ranks)], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(total)
    return float(total[0] / total[1]) if total[1] else 0.0


class _Step:
    """One optimizer step's forward and backward on one worker's share of a global batch."""

    def __init__(
        self,
        model: LinkedOutModel,
        bank: ItemFeatureBank | None,
        train: TrainConfig,
        kind: str,
        proposal: np.ndarray,
        sample_rng: np.random.Generator,
    ) -> None:
        self.model, self.bank, self.train, self.kind = model, bank, train, kind
        self.proposal = proposal
        # log(S q(i)); 0 where q(i) = 0: such an item is never a target nor a negative
        expected = train.n_negatives * proposal
        self.log_q = torch.from_numpy(np.log(np.where(expected > 0, expected, 1.0))).float()
        self.sample_rng = sample_rng
        self.n_items = len(proposal)
        self.negative_pool = np.flatnonzero(proposal > 0)  # the full softmax's items

    def __call__(self, x: np.ndarray, y: np.ndarray, global_targets: int) -> float:
        """x, y: (b, T) inputs and targets (PAD-padded). Returns this worker's loss sum."""
        negatives = None
        if self.kind == "sampled_softmax":
            # drawn on every worker and every step, so the generators advance identically
            # whether or not this worker's share is empty
            negatives = self.sample_rng.choice(
                self.n_items, self.train.n_negatives, p=self.proposal
            )
        if len(x) == 0:  # more workers than sequences in the last batch: zero gradients
            for p in self.model.parameters():
                p.grad = torch.zeros_like(p)
            return 0.0
        if negatives is None:
            needed = self.negative_pool  # every seen item; sorted, holds every x and y
        else:
            needed = np.unique(np.concatenate([x[x != PAD], y[y != PAD], negatives]))
        features, has = self.bank.gather(needed) if self.bank is not None else (None, None)
        vectors = self.model.items(torch.from_numpy(needed), features, has).vectors  # (U, d)

        def rows(a: np.ndarray) -> torch.Tensor:  # catalog indices -> rows of `vectors`
            return torch.from_numpy(np.searchsorted(needed, a))

        history = vectors[rows(np.where(x == PAD, needed[0], x))]  # (b, T, d)
        states = self.model.ranker(history, torch.from_numpy(x != PAD))  # (b, T, d)
        at = torch.from_numpy(y != PAD)
        users = states[at]  # (m, d)
        target = y[y != PAD]  # (m,)
        positives = vectors[rows(target)]  # (m, d)
        if negatives is None:
            loss = full_softmax_loss(users, vectors, rows(target))
        else:
            loss = sampled_softmax_loss(
                users,
                positives,
                vectors[rows(negatives)],
                self.log_q[target],
                self.log_q[negatives],
                torch.from_numpy(target[:, None] == negatives[None, :]),
            )
        m = len(target)
        if self.train.align_weight:
            loss = loss + self.train.align_weight * alignment_loss(users, positives)
        if self.train.uniform_weight:
            # a mean-type term, weighted by this worker's share of the batch's targets
            uniform = (uniformity_loss(users) + uniformity_loss(vectors)) / 2
            loss = loss + self.train.uniform_weight * m * uniform
        (loss / global_targets).backward()
        return float(loss.detach())


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


# ---------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class _LoopState:
    epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    elapsed: float = 0.0
    time_to_best: float = 0.0
    best_model: dict[str, torch.Tensor] | None = None
    history: list[EpochLog] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, blob: dict[str, Any]) -> _LoopState:
        return cls(
            epoch=int(blob["epoch"]),
            best_metric=float(blob["best_metric"]),
            best_epoch=int(blob["best_epoch"]),
            bad_epochs=int(blob["bad_epochs"]),
            stopped_early=bool(blob["stopped_early"]),
            elapsed=float(blob["elapsed"]),
            time_to_best=float(blob["time_to_best"]),
            best_model=blob["best_model"],
            history=[EpochLog(**log) for log in blob["history"]],
        )


def _gather_rng_states(sample_rng: np.random.Generator) -> dict[str, list]:
    mine = (json.dumps(sample_rng.bit_generator.state), torch.get_rng_state())
    rank, world = _world()
    if world == 1:
        states = [mine]
    else:
        states = [None] * world
        dist.all_gather_object(states, mine)
    return {"sample": [s[0] for s in states], "torch": [s[1] for s in states]}  # type: ignore[index]


def save_checkpoint(
    path: Path,
    model_cfg: ModelConfig,
    train: TrainConfig,
    model: LinkedOutModel,
    optimizer: torch.optim.Optimizer,
    state: _LoopState,
    shuffle_rng: np.random.Generator,
    rngs: dict[str, list],
) -> None:
    blob = {
        "format": CHECKPOINT_FORMAT,
        "model_config": model_cfg.to_dict(),
        "train_fingerprint": train.fingerprint(),
        "epoch": state.epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_model": state.best_model,
        "best_metric": state.best_metric,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "stopped_early": state.stopped_early,
        "elapsed": state.elapsed,
        "time_to_best": state.time_to_best,
        "history": [asdict(log) for log in state.history],
        "rng": {"shuffle": json.dumps(shuffle_rng.bit_generator.state), **rngs},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model_cfg: ModelConfig, train: TrainConfig) -> dict[str, Any]:
    """The checkpoint at `path`, after checking it belongs to this configuration."""
    blob = load_tensors(path)
    if blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"{path}: unsupported checkpoint format {blob.get('format')}")
    for name, saved, current in (
        ("model", blob["model_config"], model_cfg.to_dict()),
        ("training", blob["train_fingerprint"], train.fingerprint()),
    ):
        differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differ:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ)
            raise CheckpointMismatchError(
                f"{path} belongs to a run with another {name} configuration ({shown}); "
                "use a fresh output directory or delete the checkpoint"
            )
    return blob
