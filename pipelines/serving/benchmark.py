"""The serving benchmark, measured once where the vectors are made and recorded beside them:

    RUN/serving.json   {"measured_at", "machine", "threads",
                        "query":    {"p50_ms", "queries", "n_items", "dim", "bytes"},
                        "encoding": {"batch", "per_item_s", "single_s", "read_per_item_s"}
                                    or {"skipped": why}}

Training writes it after exporting item_embeddings.npy; the evaluation report only reads it, so
that a report is reproducible from stored files and never times anything itself."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import PipelineError
from pipelines.serving.runfiles import EMBEDDINGS_FILE, SERVING_FILE, read_item_ids, write_json
from recmodel.serving import Recommender


@dataclass
class ServingSummary:
    path: Path
    n_items: int
    dim: int
    bytes: int
    p50_ms: float


def serving_summary(run: Path, queries: int = 200, seed: int = 0) -> ServingSummary:
    """The run's precomputed item vectors and the measured latency of one query (a 10-item
    history -> top-10 over the whole catalog), the median of `queries` random histories."""
    run = Path(run)
    path = run / EMBEDDINGS_FILE
    if not path.is_file():
        raise PipelineError(f"{path} not found: train the run first")
    vectors = np.load(path, mmap_mode="r")
    items = read_item_ids(run)
    recommender = Recommender.load(run)
    rng = np.random.default_rng(seed)
    timings = []
    for _ in range(queries):
        history = [
            items[i] for i in rng.choice(len(items), size=min(10, len(items) - 1), replace=False)
        ]
        t0 = time.perf_counter()
        recommender.recommend(history, 10)
        timings.append(time.perf_counter() - t0)
    return ServingSummary(
        path,
        vectors.shape[0],
        vectors.shape[1],
        path.stat().st_size,
        float(np.median(timings)) * 1e3,
    )


def measure_item_encoding(run: Path, version: Path | None, batch: int = 64) -> dict[str, Any]:
    """Time the run's item encoder on `batch` items read from the store: ms per item in the
    batch, one item alone, and the store read per item."""
    import torch

    from featurizer.store import FeatureStore
    from featurizer.store.bank import PromptBank
    from recmodel.features import reduce_features
    from recmodel.model import build_model
    from recmodel.runfiles import load_model_file

    cfg, state = load_model_file(run)
    if not cfg.uses_features:
        what = "an ID-embedding lookup" if cfg.spec.encoder == "id" else "no item encoder"
        return {"skipped": f"variant {cfg.variant} has {what}"}
    if version is None:
        return {"skipped": "no feature store"}
    model = build_model(cfg)
    model.load_state_dict(state)
    model.eval()
    if cfg.n_prompts > 1:  # a prompt bank: every prompt's row of an item
        bank = PromptBank.open(version)
        held, rows = bank.held()
        index = dict(zip(held.to_pylist(), rows[:, 0].tolist(), strict=True))
        read_rows = bank.read_rows
    else:
        store = FeatureStore.open(version)
        index, read_rows = store.index(), store.read_rows
    pairs = [(i, index[item]) for i, item in enumerate(read_item_ids(run)) if item in index]
    pairs = pairs[:batch]
    if not pairs:
        return {"skipped": "no item of the catalog has features in the store"}
    rows = np.array([r for _, r in pairs], dtype=np.int64)
    t0 = time.perf_counter()
    block = read_rows(rows)
    read_s = time.perf_counter() - t0
    features = torch.from_numpy(np.ascontiguousarray(reduce_features(block, cfg.spec.view)))
    items = torch.tensor([i for i, _ in pairs])
    has = torch.ones(len(pairs), dtype=torch.bool)

    def timed(n: int, repeats: int) -> float:
        samples = []
        with torch.inference_mode():
            model.items(items[:n], features[:n], has[:n])  # warm-up
            for _ in range(repeats):
                t = time.perf_counter()
                model.items(items[:n], features[:n], has[:n])
                samples.append(time.perf_counter() - t)
        return float(np.median(samples))

    batch_s = timed(len(pairs), 5)
    single_s = timed(1, 15)
    return {
        "batch": len(pairs),
        "per_item_s": batch_s / len(pairs),
        "single_s": single_s,
        "read_per_item_s": read_s / len(pairs),
    }


def record_serving(
    run: Path, version: Path | None, queries: int = 100, recorded_as: Path | None = None
) -> dict[str, Any]:
    """Measure the run's serving costs now, on this machine, and write RUN/serving.json; the
    vectors' path is recorded under `recorded_as`, where the run will live (a staged run is
    measured before it moves there)."""
    import torch

    from featurizer.store import StoreError

    run = Path(run)
    query = asdict(serving_summary(run, queries=queries))
    query["path"] = str(Path(recorded_as or run) / Path(query["path"]).name)
    query["queries"] = queries
    try:
        encoding = measure_item_encoding(run, version)
    except (OSError, KeyError, ValueError, RuntimeError, StoreError) as exc:
        encoding = {"skipped": f"could not measure: {exc}"}
    record = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} logical cores",
        "threads": torch.get_num_threads(),
        "query": query,
        "encoding": encoding,
    }
    write_json(run / SERVING_FILE, record)
    return record


def summary_from_record(record: dict[str, Any]) -> ServingSummary:
    q = record["query"]
    return ServingSummary(Path(q["path"]), q["n_items"], q["dim"], q["bytes"], q["p50_ms"])
