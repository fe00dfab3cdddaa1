"""Training, evaluation and queries over a whole dataset: the glue between interactions.parquet,
the feature store and recmodel, writing the run directory.

    RUN/ config.json  model.pt  metrics.json  item_embeddings.npy  item_ids.parquet
         gates.parquet  checkpoint.pt (the resumable training state)

The catalog is every item in the interactions plus every item in the store index (sorted), the
same for all variants trained on the same dataset and store, so their full-ranking metrics are
comparable. Items of the catalog without features take the content variants' learned
"missing content" vector; config.json reports how many.

Demo training settings (DEMO_TRAINING): Table 6's learning rates (1e-4 encoders, 1e-5 head)
are for 100 epochs on 8 GPUs; at 1e-5 the ranker barely moves in the few CPU epochs a demo
has. The demo trains both groups at 1e-3 after a 10-step linear warmup, with early stopping
(patience 10, at most 80 epochs). Why not faster: at 3e-3 (id_only reaches its best validation
NDCG@10 on bench/train.py's 100k-interaction dataset at epoch 6 instead of 14) the content
encoders (attention pools, per-layer experts, gate) do not converge on the demo dataset: the
loss jumps from 4.3 to 7-11 in the second epoch and keeps oscillating, and `full` early-stopped
on its first epoch, below id_only. The demo has ~2-3 optimizer steps per epoch at batch 256,
so AdamW's first steps, which move every weight by about lr whatever its gradient, land in the
first epochs: the warmup removes that spike at 1e-3 too. The content variants' validation
NDCG@10 on the demo's ~100-item catalog is noisy from epoch to epoch, hence a patience of 10
rather than 5. Everything else is Table 6. `train_overrides` / `model_overrides` change any
field.

With workers > 1 the loop runs under Ray Train's TorchTrainer (gloo on CPU, one CPU per
worker); the run directory must be on storage the workers share (one machine, or a shared
file system on a cluster): rank 0 writes the checkpoint there, and a restarted worker group
(FailureConfig) resumes from it.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from pipelines.errors import PipelineError, one_line
from recmodel.config import VARIANTS, ModelConfig, TrainConfig, check_variant
from recmodel.data import FEATURE_VIEWS, ItemFeatureBank, ItemFeatures, Splits, build_splits
from recmodel.serving import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    Recommender,
    evaluate_recommender,
    export_run,
    write_json,
)
from recmodel.train import (
    CheckpointMismatchError,
    EpochLog,
    FitResult,
    fit,
    load_checkpoint,
    loss_kind,
)
from recmodel.variants import build_model

DEMO_TRAINING: dict[str, Any] = {
    "lr_encoder": 1e-3,
    "lr_head": 1e-3,
    "warmup_steps": 10,
    "epochs": 80,
    "patience": 10,
}


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


def metric_lines(split: dict[str, Any]) -> list[str]:
    lines = []
    for group in ("overall", "cold_start", "head", "mid", "tail"):
        m = split[group]
        if not m["n"]:
            lines.append(f"  {group:<10} n=0")
            continue
        lines.append(
            f"  {group:<10} n={m['n']:<6} HR@10 {m['hr@10']:.4f}  HR@20 {m['hr@20']:.4f}  "
            f"NDCG@10 {m['ndcg@10']:.4f}  NDCG@20 {m['ndcg@20']:.4f}"
        )
    return lines


# ---------------------------------------------------------------------------------------------
# Reading the inputs


def _interactions(dataset: Path) -> pa.Table:
    from pipelines.ingest import read_current_interactions

    return read_current_interactions(Path(dataset))  # stops when pairs.csv changed since ingest


def _open_store(store: Path) -> Any:
    from featurizer.store import FeatureStore, StoreError

    try:
        return FeatureStore.open(Path(store))
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


def store_features(store: Path, catalog: Sequence[str]) -> ItemFeatures:
    """recmodel's view of a store version (CURRENT) for `catalog`; picklable via
    functools.partial, so every Ray Train worker opens the store itself."""
    fs = _open_store(store)
    index = fs.index()
    rows = np.array([index.get(item, -1) for item in catalog], dtype=np.int64)
    return ItemFeatures(
        item_rows=rows,
        read_rows=fs.read_rows,
        shape=fs.shape_per_item,
        n_new=int(fs.extractor["new_tokens"]),
    )


@dataclass
class _Inputs:
    splits: Splits
    store_info: dict[str, Any]
    features: ItemFeatures | None
    failed: set[str] = field(default_factory=set)  # items whose extraction failed


def _load_inputs(dataset: Path, store: Path | None, variant: str, max_history: int) -> _Inputs:
    table = _interactions(dataset)
    items = set(table.column("item").cast(pa.string()).to_pylist())
    store_info: dict[str, Any] = {"path": None}
    features = None
    failed: set[str] = set()
    if store is not None:
        fs = _open_store(store)
        items |= set(fs.index())
        failed = set(fs.failures_table().column("item").to_pylist())
        extractor = fs.extractor
        store_info = {
            "path": str(Path(store).resolve()),
            "fingerprint": fs.fingerprint,
            "layers": list(extractor.get("layers", range(fs.shape_per_item[0]))),
            "shape": list(fs.shape_per_item),
            "new_tokens": int(extractor["new_tokens"]),
        }
    elif variant in FEATURE_VIEWS:
        raise PipelineError(
            f"variant {variant} reads video features: pass --store (only id_only and "
            "popularity train without one)"
        )
    catalog = sorted(items)
    try:
        splits = build_splits(table, catalog, max_history)
    except ValueError as exc:
        raise PipelineError(f"{dataset}: {exc}") from None
    if store is not None and variant in FEATURE_VIEWS:
        features = store_features(store, catalog)
    return _Inputs(splits, store_info, features, failed)


def _configs(
    variant: str,
    n_items: int,
    store_info: dict[str, Any],
    epochs: int | None,
    model_overrides: dict[str, Any] | None,
    train_overrides: dict[str, Any] | None,
) -> tuple[ModelConfig, TrainConfig]:
    shape: dict[str, Any] = {}
    if store_info.get("shape"):
        L, K, D = store_info["shape"]
        shape = {"n_layers": L, "n_tokens": K, "feature_dim": D, "n_new": store_info["new_tokens"]}
    try:
        model_cfg = ModelConfig(
            variant=variant, n_items=n_items, **{**shape, **(model_overrides or {})}
        )
        values = {**DEMO_TRAINING, **(train_overrides or {})}
        if epochs is not None:
            values["epochs"] = epochs
        return model_cfg, TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"training configuration: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Training


def train_run(
    dataset: Path,
    store: Path | None,
    out: Path,
    variant: str = "full",
    epochs: int | None = None,
    workers: int = 1,
    *,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    fresh: bool = False,
) -> TrainResult:
    """Train `variant` on `dataset` (and `store`'s current version) into the run directory `out`,
    evaluate it on the test split and write every run file. Rerunning into the same `out`
    resumes from its checkpoint (a finished run is only re-exported); `fresh` discards a previous
    run there first (scheduled retraining on new data)."""
    try:
        check_variant(variant)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    if workers < 1:
        raise PipelineError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    if fresh:
        _discard_run(out)
    started = time.perf_counter()
    max_history = int((model_overrides or {}).get("max_history", ModelConfig.max_history))
    inputs = _load_inputs(Path(dataset), store, variant, max_history)
    splits = inputs.splits
    model_cfg, train_cfg = _configs(
        variant, splits.n_items, inputs.store_info, epochs, model_overrides, train_overrides
    )
    bank = None
    if inputs.features is not None:
        bank = ItemFeatureBank(
            inputs.features, FEATURE_VIEWS[variant], train_cfg.feature_memory_bytes
        )
    missing = _missing_features(variant, bank, splits, inputs.failed)
    n_missing = missing["total"] if missing else 0
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / CONFIG_FILE,
        {
            "variant": variant,
            "dataset": str(Path(dataset).resolve()),
            "store": inputs.store_info,
            "model": model_cfg.to_dict(),
            "train": train_cfg.to_dict(),
            "workers": workers,
            "n_items": splits.n_items,
            "n_items_with_features": splits.n_items - n_missing if bank is not None else 0,
            "n_missing_features": n_missing,
            "missing_features": missing,
            "feature_bank": None
            if bank is None
            else {"view": bank.view, "in_memory": bank.in_memory, "bytes": bank.table_bytes},
            "created_at": datetime.now(timezone.utc).isoformat(),
        },
    )

    result: FitResult | None = None
    if variant != "popularity":
        checkpoint = out / CHECKPOINT_FILE
        try:
            if workers == 1:
                result = _fit_here(model_cfg, train_cfg, splits, bank, checkpoint, progress)
            else:
                features_factory = functools.partial(store_features, store, splits.items)
                _fit_with_ray(
                    model_cfg, train_cfg, splits, features_factory, checkpoint, workers, out
                )
                result = fit_result_from_checkpoint(checkpoint, model_cfg, train_cfg)
                if progress:
                    for log in result.history:
                        tqdm.write(_epoch_line(variant, log))
        except CheckpointMismatchError as exc:
            raise PipelineError(str(exc)) from None

    layers = inputs.store_info.get("layers")
    export_run(
        out,
        model_cfg,
        result.model if result else None,
        bank,
        splits,
        layers,
        train_cfg.encode_batch_size,
    )
    metrics = evaluate_recommender(Recommender.load(out), splits, train_cfg.eval_batch_size)
    metrics["variant"] = variant
    metrics["training"] = _training_summary(result, train_cfg, time.perf_counter() - started)
    metrics["training"]["n_missing_features"] = n_missing
    write_json(out / METRICS_FILE, metrics)
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
    )


def _missing_features(
    variant: str, bank: ItemFeatureBank | None, splits: Splits, failed: set[str]
) -> dict[str, int] | None:
    """How many catalog items have no features, and why; said once on the console."""
    if bank is None:
        return None
    n_missing = bank.n_missing
    missing_items = [splits.items[i] for i in np.flatnonzero(~bank.has)]
    n_failed = sum(item in failed for item in missing_items)
    if n_missing:
        shown = ", ".join(missing_items[:10]) + (", ..." if n_missing > 10 else "")
        tqdm.write(
            f"{variant}: {n_missing} of {splits.n_items} items have no features "
            f"({n_failed} failed extraction, {n_missing - n_failed} without a video or not "
            f"extracted yet: {shown}); they take the learned missing-content vector"
        )
    return {
        "total": n_missing,
        "extraction_failed": n_failed,
        "not_extracted": n_missing - n_failed,  # no video, or not extracted yet
    }


def _epoch_line(variant: str, log: EpochLog) -> str:
    return (
        f"{variant} epoch {log.epoch:>3}: loss {log.loss:.4f}  val NDCG@10 {log.valid_ndcg10:.4f}"
        f"{' *' if log.improved else ''}  ({log.seconds:.1f} s)"
    )


def _fit_here(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    splits: Splits,
    bank: ItemFeatureBank | None,
    checkpoint: Path,
    progress: bool,
) -> FitResult:
    # the bar on a terminal only (disable=None); the per-epoch lines whenever progress is on
    bar = tqdm(
        total=train_cfg.epochs,
        desc=f"train {model_cfg.variant}",
        unit="epoch",
        disable=None if progress else True,
    )

    def on_epoch(log: EpochLog) -> None:
        if bar.n == 0 and log.epoch > 1:
            bar.update(log.epoch - 1)  # resumed: the epochs before were done earlier
        bar.update(1)
        bar.set_postfix(loss=f"{log.loss:.4f}", val_ndcg10=f"{log.valid_ndcg10:.4f}")
        if progress:
            tqdm.write(_epoch_line(model_cfg.variant, log))

    try:
        return fit(model_cfg, train_cfg, splits, bank, checkpoint, on_epoch=on_epoch)
    finally:
        bar.close()


def fit_result_from_checkpoint(
    checkpoint: Path, model_cfg: ModelConfig, train_cfg: TrainConfig
) -> FitResult:
    """The finished state in `checkpoint`, with the best epoch's weights loaded."""
    blob = load_checkpoint(checkpoint, model_cfg, train_cfg)
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
    )


