"""Queries over a finished run directory: its metrics recomputed, recommendations for a watch
history, and the serving figures (item vectors, one query's latency). Training is pipelines.train."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.ingest import read_interactions
from pipelines.serving_bench import read_run_item_ids
from pipelines.train import metric_lines
from recmodel.data import build_splits
from recmodel.serving import (
    CONFIG_FILE,
    METRICS_FILE,
    Recommender,
    UnknownItemsError,
    evaluate_recommender,
    write_json,
)


@dataclass
class EvaluationResult:
    run_dir: Path
    variant: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return "\n".join(
            [
                f"evaluated {self.variant} run {self.run_dir} (wrote {METRICS_FILE})",
                *metric_lines(self.metrics["test"]),
            ]
        )


def read_run_config(run: Path) -> dict[str, Any]:
    """A run's config.json; PipelineError (one line naming the file) when it is missing or
    is not a JSON object."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise PipelineError(f"{run} is not a run directory (no {CONFIG_FILE}): train one first")
    config = _read_json(path)
    if not isinstance(config, dict):
        raise PipelineError(f"{path} is not a run's config (a JSON object was expected)")
    return config


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
        raise PipelineError(f"{path} is not valid JSON: {exc}") from None


def evaluate_run(run: Path) -> EvaluationResult:
    """Recompute metrics.json of a run from its saved model and item vectors (keeping the
    training section), on the interactions of the dataset it was trained on."""
    run = Path(run)
    config = read_run_config(run)
    table = read_interactions(Path(config["dataset"]))
    items = read_run_item_ids(run)
    try:
        splits = build_splits(table, items, int(config["model"]["max_history"]))
    except ValueError as exc:
        raise PipelineError(f"{config['dataset']} changed since {run} was trained: {exc}") from None
    metrics = evaluate_recommender(Recommender.load(run), splits)
    previous = run / METRICS_FILE
    if previous.is_file():
        recorded = _read_json(previous)
        metrics["training"] = recorded.get("training") if isinstance(recorded, dict) else None
    metrics["variant"] = config["variant"]
    write_json(previous, metrics)
    return EvaluationResult(run_dir=run, variant=config["variant"], metrics=metrics)


@functools.lru_cache(maxsize=4)
def _recommender(run: str, mtime_ns: int) -> Recommender:
    return Recommender.load(run)


def recommend(run: Path, history: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
    """Top-k items for a watch history, history excluded; unknown items are one error."""
    run = Path(run)
    read_run_config(run)
    model_file = run / "model.pt"
    if not model_file.is_file():
        raise PipelineError(f"{run} has no model.pt: its training did not finish")
    if k < 1:
        raise PipelineError(f"k must be >= 1, got {k}")
    try:
        return _recommender(str(run.resolve()), model_file.stat().st_mtime_ns).recommend(
            list(history), k
        )
    except UnknownItemsError as exc:
        raise PipelineError(str(exc)) from None
    except ValueError as exc:
        raise PipelineError(f"{run}: {exc}") from None
