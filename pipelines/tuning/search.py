"""`tune_search`: a hyperparameter search over `train` on Ray Tune, into a search directory

    OUT/linkedout-tune.json        the marker: what was searched (variant, data, space, settings)
    OUT/search/                    Ray Tune's experiment state (Tuner.restore reads it)
    OUT/trials/<trial id>/         each trial's run directory, as `train --out` writes one
    OUT/trials.csv, trials.parquet every trial: status, settings, epochs, validation and test
    OUT/trial_epochs.parquet       each trial's validation NDCG@10 per epoch
    OUT/best.yaml                  the chosen trial's settings, for `train --config`

Trials sample the space at random (the base settings first, so the table holds the figure to
beat); the ASHA scheduler stops the weaker ones at epoch milestones (grace_epochs, then every
reduction_factor-fold more), on the best validation NDCG@10 so far. Every trial gets the same
memory budget (the one given, or half this machine's memory shared by the trials that run at
once) and `cpus_per_trial` threads. Ray is local, or the cluster of `ray_address`/RAY_ADDRESS;
on a cluster OUT, the dataset and the store must be reachable from every node.

OUT is written only when it is missing, empty, or a search with the same settings, which is
resumed: finished trials stay, unfinished ones continue from their run's checkpoint, failed
ones stay failed. Nothing else in OUT is touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.dataset.location import dataset_address
from pipelines.errors import PipelineError, user_facing
from pipelines.files import atomic_write, atomic_write_bytes
from pipelines.report.search import BEST_CONFIG, EPOCHS_TABLE, MARKER, TRIALS_TABLE
from pipelines.training.inputs import load_inputs
from pipelines.training.settings import resolve_settings
from pipelines.tuning.results import (
    best_config_yaml,
    choose_best,
    summary_lines,
    trial_tables,
)
from pipelines.tuning.space import SearchSpace, read_space
from pipelines.tuning.trial import EPOCH, METRIC, TrialJob, TrialLines, run_trial
from recmodel.config import ModelConfig, TrainConfig, parse_bytes
from recmodel.variants import MAIN_VARIANT, get_variant

SEARCH_DIR = "search"
TRIALS_DIR = "trials"


@dataclass
class SearchResult:
    out: Path
    table: pd.DataFrame
    best: pd.Series | None
    lines: list[str]  # the printed summary
    resumed: bool
    params: list[str]  # the searched settings: the table's columns of them

    @property
    def best_config(self) -> Path | None:
        return self.out / BEST_CONFIG if self.best is not None else None

    def describe(self) -> str:
        where = f"best config: {self.best_config}" if self.best is not None else "no best config"
        return "\n".join([*self.lines, f"{where}; every trial: {self.out / 'trials.csv'}"])


@user_facing
def tune_search(
    dataset: Path | str,
    store: Path | str | None,
    out: Path,
    variant: str = MAIN_VARIANT,
    *,
    space: str | Path | None = None,
    config: str | Path | None = None,
    train_overrides: dict[str, Any] | None = None,
    trials: int = 16,
    max_concurrent: int | None = None,
    cpus_per_trial: int = 1,
    grace_epochs: int = 5,
    reduction_factor: int = 3,
    search_seed: int = 0,
    ray_address: str | None = None,
    verify_store: bool = True,
) -> SearchResult:
    """Search `space` (a YAML file; None: the default space) around the base settings
    (`config` then `train_overrides`, as `train` takes them) with `trials` samples, and write
    OUT's tables and best.yaml; rerunning with the same arguments resumes the search."""
    get_variant(variant)
    if not get_variant(variant).learned:
        raise PipelineError(f"variant {variant} learns nothing; there is nothing to tune")
    if trials < 1 or cpus_per_trial < 1 or grace_epochs < 1 or reduction_factor < 2:
        raise PipelineError(
            "--trials, --cpus-per-trial and --grace-epochs must be >= 1, --reduction-factor >= 2"
        )
    searched = read_space(space)
    if config is not None and Path(config).exists():
        config = str(Path(config).resolve())  # the trials read it from their own directory
    values = resolve_settings(config, train_overrides=train_overrides)
    if (values.workers or 1) != 1:
        raise PipelineError("workers: a trial trains in one process; leave workers at 1")
    given = set(train_overrides or {})
    clash = sorted(given & {d.name for d in searched.dimensions})
    if clash:
        raise PipelineError(f"{', '.join(clash)}: given as a flag and searched; choose one")

    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from pipelines.ray_runtime import ensure_ray
    from recmodel.memory import check_budget, default_budget

    out = Path(out).resolve()
    if (out / MARKER).is_file() or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        # the trials read the same inputs: a missing dataset or a store that fails its
        # verification is one error here, not one per trial
        max_history = int(values.model.get("max_history", ModelConfig.max_history))
        load_inputs(dataset, store, variant, max_history, verify_store)
    identity = {
        "variant": variant,
        "dataset": dataset_address(dataset),
        "store": str(store) if store is not None else None,
        "space": searched.describe(),
        "settings": {**values.train, "model": values.model},
        "settings_from": values.source,
        "trials": trials,
        "grace_epochs": grace_epochs,
        "reduction_factor": reduction_factor,
        "search_seed": search_seed,
    }
    resumed = _claim(out, identity)
    started_ray = not ray.is_initialized()
    ensure_ray(ray_address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
        concurrent = max_concurrent or max(1, cpus // cpus_per_trial)
        fixed = dict(values.train)
        explicit_budget = parse_bytes(fixed.get("memory_budget_bytes", 0))
        budget = explicit_budget or default_budget(concurrent)
        check_budget(budget)
        fixed["memory_budget_bytes"] = budget
        baseline = _baseline(searched, values.train, values.model)
        job = TrialJob(
            dataset=str(dataset),
            store=str(store) if store is not None else None,
            variant=variant,
            config=str(config) if config is not None else None,
            fixed=fixed,
            fixed_model=dict(values.model),
            trials_dir=str(out / TRIALS_DIR),
            threads=cpus_per_trial,
            verify_store=verify_store,
        )
        resources: dict[str, float] = {"cpu": cpus_per_trial}
        if explicit_budget:  # the default budget is sized so that `concurrent` trials fit
            resources["memory"] = budget
        trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), resources)
        path = out / SEARCH_DIR
        if resumed and tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(
                str(path), trainable, resume_unfinished=True, resume_errored=False
            )
        else:
            epochs = int(fixed.get("epochs", TrainConfig.epochs))
            tuner = tune.Tuner(
                trainable,
                param_space=searched.param_space(),
                tune_config=tune.TuneConfig(
                    metric=METRIC,
                    mode="max",
                    scheduler=ASHAScheduler(
                        time_attr=EPOCH,
                        # one past the last epoch: a trial that trains to the end is not
                        # stopped before it reports its finished run
                        max_t=epochs + 1,
                        grace_period=min(grace_epochs, epochs),
                        reduction_factor=reduction_factor,
                    ),
                    search_alg=BasicVariantGenerator(
                        points_to_evaluate=[baseline],
                        random_state=search_seed,
                        max_concurrent=concurrent,
                    ),
                    num_samples=trials,
                    trial_dirname_creator=_trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=SEARCH_DIR,
                    storage_path=str(out),
                    verbose=0,
                    callbacks=[TrialLines(trials * searched.grid_size)],
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                ),
            )
        with _quiet_tune():
            results = tuner.fit()
    finally:
        if started_ray:
            ray.shutdown()
    return _write_results(out, results, searched, baseline, values, explicit_budget, resumed)


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune's own console output off (its tables, each failure's traceback, warnings about
    optional loggers): the search prints a line per trial (TrialLines) and the summary, and
    each failure's traceback stays in the search directory."""
    logger = logging.getLogger("ray.tune")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the legacy reporter, silent at verbose=0
    try:
        yield
    finally:
        logger.setLevel(level)
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before


