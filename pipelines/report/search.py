"""A hyperparameter search directory (`linkedout tune --out OUT`) as the report reads it: the
files named here are the ones pipelines/tuning writes. A run whose settings came from a
search's best.yaml (config.json's `settings_from`) shows that search: every trial's validation
NDCG@10 over the epochs it trained, and the table of trials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

MARKER = "linkedout-tune.json"
BEST_CONFIG = "best.yaml"
TRIALS_TABLE = "trials"  # .csv and .parquet
EPOCHS_TABLE = "trial_epochs.parquet"
VALID = "valid_ndcg@10"  # a trial's best validation NDCG@10; per epoch in EPOCHS_TABLE


@dataclass
class SearchRecord:
    directory: Path
    trials: pd.DataFrame  # one row per trial
    epochs: pd.DataFrame  # trial, epoch, valid_ndcg@10
    chosen: str | None  # the trial best.yaml was written from
    space: dict[str, Any]  # name -> {distribution: values}


def search_of(config: dict[str, Any]) -> Path | None:
    """The search directory a run's settings file came from, if it is a search's best.yaml."""
    source = config.get("settings_from")
    if not source or source == "defaults":
        return None
    path = Path(source)
    if path.name != BEST_CONFIG or not (path.parent / MARKER).is_file():
        return None
    return path.parent


def read_search(directory: Path) -> SearchRecord:
    """The search's tables (OSError, ValueError when they cannot be read)."""
    import json

    trials = pd.read_parquet(directory / f"{TRIALS_TABLE}.parquet")
    epochs = pd.read_parquet(directory / EPOCHS_TABLE)
    chosen = None
    best = directory / BEST_CONFIG
    if best.is_file():
        first = best.read_text().splitlines()[0]
        if ": trial " in first:
            chosen = first.split(": trial ", 1)[1].split(",", 1)[0]
    marker = json.loads((directory / MARKER).read_text())
    return SearchRecord(directory, trials, epochs, chosen, marker["identity"].get("space", {}))
