"""What a report reads from the feature store: the version a run was trained on, whether it
belongs to a prompt bank, whether its model had random weights, and the extraction runs and
commit times its index records. Nothing here extracts or times anything."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.report.layout import REPO_ROOT


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
