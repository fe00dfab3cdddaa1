"""The run directory, as every reader in pipelines sees it: the name of each file, and one reader
per file, so that a missing or broken file fails the same way wherever it is read.

    RUN/config.json          the settings the run was trained with (training/run.py)
        metrics.json         valid and test metrics (training, or `linkedout evaluate`)
        serving.json         the serving benchmark measured at training (serving/benchmark.py)
        model.pt  item_embeddings.npy  item_ids.parquet  gates.parquet  checkpoint.pt
        item_index.faiss  item_index.json   (recmodel/runfiles.py, recmodel/index.py)
        report.html  report.md  figures/*.png   (report/)
    RUNS/views/<view>/       runs of the main variant on compact store views (training/views.py)

A file the reader cannot do without is a PipelineError naming it ("not found", "is not valid
JSON", "is unreadable"); an optional one that is absent is None.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import PipelineError, one_line
from recmodel.index import IndexRecord, read_record
from recmodel.runfiles import (
    CHECKPOINT_FILE,
    EMBEDDINGS_FILE,
    GATES_FILE,
    INDEX_FILE,
    INDEX_RECORD_FILE,
    ITEM_IDS_FILE,
    MODEL_FILE,
    write_json,
)
from recmodel.runfiles import read_item_ids as _read_item_ids

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
SERVING_FILE = "serving.json"
REPORT_FILES = ("report.md", "report.html")
FIGURES_DIR = "figures"
VIEW_RUNS_DIR = "views"  # RUNS/views/<view>/: beside the variants' runs, not among them

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "EMBEDDINGS_FILE",
    "FIGURES_DIR",
    "GATES_FILE",
    "INDEX_FILE",
    "INDEX_RECORD_FILE",
    "ITEM_IDS_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "REPORT_FILES",
    "SERVING_FILE",
    "VIEW_RUNS_DIR",
    "read_config",
    "read_gates_table",
    "read_index_record",
    "read_item_ids",
    "read_json",
    "read_metrics",
    "read_run_config",
    "read_serving",
    "write_json",
]


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise PipelineError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def read_run_config(run: Path) -> dict[str, Any]:
    """config.json: what makes a directory a trained run."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise PipelineError(f"{run} is not a run directory (no {CONFIG_FILE}): train one first")
    config = read_json(path)
    if not isinstance(config, dict):
        raise PipelineError(f"{path} is not a run's config (a JSON object was expected)")
    return config


def read_config(run: Path) -> dict[str, Any]:
    """config.json of a sibling run, {} where it has none or it cannot be read: the report
    compares such a run by its metrics alone."""
    try:
        config = read_json(Path(run) / CONFIG_FILE)
    except PipelineError:
        return {}
    return config if isinstance(config, dict) else {}


def read_metrics(run: Path) -> dict[str, Any]:
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        raise PipelineError(f"{path} not found: train or evaluate the run first")
    return read_json(path)


def read_item_ids(run: Path) -> list[str]:
    """The run's catalog order (item_ids.parquet)."""
    try:
        return _read_item_ids(run)
    except (OSError, pa.ArrowException) as exc:  # pyarrow's messages do not name the file
        raise PipelineError(
            f"{Path(run) / ITEM_IDS_FILE} is unreadable: {one_line(exc, 200)}"
        ) from None


def read_serving(run: Path) -> dict[str, Any] | None:
    """serving.json, or None for a run trained before serving was recorded."""
    path = Path(run) / SERVING_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("query"), dict):
        raise PipelineError(f"{path} is not a serving record (no 'query' object)")
    return record


def read_gates_table(run: Path) -> pa.Table | None:
    """gates.parquet (a row per item with features: its gate weights), None without one."""
    path = Path(run) / GATES_FILE
    if not path.is_file():
        return None
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(f"{path} is unreadable: {one_line(exc, 200)}") from None


def read_index_record(run: Path) -> IndexRecord | None:
    """item_index.json, or None where no index was built."""
    path = Path(run) / INDEX_RECORD_FILE
    if not path.is_file():
        return None
    try:
        return read_record(path)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
