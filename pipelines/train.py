"""Training over a whole dataset: the glue between interactions.parquet, the feature store and
recmodel, writing the run directory.

    RUN/ config.json  model.pt  metrics.json  item_embeddings.npy  item_ids.parquet
         gates.parquet  serving.json (the serving benchmark, measured here)
         checkpoint.pt (the resumable training state)

The catalog is every item in the interactions plus every item in the store index (sorted), the
same for all variants trained on the same dataset and store, so their full-ranking metrics are
comparable. Items of the catalog without features take the content variants' learned
"missing content" vector; config.json reports how many.

Settings: TrainConfig's defaults (Table 6), then a config file (`config`: a YAML/JSON path or
a shipped name such as `demo`, train_config.py), then explicit values (CLI flags, Dagster run
config). config.json records every value used, with the automatic ones resolved (memory
budget, device, precision, exact or cached negatives) and the memory plan.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from pipelines.errors import PipelineError, one_line
from pipelines.run_dir import (
    STAGING_DIR,
    check_replaceable,
    discard_staging,
    inspect_run_dir,
    replace_run,
    start_staging,
    undo_failed_start,
    write_marker,
)
from pipelines.serving_bench import SERVING_FILE, record_serving
from pipelines.train_config import TrainingValues, training_values
from pipelines.train_ray import fit_with_ray
from recmodel.checkpoint import CheckpointMismatchError, EpochLog, load_checkpoint
from recmodel.config import ModelConfig, TrainConfig
from recmodel.data import Splits, build_splits
from recmodel.features import ItemFeatureBank, ItemFeatures
from recmodel.memory import BudgetError, MemoryPlan
from recmodel.model import build_model
from recmodel.serving import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    Recommender,
    evaluate_recommender,
    export_run,
    write_json,
)
from recmodel.train import FitResult, feature_bank, fit, loss_kind, plan_training
from recmodel.variants import MAIN_VARIANT, all_variants, get_variant, variant_names

PROGRESS_LINE_SECONDS = 60.0  # a step-progress line in non-interactive logs at most this often


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


def _open_store(store: Path | str) -> Any:
    from featurizer.store import FeatureStore, StoreError

    try:
        return FeatureStore.open(store)
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


def store_features(store: Path | str, catalog: Sequence[str], bank: bool = False) -> ItemFeatures:
    """recmodel's view of a store version (CURRENT) for `catalog`; with `bank`, of every prompt
    of its prompt bank (an item's rows stacked prompt-major, (P * L, K, D)). Picklable via
    functools.partial, so every Ray Train worker opens the store itself."""
    if bank:
        prompts = _open_bank(store)
        return ItemFeatures(
            item_rows=prompts.item_rows(catalog),
            read_rows=prompts.read_rows,
            shape=prompts.row_shape,
            n_new=prompts.new_tokens,
        )
    fs = _open_store(store)
    return ItemFeatures(
        item_rows=fs.rows_of(catalog),
        read_rows=fs.read_rows,
        shape=fs.shape_per_item,
        n_new=int(fs.extractor["new_tokens"]),
        read_rows_int8=fs.read_rows_int8 if fs.int8 else None,
    )


def _open_bank(store: Path | str) -> Any:
    from featurizer.store import StoreError
    from featurizer.store.bank import PromptBank

    try:
        return PromptBank.open(store)
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


@dataclass
class _Inputs:
    splits: Splits
    store_info: dict[str, Any]
    features: ItemFeatures | None
    failed: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))  # extraction failed
    data_version: str | None = None  # what a checkpoint must have been trained on


def _load_inputs(
    dataset: Path, store: Path | str | None, variant: str, max_history: int, verify: bool = True
) -> _Inputs:
    spec = get_variant(variant)
    table = _interactions(dataset)
    items = table.column("item").cast(pa.string())
    store_info: dict[str, Any] = {"path": None}
    features = None
    failed = pa.array([], pa.string())
    data_version = None
    if store is not None:
        fs = _open_store(store)
        bank = _open_prompt_bank(store, variant) if spec.prompt_bank else None
        if verify:
            _verify_store(store, bank or fs)
        items = pa.chunked_array([*items.chunks, fs.items()])  # the store's own in columns
        failed = fs.items(failed=True)
        extractor = fs.extractor
        store_info = {
            # the root, also when --store named a version: readers join root and fingerprint
            "path": store_root_name(fs.path.parent),
            "fingerprint": fs.fingerprint,
            "layers": list(extractor.get("layers", range(fs.shape_per_item[0]))),
            "shape": list(fs.shape_per_item),
            "new_tokens": int(extractor["new_tokens"]),
            "verified": verify,  # False: --no-verify-store
        }
        data_version = f"feature store version {fs.fingerprint}"
        if bank is not None:  # every prompt's version, read together
            members = [m.fingerprint for m in bank.members]
            store_info.update(fingerprint=bank.fingerprint, prompts=bank.prompts, members=members)
            data_version = f"prompt bank {bank.fingerprint} (members {', '.join(members)})"
    elif spec.uses_features:
        raise PipelineError(
            f"variant {variant} reads video features: pass --store (only id_only and "
            f"{', '.join(v.name for v in all_variants() if not v.uses_features)} train "
            "without one)"
        )
    catalog = pc.unique(items).sort().to_pylist()
    try:
        splits = build_splits(table, catalog, max_history)
    except ValueError as exc:
        raise PipelineError(f"{dataset}: {exc}") from None
    if store is not None and spec.uses_features:
        features = store_features(store, catalog, bank=spec.prompt_bank)
    return _Inputs(splits, store_info, features, failed, data_version)


def _open_prompt_bank(store: Path | str, variant: str) -> Any:
    """The store's prompt bank, refused in one line when the store has none: a plain version
    opens as a bank of one, and `variant` would train silently on its one prompt."""
    bank = _open_bank(store)
    if not bank.is_bank or len(bank.prompts) < 2:
        raise PipelineError(
            f"feature store {store}: version {bank.fingerprint} is not a prompt bank; "
            f"{variant} needs one: extract with a preset that lists several `prompts`"
        )
    return bank


def _verify_store(store: Path | str, version: Any) -> None:
    """Refuse a store version (or prompt bank) that `linkedout store verify` would call FAILED.
    Only the structure is checked (extractor.json, the arrays, the index: two items on one row,
    rows outside the array, ...); the rows' bytes are checked as training reads them."""
    from featurizer.store import StoreError

    try:
        report = version.verify(check_values=False)
    except StoreError as exc:
        raise PipelineError(str(exc)) from None
    if report.ok:
        return
    named = f"feature store {version.path}: "  # the line names the version once
    problems = [p.removeprefix(named) for p in report.problems]
    found = [*problems, *(f"item {item}: {why}" for item, why in report.bad_rows.items())]
    shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
    raise PipelineError(
        f"feature store {version.path} would not verify ({shown}); `linkedout store verify "
        f"{store}` lists every problem and `linkedout extract` repairs bad rows; "
        "--no-verify-store trains on it anyway"
    )


def _configs(
    variant: str, n_items: int, store_info: dict[str, Any], values: TrainingValues
) -> tuple[ModelConfig, TrainConfig]:
    shape: dict[str, Any] = {}
    if store_info.get("shape"):
        L, K, D = store_info["shape"]
        shape = {"n_layers": L, "n_tokens": K, "feature_dim": D, "n_new": store_info["new_tokens"]}
        if get_variant(variant).prompt_bank:
            shape["n_prompts"] = len(store_info["prompts"])
    try:
        model_cfg = ModelConfig(variant=variant, n_items=n_items, **{**shape, **values.model})
        return model_cfg, TrainConfig(**values.train)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"training configuration ({values.source}): {exc}") from None


