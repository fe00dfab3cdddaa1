"""Queries over a finished run directory: its metrics recomputed, recommendations for a watch
history or for a file of users (streamed in batches), through the run's item index where one was
built (serving/index.py)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.dataset.ingest import read_interactions
from pipelines.errors import PipelineError, one_line, user_facing
from pipelines.files import atomic_write
from pipelines.serving.runfiles import (
    EMBEDDINGS_FILE,
    INDEX_RECORD_FILE,
    METRICS_FILE,
    MODEL_FILE,
    read_item_ids,
    read_json,
    read_run_config,
    write_json,
)
from recmodel.data import build_splits
from recmodel.index import ItemIndex, StaleIndexError
from recmodel.serving import Recommender, UnknownItemsError, evaluate_recommender


def metric_lines(split: dict[str, Any]) -> list[str]:
    """One split of metrics.json, a line per target group."""
    lines = []
    for group in ("overall", "cold_start", "head", "mid", "tail"):
        m = split[group]
        if not m["n"]:
            lines.append(f"  {group:<10} n=0")
            continue
        lines.append(
            f"  {group:<10} n={m['n']:<6} HR@10 {m['hr@10']:.4f}  HR@20 {m['hr@20']:.4f}  "
            f"NDCG@10 {m['ndcg@10']:.4f}  NDCG@20 {m['ndcg@20']:.4f}"
        )
    return lines


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


@user_facing
def evaluate_run(run: Path) -> EvaluationResult:
    """Recompute metrics.json of a run from its saved model and item vectors (keeping the
    training section), on the interactions of the dataset it was trained on."""
    run = Path(run)
    config = read_run_config(run)
    table = read_interactions(config["dataset"])
    items = read_item_ids(run)
    try:
        splits = build_splits(table, items, int(config["model"]["max_history"]))
    except ValueError as exc:
        raise PipelineError(f"{config['dataset']} changed since {run} was trained: {exc}") from None
    metrics = evaluate_recommender(Recommender.load(run), splits)
    previous = run / METRICS_FILE
    if previous.is_file():
        recorded = read_json(previous)
        metrics["training"] = recorded.get("training") if isinstance(recorded, dict) else None
    metrics["variant"] = config["variant"]
    write_json(previous, metrics)
    return EvaluationResult(run_dir=run, variant=config["variant"], metrics=metrics)


@functools.lru_cache(maxsize=4)
def _recommender(run: str, mtimes: tuple[int, ...]) -> Recommender:
    return Recommender.load(run)


@user_facing
def load_recommender(run: Path) -> Recommender:
    """RUN loaded for queries, with its item index where one exists (cached while model.pt,
    the vectors and the index are unchanged); PipelineError (one line) for a run that cannot
    serve, a stale index included."""
    run = Path(run)
    read_run_config(run)
    model_file = run / MODEL_FILE
    if not model_file.is_file():
        raise PipelineError(f"{run} has no model.pt: its training did not finish")
    stamps = tuple(
        p.stat().st_mtime_ns if p.is_file() else 0
        for p in (model_file, run / EMBEDDINGS_FILE, run / INDEX_RECORD_FILE)
    )
    try:
        return _recommender(str(run.resolve()), stamps)
    except StaleIndexError:
        raise  # it names the index file; user_facing makes it a PipelineError
    except ValueError as exc:
        raise PipelineError(f"{run}: {exc}") from None


@user_facing
def recommend(run: Path, history: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
    """Top-k items for a watch history, history excluded; unknown items are one error."""
    if k < 1:
        raise PipelineError(f"k must be >= 1, got {k}")
    recommender = load_recommender(run)
    try:
        return recommender.recommend(list(history), k)
    except UnknownItemsError:
        raise  # it names the items; user_facing makes it a PipelineError
    except ValueError as exc:
        raise PipelineError(f"{run}: {exc}") from None


@dataclass
class BatchResult:
    out: Path
    users: int
    rows: int
    seconds: float
    searcher: str

    def describe(self) -> str:
        rate = self.users / max(self.seconds, 1e-9)
        return (
            f"scored {self.users:,} users in {self.seconds:.1f} s ({rate:,.0f} users/s) "
            f"through {self.searcher}: {self.rows:,} rows in {self.out}"
        )


OUT_SCHEMA = pa.schema(
    [("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()), ("score", pa.float32())]
)


@user_facing
def recommend_users(
    run: Path,
    users: Path,
    out: Path,
    k: int = 10,
    batch_size: int = 4096,
    say: Callable[[str], None] | None = None,
) -> BatchResult:
    """Top-k for every user of `users` (Parquet with columns user and history, a list of
    items oldest first, or JSON Lines {"user": ..., "history": [...]}), history excluded,
    into `out` (Parquet: user, rank, item, score). Users are read, scored and written
    batch_size at a time, so memory holds one batch whatever the file's size."""
    if k < 1:
        raise PipelineError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise PipelineError(f"batch size must be >= 1, got {batch_size}")
    users, out = Path(users), Path(out)
    if not users.is_file():
        raise PipelineError(f"{users} not found")
    recommender = load_recommender(run)
    if isinstance(recommender.searcher, ItemIndex):
        searcher = f"the item index ({recommender.searcher.spec.factory})"
    else:
        searcher = "an exact scan (no item index: `linkedout index RUN` builds one)"
    say = say or (lambda line: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    counts = {"users": 0, "rows": 0}

    def score_into(tmp: Path) -> None:  # the whole file is `out`, or nothing is
        last = start
        with pq.ParquetWriter(tmp, OUT_SCHEMA) as writer:
            for where, ids, histories in _user_batches(users, batch_size):
                rows = []
                for place, history in zip(where, histories, strict=True):
                    try:
                        rows.append(recommender.indices(history))
                    except UnknownItemsError as exc:
                        raise PipelineError(f"{users}: {place}: {exc}") from None
                try:
                    found = recommender.recommend_rows(rows, k)
                except ValueError as exc:
                    raise PipelineError(f"{users}: {exc}") from None
                table = _rows_table(ids, found)
                writer.write_table(table)
                counts["users"] += len(ids)
                counts["rows"] += table.num_rows
                now = time.perf_counter()
                if now - last >= 10:
                    rate = counts["users"] / (now - start)
                    say(f"scored {counts['users']:,} users ({rate:,.0f} users/s)")
                    last = now

    atomic_write(out, score_into)
    seconds = time.perf_counter() - start
    return BatchResult(out, counts["users"], counts["rows"], seconds, searcher)


def _rows_table(users: list[str], found: list[list[tuple[str, float]]]) -> pa.Table:
    user_col, rank_col, item_col, score_col = [], [], [], []
    for user, top in zip(users, found, strict=True):
        for rank, (item, score) in enumerate(top, start=1):
            user_col.append(user)
            rank_col.append(rank)
            item_col.append(item)
            score_col.append(score)
    return pa.table([user_col, rank_col, item_col, score_col], schema=OUT_SCHEMA)


def _user_batches(
    path: Path, batch_size: int
) -> Iterator[tuple[list[str], list[str], list[list[str]]]]:
    """(where each user is in the file, user ids, histories), batch_size users at a time."""
    if path.suffix == ".parquet":
        try:
            source = pq.ParquetFile(path)
            missing = {"user", "history"} - set(source.schema_arrow.names)
            if missing:
                raise PipelineError(f"{path} has no column {', '.join(sorted(missing))}")
            row = 0
            for batch in source.iter_batches(batch_size, columns=["user", "history"]):
                ids = [str(u) for u in batch.column("user").to_pylist()]
                histories = [list(h or []) for h in batch.column("history").to_pylist()]
                yield [f"row {row + i}" for i in range(len(ids))], ids, histories
                row += len(ids)
        except (OSError, pa.ArrowException) as exc:
            raise PipelineError(f"{path} is unreadable: {one_line(exc, 200)}") from None
        return
    if path.suffix != ".jsonl":
        raise PipelineError(f"{path}: users are read from .parquet or .jsonl files")
    where: list[str] = []
    ids: list[str] = []
    histories: list[list[str]] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                user, history = str(record["user"]), [str(i) for i in record["history"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise PipelineError(
                    f'{path}:{line_no}: not a user record {{"user": ..., "history": [...]}} '
                    f"({type(exc).__name__}: {exc})"
                ) from None
            where.append(f"line {line_no}")
            ids.append(user)
            histories.append(history)
            if len(ids) == batch_size:
                yield where, ids, histories
                where, ids, histories = [], [], []
    if ids:
        yield where, ids, histories
