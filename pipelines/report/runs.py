"""Which sibling runs share the main run's split (same dataset, catalog and test split), and
why the others are left out; the files themselves are read by serving/runfiles.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.report.layout import variant_order
from pipelines.serving.runfiles import METRICS_FILE, VIEW_RUNS_DIR, read_config, read_metrics


def variant_of(name: str, config: dict[str, Any], metrics: dict[str, Any]) -> str:
    return str(config.get("variant") or metrics.get("variant") or name)


def same_split_runs(
    run: Path, config: dict[str, Any], metrics: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The sibling run directories trained on the same dataset and catalog as `run` (itself
    included), sweep variants first, keyed by directory name; and those left out, with why."""
    found, excluded = _same_split(run.parent, run, config, metrics)
    names = sorted(found, key=lambda n: (variant_order(n), n))
    return {n: found[n] for n in names}, excluded


def view_runs(
    run: Path, config: dict[str, Any], metrics: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The runs on compact store views (runs/views/<view>/, training/views.py) that share
    `run`'s split, keyed by view name, with their config.json under "config"; and those left
    out, with why."""
    found, excluded = _same_split(run.parent / VIEW_RUNS_DIR, run, config, metrics)
    for name, m in found.items():
        m["config"] = read_config(run.parent / VIEW_RUNS_DIR / name)
    return dict(sorted(found.items())), excluded


def _same_split(
    directory: Path, run: Path, config: dict[str, Any], metrics: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    found: dict[str, dict[str, Any]] = {}
    excluded: dict[str, str] = {}
    if not directory.is_dir():
        return found, excluded
    n_test = metrics.get("test", {}).get("overall", {}).get("n")
    for d in sorted(directory.iterdir()):
        if not d.is_dir() or not (d / METRICS_FILE).is_file():
            continue
        if d.resolve() == run.resolve():
            found[d.name] = metrics
            continue
        try:
            other = read_metrics(d)
        except PipelineError as exc:
            excluded[d.name] = str(exc)
            continue
        other_config = read_config(d)
        if other_config.get("dataset") != config.get("dataset"):
            excluded[d.name] = "trained on another dataset"
        elif other_config.get("n_items") != config.get("n_items"):
            excluded[d.name] = "another catalog (item count differs)"
        elif other.get("test", {}).get("overall", {}).get("n") != n_test:
            excluded[d.name] = "another test split"
        else:
            found[d.name] = other
    return found, excluded