def settings(
    config: str | Path | None = None,
    epochs: int | None = None,
    workers: int | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
) -> TrainingValues:
    """A config file's values with explicit ones on top (train_config.py)."""
    explicit: dict[str, Any] = dict(train_overrides or {})
    if model_overrides:
        explicit["model"] = dict(model_overrides)
    if epochs is not None:
        explicit["epochs"] = epochs
    if workers is not None:
        explicit["workers"] = workers
    return training_values(config, explicit)


# ---------------------------------------------------------------------------------------------
# Training


def train_run(
    dataset: Path,
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
) -> TrainResult:
    """Train `variant` on `dataset` (and `store`'s current version) into the run directory `out`,
    evaluate it on the test split and write every run file. Settings: `config` (a file or a
    shipped name), then the explicit arguments. Rerunning into the same `out` resumes from its
    checkpoint (a finished run is only re-exported); `fresh` replaces a previous run there once
    the new one has succeeded (scheduled retraining on new data). A store that would not
    verify is refused unless `verify_store` is False."""
    try:
        spec = get_variant(variant)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    values = settings(config, epochs, workers, model_overrides, train_overrides)
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
    inputs = _load_inputs(Path(dataset), store, variant, max_history, verify_store)
    splits = inputs.splits
    model_cfg, train_cfg = _configs(variant, splits.n_items, inputs.store_info, values)
    shape = inputs.features.shape if inputs.features is not None else None
    try:
        plan = plan_training(model_cfg, train_cfg, splits, shape, workers_per_machine=workers)
    except BudgetError as exc:
        raise PipelineError(f"training configuration ({values.source}): {exc}") from None
    train_cfg = plan.train
    if not fresh:
        _check_checkpoint(out, variant, model_cfg, train_cfg, inputs.data_version)

    missing = _missing_features(variant, inputs.features, splits, inputs.failed)
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
                "dataset": str(Path(dataset).resolve()),
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
        checkpoint = work / CHECKPOINT_FILE
        if spec.learned:
            try:
                if workers == 1:
                    result = _fit_here(
                        model_cfg,
                        train_cfg,
                        splits,
                        bank,
                        plan.memory,
                        checkpoint,
                        progress,
                        inputs.data_version,
                    )
                else:
                    features_factory = functools.partial(
                        store_features, store, splits.items, spec.prompt_bank
                    )
                    fit_with_ray(
                        model_cfg,
                        train_cfg,
                        splits,
                        features_factory,
                        checkpoint,
                        workers,
                        work,
                        inputs.data_version,
                    )
                    result = fit_result_from_checkpoint(
                        checkpoint, model_cfg, train_cfg, inputs.data_version
                    )
                    if progress:
                        for log in result.history:
                            tqdm.write(_epoch_line(variant, log))
            except CheckpointMismatchError as exc:
                raise PipelineError(str(exc)) from None
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
        serving = record_serving(work, _store_version(inputs.store_info), recorded_as=out)
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


