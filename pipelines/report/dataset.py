"""The dataset statistics of a report: the interactions and split, the catalog, cold-start and
long-tail targets, videos, and what the store holds of them (counted in columns: a store of
millions is no Python set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.dataset.ingest import read_interactions
from pipelines.dataset.location import dataset_location, video_pages
from pipelines.errors import PipelineError, one_line
from pipelines.serving.runfiles import ITEM_IDS_FILE


def dataset_stats(
    config: dict[str, Any], metrics: dict[str, Any], run: Path, store: Any
) -> dict[str, Any]:

    dataset = dataset_location(config.get("dataset", ""))
    stats: dict[str, Any] = {"path": dataset.url}
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
        ids = pq.read_table(run / ITEM_IDS_FILE)
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(f"{run / ITEM_IDS_FILE} is unreadable: {one_line(exc, 200)}") from None
    stats["catalog"] = ids.num_rows
    stats["cold_items"] = int((ids.column("train_count").to_numpy() == 0).sum())
    test = metrics.get("test", {})
    n_test = test.get("overall", {}).get("n") or 0
    stats["cold_targets"] = test.get("cold_start", {}).get("n") or 0
    stats["cold_share"] = stats["cold_targets"] / n_test if n_test else 0.0
    stats["terciles"] = test.get("popularity_thresholds")
    catalog_items = ids.column("item").combine_chunks()
    with_video = np.zeros(len(catalog_items), dtype=bool)
    for page in video_pages(dataset):  # a page at a time: a bucket of millions is no set
        with_video |= pc.is_in(catalog_items, value_set=page.column("item")).to_numpy(
            zero_copy_only=False
        )
    stats["with_video"] = int(with_video.sum())
    stats["without_video"] = len(catalog_items) - stats["with_video"]
    stats["synthetic"] = (dataset / "topics.csv").exists()
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