def _training_summary(result: FitResult | None, train: TrainConfig, seconds: float) -> dict:
    if result is None:
        return {"learned": False, "seconds": seconds}
    return {
        "learned": True,
        "loss": result.loss_kind,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "best_valid_ndcg@10": result.best_valid_ndcg10,
        "train_seconds": result.seconds,
        "time_to_best_s": result.time_to_best,
        "sequences_per_s": result.sequences_per_second,
        "history": [
            {"epoch": h.epoch, "loss": h.loss, "valid_ndcg@10": h.valid_ndcg10}
            for h in result.history
        ],
        "seconds": seconds,
        "lr": {"encoder": train.lr_encoder, "head": train.lr_head},
    }


# ---------------------------------------------------------------------------------------------
# Ray Train


def _ray_worker(config: dict[str, Any]) -> None:
    """TorchTrainer's train_loop_per_worker: the same recmodel loop, in a gloo process group
    that Ray Train has already set up; every worker reports each epoch to Ray."""
    import ray.train

    model_cfg = ModelConfig.from_dict(config["model"])
    train_cfg = TrainConfig.from_dict(config["train"])
    bank = None
    if model_cfg.uses_features:
        bank = ItemFeatureBank(
            config["features_factory"](),
            FEATURE_VIEWS[model_cfg.variant],
            train_cfg.feature_memory_bytes,
        )

    def on_epoch(log: EpochLog) -> None:
        ray.train.report({"epoch": log.epoch, "loss": log.loss, "valid_ndcg10": log.valid_ndcg10})

    fit(
        model_cfg,
        train_cfg,
        config["splits"],
        bank,
        Path(config["checkpoint"]),
        on_epoch=on_epoch,
    )


