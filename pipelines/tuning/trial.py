"""One trial of a search, as Ray Tune runs it: `train` of the trial's settings into its own run
directory (OUT/trials/<trial id>/), each epoch's validation NDCG@10 reported as it ends (the
ASHA scheduler stops a trial between epochs), the test metrics reported once the run has
finished, for the table only. A trial restored after an interruption trains into the same
directory, so `train` resumes it from its checkpoint.

Also the line per finished trial that a search prints (TrialLines, a Tune callback), in a log as
on a terminal."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from pipelines.errors import one_line
from pipelines.tuning.space import split_params

METRIC = "best_valid_ndcg10"  # the best validation NDCG@10 so far: what ASHA and the choice read
EPOCH = "epoch"  # ASHA's time attribute: a trial's budget is counted in epochs


@dataclass(frozen=True)
class TrialJob:
    """What every trial shares: where the data is, the base settings, where runs go."""

    dataset: str
    store: str | None
    variant: str
    config: str | None  # the base config file (absolute) or a shipped name
    fixed: dict[str, Any]  # TrainConfig values every trial gets (flags, the memory budget)
    fixed_model: dict[str, Any]
    trials_dir: str
    threads: int
    verify_store: bool


def run_trial(params: dict[str, Any], job: TrialJob) -> None:
    """Train the trial's settings; report each epoch, then the finished run's figures."""
    import torch

    from pipelines.training.run import train_run

    torch.set_num_threads(job.threads)
    trial_id = tune.get_context().get_trial_id()
    train_values, model_values = split_params(params)
    best = [-math.inf]

    def report(log: Any) -> None:
        best[0] = max(best[0], log.valid_ndcg10)
        tune.report(
            {
                EPOCH: log.epoch,
                "valid_ndcg10": log.valid_ndcg10,
                METRIC: best[0],
                "loss": log.loss,
                "elapsed_s": log.elapsed,
            }
        )

    result = train_run(
        job.dataset,
        job.store,
        Path(job.trials_dir) / trial_id,
        job.variant,
        config=job.config,
        model_overrides={**job.fixed_model, **model_values},
        train_overrides={**job.fixed, **train_values},
        progress=False,
        verify_store=job.verify_store,
        on_epoch_end=report,
    )
    training, test = result.metrics["training"], result.metrics["test"]["overall"]
    history = training.get("history") or []
    tune.report(
        {
            EPOCH: result.epochs_run,
            "valid_ndcg10": history[-1]["valid_ndcg@10"] if history else 0.0,
            METRIC: training.get("best_valid_ndcg@10", 0.0),
            "best_epoch": result.best_epoch,
            "elapsed_s": training.get("train_seconds", 0.0),
            # reported for the table, never read by the scheduler or the choice
            "test_ndcg10": test["ndcg@10"],
            "test_hr10": test["hr@10"],
            "finished": True,
        }
    )


def error_line(error: BaseException | None) -> str:
    """A failed trial's error as one line: the trial's own exception, not Ray's wrapping."""
    if error is None:
        return ""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {one_line(cause, 300)}"


class TrialLines(tune.Callback):
    """A line per trial that ends (finished, stopped by the scheduler, or failed), flushed at
    once, so a redirected log shows each trial as it ends, with its validation figure."""

    def __init__(self, trials: int) -> None:
        self.trials = trials
        self.ended = 0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended += 1
        result = trial.last_result or {}
        how = "finished" if result.get("finished") else "stopped by ASHA"
        figure = result.get(METRIC)
        shown = f"valid NDCG@10 {figure:.4f}" if figure is not None else "no epoch reported"
        self._say(
            f"trial {self.ended}/{self.trials} {trial.trial_id} {how} at epoch "
            f"{result.get(EPOCH, 0)}: {shown}  {_params(trial.config)}"
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended += 1
        self._say(
            f"trial {self.ended}/{self.trials} {trial.trial_id} failed: "
            f"{_last_error_line(trial)}  {_params(trial.config)}"
        )

    @staticmethod
    def _say(line: str) -> None:
        print(f"tune: {line}", file=sys.stdout, flush=True)


def _params(config: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items())
    )


def _last_error_line(trial: Any) -> str:
    """The exception line of the trial's error file (Ray writes the traceback there before it
    calls back; the copy in the search directory is synced later)."""
    try:
        text = Path(trial.error_file).read_text()
    except (OSError, TypeError, AttributeError):
        return "see the trial's error in the table"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return one_line(lines[-1], 300) if lines else "no error text"
