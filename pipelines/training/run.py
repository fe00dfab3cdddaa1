"""`train_run`: one variant trained on a dataset and the store's current version into a run
directory, evaluated, its vectors exported and its serving costs measured (the files:
serving/runfiles.py). Inputs are read by inputs.py, settings resolved by settings.py (defaults,
then a config file, then explicit values); config.json records every value used, the automatic
ones resolved, and the memory plan.

Nothing is written until every check has passed: a refused run (a directory that is not a run,
another variant's run, a checkpoint of another configuration or store version, a store that
would not verify) leaves the directory as it was, and makes none. `fresh` trains into a staging
area inside the run directory and replaces the old run's files only once the new run has
succeeded (run_dir.py); a failure leaves the old run as it was.

With workers > 1 the loop runs under Ray Train's TorchTrainer (gloo on CPU, one CPU per
worker); the run directory must be on storage the workers share (one machine, or a shared
file system on a cluster): rank 0 writes the checkpoint there, and a restarted worker group
(FailureConfig) resumes from it. Each worker plans its own memory under the budget.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pipelines.dataset.location import dataset_address
from pipelines.errors import PipelineError, user_facing
from pipelines.serving.benchmark import record_serving
from pipelines.serving.queries import metric_lines
from pipelines.serving.runfiles import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    SERVING_FILE,
    write_json,
)
from pipelines.training.inputs import (
    Inputs,
    load_inputs,
    missing_features,
    store_features,
    store_version,
)
from pipelines.training.progress import epoch_line, fit_with_progress
from pipelines.training.ray_train import fit_with_ray
from pipelines.training.run_dir import (
    STAGING_DIR,
    check_replaceable,
    discard_staging,
    inspect_run_dir,
    replace_run,
    start_staging,
    undo_failed_start,
    write_marker,
)
from pipelines.training.settings import build_configs, resolve_settings
from recmodel.checkpoint import CheckpointMismatchError, EpochLog, load_checkpoint
from recmodel.config import ModelConfig, TrainConfig
from recmodel.data import Splits
from recmodel.features import ItemFeatureBank
from recmodel.memory import BudgetError, MemoryPlan
from recmodel.model import build_model
from recmodel.plan import feature_bank, loss_kind, plan_training
from recmodel.runfiles import export_run
from recmodel.serving import Recommender, evaluate_recommender
from recmodel.train import FitResult
from recmodel.variants import MAIN_VARIANT, get_variant


@dataclass
class TrainResult:
    run_dir: Path
    variant: str
    metrics: dict[str, Any]
    n_items: int
    n_missing_features: int
    epochs_run: int = 0
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    workers: int = 1
    serving: dict[str, Any] = field(default_factory=dict)  # what serving.json records

    def describe(self) -> str:
        test = self.metrics["test"]
        lines = [
            f"trained {self.variant} into {self.run_dir} "
            f"({self.epochs_run} epochs, best {self.best_epoch}"
            f"{', stopped early' if self.stopped_early else ''}, {self.seconds:.1f} s, "
            f"{self.workers} worker{'s' * (self.workers != 1)}; {self.n_items} items, "
            f"{self.n_missing_features} without features)",
            *metric_lines(test),
        ]
        return "\n".join(lines)


@user_facing
def train_run(
    dataset: Path | str,
    store: Path | str | None,
    out: Path,
    variant: str = MAIN_VARIANT,
    epochs: int | None = None,
    workers: int | None = None,
    *,
    config: str | Path | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    fresh: bool = False,
    verify_store: bool = True,
    on_epoch_end: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train `variant` on `dataset` (and `store`'s current version) into the run directory `out`,
    evaluate it on the test split and write every run file. Settings: `config` (a file or a
    shipped name), then the explicit arguments. Rerunning into the same `out` resumes from its
    checkpoint (a finished run is only re-exported); `fresh` replaces a previous run there once
    the new one has succeeded (scheduled retraining on new data). A store that would not
    verify is refused unless `verify_store` is False. `on_epoch_end` gets each epoch's log as
    it finishes (one process only: with workers > 1 the epochs end in the workers)."""
    spec = get_variant(variant)
    values = resolve_settings(config, epochs, workers, model_overrides, train_overrides)
    workers = values.workers or 1
    out = Path(out)
    run_dir = inspect_run_dir(out)
    if fresh:
        check_replaceable(out)
    elif run_dir.variant not in (None, variant):
        raise PipelineError(
            f"{out} holds a run of variant {run_dir.variant}; train {variant} into another "
            "directory, or pass --fresh to replace it"
        )
    started = time.perf_counter()
    max_history = int(values.model.get("max_history", ModelConfig.max_history))
    inputs = load_inputs(dataset, store, variant, max_history, verify_store)
    splits = inputs.splits
    model_cfg, train_cfg = build_configs(variant, splits.n_items, inputs.store_info, values)
    shape = inputs.features.shape if inputs.features is not None else None
    try:
        plan = plan_training(model_cfg, train_cfg, splits, shape, workers_per_machine=workers)
    except BudgetError as exc:
        raise PipelineError(f"training configuration ({values.source}): {exc}") from None
    train_cfg = plan.train
    if not fresh:
        _check_checkpoint(out, variant, model_cfg, train_cfg, inputs.data_version)

    missing = missing_features(variant, inputs.features, splits, inputs.failed)
    n_missing = missing["total"] if missing else 0
    bank = None
    if inputs.features is not None and plan.memory is not None and workers == 1:
        bank = feature_bank(inputs.features, model_cfg, plan.memory, splits)

    # every check has passed: from here on the run is written (with fresh, into a staging area
    # inside out that replaces the old run's files once the new run has succeeded)
    made_out = not out.exists()
    work = out / STAGING_DIR if fresh else out
    try:
        if fresh:
            start_staging(out, variant)
        else:
            out.mkdir(parents=True, exist_ok=True)
            discard_staging(out)  # a killed --fresh run's
            if not run_dir.marked:
                write_marker(out, variant)
        write_json(
            work / CONFIG_FILE,
            {
                "variant": variant,
                "dataset": dataset_address(dataset),
                "store": inputs.store_info,
                "settings_from": values.source,
                "model": model_cfg.to_dict(),
                "train": train_cfg.to_dict(),
                "workers": workers,
                "n_items": splits.n_items,
                "n_items_with_features": splits.n_items - n_missing if shape is not None else 0,
                "n_missing_features": n_missing,
                "missing_features": missing,
                "memory_plan": plan.memory.to_dict() if plan.memory is not None else None,
                "feature_bank": _bank_summary(bank, plan.memory),
                "created_at": datetime.now(timezone.utc).isoformat(),
            },
        )
        if progress and plan.memory is not None:
            tqdm.write(f"{variant}: {plan.memory.describe()}; negatives {train_cfg.negatives}")

        result: FitResult | None = None
        if spec.learned:
            result = _fit(
                model_cfg,
                train_cfg,
                splits,
                bank,
                plan.memory,
                work,
                store,
                inputs,
                workers,
                progress,
                on_epoch_end,
            )
            if progress and workers > 1:
                for log in result.history:
                    tqdm.write(epoch_line(variant, log))
        if bank is None and inputs.features is not None and plan.memory is not None:
            bank = feature_bank(inputs.features, model_cfg, plan.memory, splits)

        layers = inputs.store_info.get("layers")
        export_run(
            work,
            model_cfg,
            result.model if result else None,
            bank,
            splits,
            layers,
            plan.memory.encode_batch if plan.memory else train_cfg.encode_batch_size,
            plan.memory.readahead_bytes if plan.memory else 256 << 20,
        )
        eval_started = time.perf_counter()
        eval_bytes = plan.memory.activation_bytes if plan.memory else 1 << 30
        metrics = evaluate_recommender(
            Recommender.load(work), splits, train_cfg.eval_batch_size, max_bytes=eval_bytes
        )
        if progress:
            n_users = len(splits.valid) + len(splits.test)
            seconds = time.perf_counter() - eval_started
            tqdm.write(
                f"{variant}: evaluated {n_users} users (valid + test) over {splits.n_items} "
                f"items in {seconds:.1f} s ({n_users / max(seconds, 1e-9):.0f} users/s)"
            )
        metrics["variant"] = variant
        metrics["training"] = _training_summary(result, train_cfg, time.perf_counter() - started)
        metrics["training"]["n_missing_features"] = n_missing
        write_json(work / METRICS_FILE, metrics)
        serving = record_serving(work, store_version(inputs.store_info), recorded_as=out)
        if fresh:
            replace_run(out, work)
    except BaseException:
        with contextlib.suppress(OSError, PipelineError):  # the failure is what the user sees
            undo_failed_start(out, fresh=fresh, new_run=run_dir.variant is None, made_out=made_out)
        raise
    if progress:
        tqdm.write(
            f"{variant}: one query (10-item history -> top-10 of {splits.n_items}) "
            f"{serving['query']['p50_ms']:.3g} ms p50, recorded in {out / SERVING_FILE}"
        )
    return TrainResult(
        run_dir=out,
        variant=variant,
        metrics=metrics,
        n_items=splits.n_items,
        n_missing_features=n_missing,
        epochs_run=result.epochs_run if result else 0,
        best_epoch=result.best_epoch if result else 0,
        stopped_early=result.stopped_early if result else False,
        seconds=time.perf_counter() - started,
        workers=workers,
        serving=serving,
    )


