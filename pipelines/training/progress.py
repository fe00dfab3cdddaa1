"""Training's progress as a user sees it: a bar of the epoch's steps on a terminal; in a log
(Dagster, a redirected CLI), a line per epoch and per cache refresh, and a step line at most
every PROGRESS_LINE_SECONDS in long epochs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from recmodel.checkpoint import EpochLog
from recmodel.config import ModelConfig, TrainConfig
from recmodel.data import Splits
from recmodel.features import ItemFeatureBank
from recmodel.memory import MemoryPlan
from recmodel.train import FitResult, fit

PROGRESS_LINE_SECONDS = 60.0  # a step-progress line in non-interactive logs at most this often


def epoch_line(variant: str, log: EpochLog) -> str:
    rates = f"{log.sequences / log.train_seconds:.0f} seq/s" if log.train_seconds else ""
    if log.items_encoded and log.train_seconds:
        rates += f", {log.items_per_second:.0f} items/s encoded"
    if log.io_wait_seconds >= 0.05 * max(log.train_seconds, 1e-9):
        rates += f", {log.io_wait_seconds:.1f} s waiting for features"
    return (
        f"{variant} epoch {log.epoch:>3}: loss {log.loss:.4f}  val NDCG@10 {log.valid_ndcg10:.4f}"
        f"{' *' if log.improved else ''}  ({log.seconds:.1f} s; {log.steps} step"
        f"{'s' * (log.steps != 1)}"
        f"{', ' + rates if rates else ''})"
    )


def fit_with_progress(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    splits: Splits,
    bank: ItemFeatureBank | None,
    memory: MemoryPlan | None,
    checkpoint: Path,
    progress: bool,
    data_version: str | None,
    on_epoch_end: Callable[[EpochLog], None] | None = None,
) -> FitResult:
    """`fit` with the progress a user sees; `on_epoch_end` gets every finished epoch's log
    (a hyperparameter search reports it)."""
    # a bar of the epoch's steps on a terminal only (disable=None); in a log, a line per epoch
    # and per refresh, and a step line at most every PROGRESS_LINE_SECONDS in long epochs
    bar = tqdm(desc=f"train {model_cfg.variant}", unit="step", disable=None if progress else True)
    interactive = progress and not bar.disable
    last_line = [time.perf_counter()]

    def on_step(epoch: int, step: int, steps: int) -> None:
        if step == 1:
            bar.reset(total=steps)
            bar.set_description(f"{model_cfg.variant} epoch {epoch}")
        bar.update(1)
        now = time.perf_counter()
        if progress and not interactive and now - last_line[0] >= PROGRESS_LINE_SECONDS:
            tqdm.write(f"{model_cfg.variant} epoch {epoch}: step {step}/{steps}")
            last_line[0] = now

    def on_epoch(log: EpochLog) -> None:
        bar.set_postfix(loss=f"{log.loss:.4f}", val_ndcg10=f"{log.valid_ndcg10:.4f}")
        last_line[0] = time.perf_counter()
        if progress:
            tqdm.write(epoch_line(model_cfg.variant, log))
        if on_epoch_end is not None:
            on_epoch_end(log)

    def on_event(line: str) -> None:
        last_line[0] = time.perf_counter()
        if progress:
            tqdm.write(line)

    try:
        return fit(
            model_cfg,
            train_cfg,
            splits,
            bank,
            checkpoint,
            memory=memory,
            on_epoch=on_epoch,
            on_event=on_event,
            on_step=on_step,
            data_version=data_version,
        )
    finally:
        bar.close()