def _store_version(store_info: dict[str, Any]) -> Any:
    if not store_info.get("path") or not store_info.get("fingerprint"):
        return None
    from featurizer.store import location

    return location(store_info["path"]) / store_info["fingerprint"]


def store_root_name(root: Any) -> str:
    """How config.json records a store root (a featurizer.store Location): an absolute local
    path, or the s3:// URL."""
    return str(root.path.resolve()) if root.is_local else root.url


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
        except ValueError as exc:  # a refused or unreadable file: named by load_tensors
            raise PipelineError(one_line(exc)) from None


def _bank_summary(bank: ItemFeatureBank | None, memory: MemoryPlan | None) -> dict | None:
    if memory is None:
        return None
    summary: dict[str, Any] = {"item_bytes": memory.item_bytes, "hot_bytes": memory.hot_bytes}
    if bank is not None:
        summary.update(
            view=bank.view, hot_items=bank.n_hot, all_in_memory=bank.all_hot, bytes=bank.hot_bytes
        )
    return summary


def _missing_features(
    variant: str, features: ItemFeatures | None, splits: Splits, failed: pa.Array
) -> dict[str, int] | None:
    """How many catalog items have no features, and why; said once on the console. A content
    variant whose every item lacks features would train an ID model under its name: refused."""
    if features is None:
        return None
    without = np.flatnonzero(features.item_rows < 0)
    missing_items = [splits.items[i] for i in without]
    n_missing = len(missing_items)
    n_failed = int(
        pc.sum(pc.is_in(pa.array(missing_items, pa.string()), value_set=failed)).as_py() or 0
    )
    if n_missing == splits.n_items:
        raise PipelineError(
            f"variant {variant} reads video features, but the store holds none for any of the "
            f"{n_missing} catalog items ({n_failed} failed extraction, {n_missing - n_failed} "
            "without a video or not extracted yet): extract them first (`linkedout store info` "
            "shows the store), or train id_only"
        )
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


def _fit_here(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    splits: Splits,
    bank: ItemFeatureBank | None,
    memory: MemoryPlan | None,
    checkpoint: Path,
    progress: bool,
    data_version: str | None,
) -> FitResult:
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
            tqdm.write(_epoch_line(model_cfg.variant, log))

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


# ---------------------------------------------------------------------------------------------
# Sweeps, evaluation, queries


def train_sweep(
    dataset: Path,
    store: Path | str | None,
    out_root: Path,
    variants: Sequence[str] | None = None,
    epochs: int | None = None,
    *,
    config: str | Path | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    fresh: bool = False,
    verify_store: bool = True,
) -> dict[str, dict[str, Any]]:
    """Every variant on the same split and catalog, with the same settings, into
    out_root/<variant>/; variant -> metrics. Content variants are skipped (with a note) when
    there is no store. `variants`: default, every registered one."""
    out: dict[str, dict[str, Any]] = {}
    for variant in variant_names() if variants is None else variants:
        if get_variant(variant).uses_features and store is None:
            tqdm.write(f"sweep: skipping {variant}: it needs a feature store")
            continue
        result = train_run(
            dataset,
            store,
            Path(out_root) / variant,
            variant=variant,
            epochs=epochs,
            config=config,
            model_overrides=model_overrides,
            train_overrides=train_overrides,
            progress=progress,
            fresh=fresh,
            verify_store=verify_store,
        )
        out[variant] = result.metrics
    return out
