"""What a search leaves: the table of every trial (OUT/trials.csv and .parquet), each trial's
validation NDCG@10 per epoch (OUT/trial_epochs.parquet: what the report draws), the chosen
trial's settings as a config `train --config` takes (OUT/best.yaml), and the printed summary.

The choice reads the validation figure only: the trial with the highest best validation
NDCG@10 among those that reported one (finished, or stopped by the scheduler), the earlier
trial on a tie. The test figures are in the table for the reader, after the choice, and are
never read by it."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from pipelines.report.search import VALID
from pipelines.tuning.trial import EPOCH, METRIC, error_line

FINISHED, STOPPED, FAILED, UNFINISHED = "finished", "stopped", "failed", "unfinished"


def trial_tables(
    results: Any, baseline: Mapping[str, Any], params: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per trial, one row per trial and epoch) from Ray Tune's ResultGrid, with a
    column for each of `params` (empty where a trial never started, e.g. a cluster that could
    not run its actor). A trial whose settings are `baseline`'s (the base config: the defaults
    unless --config) is marked."""
    rows, epochs = [], []
    for result in results:
        config = dict(result.config or {}) or _params_file(result.path)
        last = dict(result.metrics or {})
        trial = PurePosixPath(result.path).name  # trial_dirname: the trial's id (search.py)
        history = result.metrics_dataframe
        if history is not None and EPOCH in history:
            per_epoch = history.dropna(subset=["valid_ndcg10"]).drop_duplicates(EPOCH, keep="first")
            for epoch, value in zip(per_epoch[EPOCH], per_epoch["valid_ndcg10"], strict=True):
                epochs.append({"trial": trial, "epoch": int(epoch), VALID: float(value)})
        if result.error is not None:
            status = FAILED
        elif last.get("finished"):
            status = FINISHED
        elif METRIC in last:
            status = STOPPED
        else:
            status = UNFINISHED
        row: dict[str, Any] = {
            "trial": trial,
            "status": status,
            "baseline": all(config.get(k) == v for k, v in baseline.items()),
            **{name: math.nan for name in params},
            **config,
            "epochs": int(last.get(EPOCH, 0) or 0),
            "best_epoch": int(last.get("best_epoch", 0) or 0),
            VALID: float(last[METRIC]) if METRIC in last else math.nan,
            "test_ndcg@10": float(last.get("test_ndcg10", math.nan)),
            "test_hr@10": float(last.get("test_hr10", math.nan)),
            "seconds": float(last.get("elapsed_s", math.nan)),
            "error": error_line(result.error),
        }
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("trial", kind="stable").reset_index(drop=True)
    columns = ["trial", "epoch", VALID]
    return table, pd.DataFrame(epochs, columns=columns).sort_values(["trial", "epoch"])


def _params_file(trial_dir: str) -> dict[str, Any]:
    """A trial's settings as Tune wrote them when it started (a restored search's failed
    trials have no result to carry them)."""
    import json

    try:
        return json.loads((Path(trial_dir) / "params.json").read_text())
    except (OSError, ValueError):
        return {}


def choose_best(table: pd.DataFrame) -> pd.Series | None:
    """The row of the trial with the highest validation figure (None: no trial reported one).
    Reads the status and the validation column only."""
    candidates = table[table["status"].isin([FINISHED, STOPPED]) & table[VALID].notna()]
    if candidates.empty:
        return None
    return candidates.loc[candidates[VALID].idxmax()]  # idxmax: the first of equal maxima


def best_config_yaml(
    base: Mapping[str, Any],
    base_model: Mapping[str, Any],
    best: pd.Series,
    params: list[str],
    source: str,
) -> str:
    """A training config (defaults < base file < fixed flags < the trial's values) with a
    header saying where it came from."""
    import yaml

    values = dict(base)
    model = dict(base_model)
    for name in params:
        value = best[name]
        value = value.item() if hasattr(value, "item") else value
        if name.startswith("model."):
            model[name.split(".", 1)[1]] = value
        else:
            values[name] = value
    if model:
        values["model"] = model
    header = (
        f"# The best trial of `linkedout tune` ({source}): trial {best['trial']}, "
        f"validation NDCG@10 {best[VALID]:.4f} at epoch {best['best_epoch'] or best['epochs']}.\n"
        "# Chosen on the validation split only. Train it with: linkedout train --config "
        "THIS_FILE ...\n"
    )
    return header + yaml.safe_dump(values, sort_keys=False)


def summary_lines(table: pd.DataFrame, params: list[str], best: pd.Series | None) -> list[str]:
    """The printed summary: every trial, best validation first; then the choice."""
    shown = table.sort_values(VALID, ascending=False, na_position="last", kind="stable")
    columns = ["trial", "status", *params, "epochs", VALID, "test_ndcg@10"]
    out = io.StringIO()
    shown[columns].assign(
        baseline=shown["baseline"].map({True: "<- base config", False: ""})
    ).to_string(out, index=False, float_format=lambda v: f"{v:.4g}")
    lines = out.getvalue().splitlines()
    counts = table["status"].value_counts()
    lines.append(
        f"{len(table)} trials: "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in (FINISHED, STOPPED, FAILED, UNFINISHED))
    )
    if best is not None:
        lines.append(
            f"best: trial {best['trial']}, validation NDCG@10 {best[VALID]:.4f} "
            f"(test NDCG@10 {best['test_ndcg@10']:.4f}, reported, not used to choose)"
        )
    return lines


def trials_markdown(table: pd.DataFrame, params: list[str]) -> str:
    """The trials as a Markdown table, best validation first (Dagster's metadata)."""
    shown = table.sort_values(VALID, ascending=False, na_position="last", kind="stable")
    columns = ["trial", "status", *params, "epochs", VALID, "test_ndcg@10"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in shown.iterrows():
        cells = [
            "–"
            if isinstance(row[c], float) and math.isnan(row[c])
            else f"{row[c]:.4g}"
            if isinstance(row[c], float)
            else str(row[c])
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
