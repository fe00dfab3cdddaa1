"""The resumable training state, `checkpoint.pt`: written atomically after every epoch, tensors
and plain values only, so `torch.load(weights_only=True)` reads it.

It holds the model and optimizer state, what the training data was read from (`data_version`:
the caller's name for it, e.g. a feature store version; a checkpoint is resumed only on the same), the best model's state, the loop's counters (epoch,
optimizer steps, best metric and epoch, epochs without improvement, elapsed time), the
per-epoch log, the item-vector cache of cached negatives, and the RNG states of every worker
(torch, the shared shuffling generator and each worker's negative-sampling generator). A run
resumed from it after epoch e continues exactly as the uninterrupted run would have: same
batches, same negatives, same dropout masks, the same cached vectors, so the same final
metrics (up to float round-off).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from recmodel.config import ModelConfig, TrainConfig
from recmodel.runfiles import atomic_write_bytes, load_tensors

CHECKPOINT_FORMAT = 2


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
    steps: int = 0  # optimizer steps this epoch
    items_encoded: int = 0  # items through the encoder with gradients (this worker)
    io_wait_seconds: float = 0.0  # steps waiting for features from the reader
    refreshes: int = 0  # item-vector cache refreshes this epoch
    refresh_seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.items_encoded / self.train_seconds if self.train_seconds else 0.0


@dataclass
class LoopState:
    epoch: int = 0
    global_step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    elapsed: float = 0.0
    time_to_best: float = 0.0
    best_model: dict[str, torch.Tensor] | None = None
    history: list[EpochLog] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, blob: dict[str, Any]) -> LoopState:
        return cls(
            epoch=int(blob["epoch"]),
            global_step=int(blob["global_step"]),
            best_metric=float(blob["best_metric"]),
            best_epoch=int(blob["best_epoch"]),
            bad_epochs=int(blob["bad_epochs"]),
            stopped_early=bool(blob["stopped_early"]),
            elapsed=float(blob["elapsed"]),
            time_to_best=float(blob["time_to_best"]),
            best_model=blob["best_model"],
            history=[EpochLog(**log) for log in blob["history"]],
        )


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_rng_states(sample_rng: np.random.Generator) -> dict[str, list]:
    mine = (json.dumps(sample_rng.bit_generator.state), torch.get_rng_state())
    _, size = world()
    if size == 1:
        states = [mine]
    else:
        states = [None] * size
        dist.all_gather_object(states, mine)
    return {"sample": [s[0] for s in states], "torch": [s[1] for s in states]}  # type: ignore[index]


def save_checkpoint(
    path: Path,
    model_cfg: ModelConfig,
    train: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: LoopState,
    shuffle_rng: np.random.Generator,
    rngs: dict[str, list],
    cache: dict[str, Any] | None,
    data_version: str | None = None,
) -> None:
    blob = {
        "format": CHECKPOINT_FORMAT,
        "model_config": model_cfg.to_dict(),
        "train_fingerprint": train.fingerprint(),
        "data_version": data_version,
        "epoch": state.epoch,
        "global_step": state.global_step,
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
        "negative_cache": cache,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # serialized in memory first: torch.save into a file on a full disk fails with a message
    # naming neither the file nor the cause
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: Path, model_cfg: ModelConfig, train: TrainConfig, data_version: str | None = None
) -> dict[str, Any]:
    """The checkpoint at `path`, after checking it belongs to this configuration and was
    trained on `data_version` (None: data without a name, as before versions were recorded)."""
    blob = load_tensors(path)
    if blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{path}: checkpoint format {blob.get('format')}, this version reads "
            f"{CHECKPOINT_FORMAT}"
        )
    for name, saved, current in (
        ("model", blob["model_config"], model_cfg.to_dict()),
        ("training", blob["train_fingerprint"], train.fingerprint()),
    ):
        differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differ:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ)
            raise CheckpointMismatchError(
                f"{path} belongs to a run with another {name} configuration ({shown})"
            )
    saved = blob.get("data_version")
    if saved != data_version:
        trained_on = saved or "data it does not name (written before checkpoints named it)"
        raise CheckpointMismatchError(
            f"{path} was trained on {trained_on}, this run reads "
            f"{data_version or 'data without a version'}"
        )
    return blob