def _trial_dirname(trial: Any) -> str:
    """A trial's directory under OUT/search/ is its id, as OUT/trials/ names its run."""
    return trial.trial_id


def _baseline(space: SearchSpace, train: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """The base settings' value of every searched setting (the first trial)."""
    point = {}
    for d in space.dimensions:
        if d.kind == "grid":
            continue  # a grid runs every value anyway
        if d.name.startswith("model."):
            name = d.name.split(".", 1)[1]
            point[d.name] = model.get(name, ModelConfig.__dataclass_fields__[name].default)
        else:
            point[d.name] = train.get(d.name, TrainConfig.__dataclass_fields__[d.name].default)
    return point


def _claim(out: Path, identity: dict[str, Any]) -> bool:
    """Make OUT this search's directory (True: it already is one, to resume), or refuse."""
    marker = out / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded.get("identity") != json.loads(json.dumps(identity)):
            differs = sorted(
                k for k in identity if recorded.get("identity", {}).get(k) != identity[k]
            )
            raise PipelineError(
                f"{out} holds a search with other settings ({', '.join(differs)}); "
                "search into another --out"
            )
        return True
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PipelineError(
            f"{out} is not empty and not a search directory (no {MARKER}); "
            "search into a new or empty directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    record = {"identity": identity, "created_at": datetime.now(timezone.utc).isoformat()}
    atomic_write_bytes(marker, json.dumps(record, indent=2, default=str).encode())
    return False


def _write_results(
    out: Path,
    results: Any,
    space: SearchSpace,
    baseline: dict[str, Any],
    values: Any,
    explicit_budget: int,
    resumed: bool,
) -> SearchResult:
    params = [d.name for d in space.dimensions]
    table, epochs = trial_tables(results, baseline, params)
    atomic_write(out / f"{TRIALS_TABLE}.csv", lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(out / f"{TRIALS_TABLE}.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write(out / EPOCHS_TABLE, lambda tmp: epochs.to_parquet(tmp, index=False))
    best = choose_best(table)
    lines = summary_lines(table, params, best)
    if best is None:
        (out / BEST_CONFIG).unlink(missing_ok=True)  # ours: a best of an earlier pass is stale
        errors = [e for e in table["error"] if e]
        first = f": {errors[0]}" if errors else ""
        raise PipelineError(f"no trial of the search in {out} reported a figure{first}")
    base = dict(values.train)
    if not explicit_budget:
        base.pop("memory_budget_bytes", None)  # `train` sizes its own default
    text = best_config_yaml(base, values.model, best, params, str(out))
    atomic_write_bytes(out / BEST_CONFIG, text.encode())
    return SearchResult(out, table, best, lines, resumed, params)
