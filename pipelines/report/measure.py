"""What the report measures or looks up when it is written: the store version, extraction
timing, item-encoding speed, dataset statistics and provenance."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.errors import PipelineError
from pipelines.report.layout import REPO_ROOT

# =============================================================================================
# Store, extractor, efficiency


def store_version(config: dict[str, Any]) -> tuple[Any, str]:
    """The store version the run was trained on (a featurizer.store Location), or None and why
    not."""
    from featurizer.store import StoreError, location

    store = config.get("store") or {}
    path, fingerprint = store.get("path"), store.get("fingerprint")
    if not path or not fingerprint:
        return None, "the run was trained without a feature store"
    try:
        version = location(path) / fingerprint
        if not (version / "extractor.json").exists():
            return None, f"store version {version} not found"
    except StoreError as exc:
        return None, str(exc)
    return version, ""


def open_store(version: Any) -> Any:
    from featurizer.store import FeatureStore

    return FeatureStore.open(version)


def in_a_bank(version: Any) -> bool:
    """Whether `version` is a prompt bank, or one prompt's version of a bank beside it."""
    from featurizer.store import list_versions
    from featurizer.store.bank import bank_extractor

    if bank_extractor(version) is not None:
        return True
    for name in list_versions(version.parent):
        bank = bank_extractor(version.parent / name)
        if bank is not None and version.name in bank.get("members", []):
            return True
    return False


def random_weights_reason(
    extractor: dict[str, Any], checkpoints: Sequence[Path] | None = None
) -> str | None:
    """Why the extractor's features carry no world knowledge, or None. Either extractor.json
    records `random_weights`, or its model identity (featurizer.config.model_identity: a hash
    of a local checkpoint's config and weight files) is that of a local checkpoint whose
    README says its weights are random: by default the tiny checkpoints of the demo and
    `tiny-<family>` presets (data/tiny-model, data/tiny-qwen3_vl..., from the working directory
    or the repository)."""
    if extractor.get("random_weights"):
        return (
            "extractor.json records `random_weights: true` (the model was built from its "
            "architecture with random weights)"
        )
    from featurizer.config import PRESET_DIR, load_preset, model_identity

    model = str(extractor.get("model", ""))
    if checkpoints is None:
        checkpoints = []
        for preset in ["demo", *sorted(p.stem for p in PRESET_DIR.glob("tiny-*.json"))]:
            try:
                tiny = Path(load_preset(preset).model)
            except (OSError, ValueError):
                continue
            checkpoints += [tiny] if tiny.is_absolute() else [Path.cwd() / tiny, REPO_ROOT / tiny]
    for candidate in dict.fromkeys(Path(c).resolve() for c in checkpoints):
        readme = candidate / "README.md"
        if not readme.is_file() or model_identity(str(candidate)) != model:
            continue
        if re.search(
            r"random(ly initiali[sz]ed)?\W+weights|weights\W+\**random",
            readme.read_text(errors="replace"),
            re.I,
        ):
            return (
                f"the extractor's model (`{model}`) is the checkpoint at `{candidate}`, whose "
                "README says its weights are random"
            )
    return None


def read_extraction_runs(store: Any) -> list[dict[str, Any]]:
    """The timing records of the runs that extracted into a store version (a FeatureStore);
    empty when none was recorded or they cannot be read."""
    from featurizer.store import StoreError

    try:
        runs = store.extraction_runs()
    except (StoreError, ValueError, OSError):
        return []
    return [run for run in runs if isinstance(run, dict)]


def commit_interval_estimate(store: Any) -> float | None:
    """Median seconds between consecutive commits in index.parquet: the steady-state
    extraction time per video (start-up excluded; gaps between runs ignored by the median)."""
    column = store.index_view.entries(["extracted_at"]).column("extracted_at").drop_null()
    if len(column) < 3:
        return None
    times = np.sort(column.cast(pa.int64()).to_numpy()) / 1e6
    return float(np.median(np.diff(times)))


# =============================================================================================
# Dataset statistics


def dataset_stats(
    config: dict[str, Any], metrics: dict[str, Any], run: Path, store: Any
) -> dict[str, Any]:
    from pipelines.ingest import read_interactions

    dataset = Path(config.get("dataset", ""))
    stats: dict[str, Any] = {"path": dataset}
    table = read_interactions(dataset)
    users = table.column("user").to_numpy(zero_copy_only=False)
    _, lengths = np.unique(users, return_counts=True)
    splits = table.column("split").to_numpy(zero_copy_only=False)
    stats["users"] = len(lengths)
    stats["interactions"] = table.num_rows
    stats["interaction_items"] = len(set(table.column("item").to_pylist()))
    for name in ("train", "valid", "test"):
        stats[name] = int((splits == name).sum())
    stats["seq_mean"] = float(lengths.mean()) if len(lengths) else 0.0
    stats["seq_median"] = float(np.median(lengths)) if len(lengths) else 0.0
    stats["seq_min"] = int(lengths.min()) if len(lengths) else 0
    stats["seq_max"] = int(lengths.max()) if len(lengths) else 0
    max_history = int(config.get("model", {}).get("max_history", 10))
    stats["test_history_mean"] = float(np.minimum(lengths - 1, max_history).mean())
    stats["max_history"] = max_history
    try:
        ids = pq.read_table(run / "item_ids.parquet")
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(f"{run / 'item_ids.parquet'} is unreadable: {exc}") from None
    stats["catalog"] = ids.num_rows
    stats["cold_items"] = int((ids.column("train_count").to_numpy() == 0).sum())
    test = metrics.get("test", {})
    n_test = test.get("overall", {}).get("n") or 0
    stats["cold_targets"] = test.get("cold_start", {}).get("n") or 0
    stats["cold_share"] = stats["cold_targets"] / n_test if n_test else 0.0
    stats["terciles"] = test.get("popularity_thresholds")
    videos_dir = dataset / "videos"
    video_items = (
        {p.name[:-4] for p in videos_dir.iterdir() if p.name.endswith(".mp4")}
        if videos_dir.is_dir()
        else set()
    )
    catalog_items = set(ids.column("item").to_pylist())
    stats["with_video"] = len(catalog_items & video_items)
    stats["without_video"] = len(catalog_items - video_items)
    stats["synthetic"] = (dataset / "topics.csv").is_file()
    if store is not None:  # counted in columns: a store of millions is no Python set
        failures = store.failures_table()
        stats["failures"] = failures.num_rows
        shown = failures.slice(0, 10)
        stats["failure_rows"] = list(
            zip(
                shown.column("item").to_pylist(),
                shown.column("stage").to_pylist(),
                shown.column("error").to_pylist(),
                strict=True,
            )
        )
        stats["with_features"] = int((store.rows_of(ids.column("item")) >= 0).sum())
        interacted = pc.unique(table.column("item").cast(pa.string()))
        committed, _ = store.index_view.counts()
        stats["store_only"] = committed - int((store.rows_of(interacted) >= 0).sum())
    return stats


# =============================================================================================
# Provenance


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_commit() -> str:
    """`git rev-parse HEAD` of the code, "+ uncommitted changes" when the tree is dirty;
    "unknown" outside a git checkout."""
    sha = _git("rev-parse", "HEAD")
    if not sha:
        return "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{sha} (+ uncommitted changes)" if dirty else sha