def _fit(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    splits: Splits,
    bank: ItemFeatureBank | None,
    memory: MemoryPlan | None,
    work: Path,
    store: Path | str | None,
    inputs: Inputs,
    workers: int,
    progress: bool,
    on_epoch_end: Callable[[EpochLog], None] | None = None,
) -> FitResult:
    """Train in this process, or on `workers` Ray Train workers, each of which opens the store
    itself; either way the run's state ends in work/checkpoint.pt."""
    checkpoint = work / CHECKPOINT_FILE
    if workers == 1:
        return fit_with_progress(
            model_cfg,
            train_cfg,
            splits,
            bank,
            memory,
            checkpoint,
            progress,
            inputs.data_version,
            on_epoch_end,
        )
    features = functools.partial(store_features, store, splits.items, model_cfg.spec.prompt_bank)
    fit_with_ray(
        model_cfg, train_cfg, splits, features, checkpoint, workers, work, inputs.data_version
    )
    return fit_result_from_checkpoint(checkpoint, model_cfg, train_cfg, inputs.data_version)


def _check_checkpoint(
    out: Path,
    variant: str,
    model_cfg: ModelConfig,
    train: TrainConfig,
    data_version: str | None,
) -> None:
    """Refuse, before anything is written, to resume (or re-export) a checkpoint of another
    configuration or trained on another store version."""
    checkpoint = out / CHECKPOINT_FILE
    if checkpoint.is_file() and get_variant(variant).learned:
        try:
            load_checkpoint(checkpoint, model_cfg, train, data_version)
        except CheckpointMismatchError as exc:
            raise PipelineError(
                f"{exc}; pass --fresh to replace that run, or train into another --out"
            ) from None