def _fit_with_ray(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    splits: Splits,
    features_factory: Any,
    checkpoint: Path,
    workers: int,
    out: Path,
) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.ray_runtime import ensure_ray

    ensure_ray()
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={
            "model": model_cfg.to_dict(),
            "train": train_cfg.to_dict(),
            "splits": splits,
            "features_factory": features_factory if model_cfg.uses_features else None,
            "checkpoint": str(checkpoint.resolve()),
        },
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}
        ),
        run_config=RunConfig(
            name=f"train-{model_cfg.variant}",
            storage_path=str((out / "ray_train").resolve()),
            failure_config=FailureConfig(max_failures=1),  # restarts resume from the checkpoint
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:  # Ray wraps worker errors; one line for the CLI
        raise PipelineError(f"Ray Train run failed: {one_line(exc, 500)}") from exc


# ---------------------------------------------------------------------------------------------
# Sweeps, evaluation, queries


def train_sweep(
    dataset: Path,
    store: Path | None,
    out_root: Path,
    variants: Sequence[str] = VARIANTS,
    epochs: int | None = None,
    *,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    fresh: bool = False,
) -> dict[str, dict[str, Any]]:
    """Every variant on the same split and catalog into out_root/<variant>/; variant ->
    metrics. Content variants are skipped (with a note) when there is no store."""
    out: dict[str, dict[str, Any]] = {}
    for variant in variants:
        if variant in FEATURE_VIEWS and store is None:
            tqdm.write(f"sweep: skipping {variant}: it needs a feature store")
            continue
        result = train_run(
            dataset,
            store,
            Path(out_root) / variant,
            variant=variant,
            epochs=epochs,
            model_overrides=model_overrides,
            train_overrides=train_overrides,
            progress=progress,
            fresh=fresh,
        )
        out[variant] = result.metrics
    return out


def _discard_run(run: Path) -> None:
    """Remove a previous run's files (only a run directory's own files: never a stray path)."""
    if not run.exists():
        return
    if not (run / CONFIG_FILE).is_file() and any(run.iterdir()):
        raise PipelineError(f"{run} exists and is not a run directory; not replacing it")
    shutil.rmtree(run)