def _bank_summary(bank: ItemFeatureBank | None, memory: MemoryPlan | None) -> dict | None:
    if memory is None:
        return None
    summary: dict[str, Any] = {"item_bytes": memory.item_bytes, "hot_bytes": memory.hot_bytes}
    if bank is not None:
        summary.update(
            view=bank.view, hot_items=bank.n_hot, all_in_memory=bank.all_hot, bytes=bank.hot_bytes
        )
    return summary


def fit_result_from_checkpoint(
    checkpoint: Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data_version: str | None = None,
) -> FitResult:
    """The finished state in `checkpoint`, with the best epoch's weights loaded."""
    blob = load_checkpoint(checkpoint, model_cfg, train_cfg, data_version)
    model = build_model(model_cfg)
    model.load_state_dict(blob["best_model"] or blob["model"])
    return FitResult(
        model=model,
        best_epoch=int(blob["best_epoch"]),
        best_valid_ndcg10=max(float(blob["best_metric"]), 0.0),
        epochs_run=int(blob["epoch"]),
        stopped_early=bool(blob["stopped_early"]),
        history=[EpochLog(**log) for log in blob["history"]],
        seconds=float(blob["elapsed"]),
        time_to_best=float(blob["time_to_best"]),
        loss_kind=loss_kind(model_cfg, train_cfg),
        negatives=train_cfg.negatives,
        steps=int(blob["global_step"]),
    )


def _training_summary(result: FitResult | None, train: TrainConfig, seconds: float) -> dict:
    if result is None:
        return {"learned": False, "seconds": seconds}
    return {
        "learned": True,
        "loss": result.loss_kind,
        "negatives": result.negatives,
        "steps": result.steps,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "best_valid_ndcg@10": result.best_valid_ndcg10,
        "train_seconds": result.seconds,
        "time_to_best_s": result.time_to_best,
        "sequences_per_s": result.sequences_per_second,
        "history": [
            {
                "epoch": h.epoch,
                "loss": h.loss,
                "valid_ndcg@10": h.valid_ndcg10,
                "items_per_s": h.items_per_second,
                "refreshes": h.refreshes,
            }
            for h in result.history
        ],
        "seconds": seconds,
        "lr": {"encoder": train.lr_encoder, "head": train.lr_head},
    }
