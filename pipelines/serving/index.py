"""A run's item index: built over item_embeddings.npy, written beside it, measured once.

    RUN/item_index.faiss   the faiss index (recmodel.index chooses its kind by catalog size)
    RUN/item_index.json    its record: kind, factory string, search parameters, the xxh3-128
                           checksums of the vectors it was built from and of the index file,
                           build time, and its evaluation on held-out queries: recall@10 and
                           the share of queries whose top-10 equals the exact scan's, p50/p99
                           latency of the index and of the exact scan (one thread, one query
                           at a time), where and when measured

An index is rebuilt only when the vectors' checksum (the Dagster data version of
item_embeddings_<variant>) differs from the record's, the index file's checksum does not verify,
or the settings now choose another index. Queries are user vectors of random catalog
histories through the run's ranker: one half tunes the search parameters, the other is held out
for the recall reported. The report only reads the record."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.errors import PipelineError
from pipelines.serving.runfiles import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    INDEX_RECORD_FILE,
    read_index_record,
    write_json,
)
from recmodel.data import PAD
from recmodel.index import (
    ExactSearch,
    IndexRecord,
    IndexSettings,
    Searcher,
    build,
    choose_spec,
    file_checksum,
    kth_scores,
    recall_at_k,
    tune,
    write_index,
)
from recmodel.ranker import history_user_vectors
from recmodel.serving import load_ranker, one_thread

K = 10
EXACT_TIMING_SECONDS = 10.0  # the exact scan is timed on fewer queries where it is slow


@dataclass
class IndexResult:
    run: Path
    built: bool  # False: the index on disk already matched the vectors
    record: IndexRecord
    reason: str  # why it was built, or why not

    def describe(self) -> str:
        r, e = self.record, self.record.evaluation
        verb = "built" if self.built else "kept"
        return "\n".join(
            [
                f"{verb} {r.spec.kind} index {r.spec.factory} over {r.spec.n_items:,} items of "
                f"{self.run} ({self.reason}): {r.index_bytes:,} bytes, search {r.search or '-'}",
                f"  recall@{K} {e['recall_at_10']:.4f} on {e['queries']} held-out queries; "
                f"same top-{K} as the exact scan on {e['same_top10']:.0%} of them",
                f"  one query, one thread: index p50 {e['index_p50_ms']:.3f} ms, p99 "
                f"{e['index_p99_ms']:.3f} ms; exact scan p50 {e['exact_p50_ms']:.3f} ms, p99 "
                f"{e['exact_p99_ms']:.3f} ms",
            ]
        )


def vectors_checksum(run: Path) -> str:
    """xxh3-128 of RUN/item_embeddings.npy: the vectors' data version."""
    path = Path(run) / EMBEDDINGS_FILE
    if not path.is_file():
        raise PipelineError(f"{path} not found: train the run first")
    return file_checksum(path)


def index_run(
    run: Path,
    settings: IndexSettings | None = None,
    force: bool = False,
    queries: int = 200,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> IndexResult:
    """Build RUN's item index unless the one on disk was built from the same vectors with the
    index the settings choose now; evaluate and record it. say() hears one line per stage."""
    run = Path(run)
    settings = settings or IndexSettings()
    say = say or (lambda line: None)
    vectors = _vectors(run)
    n, d = vectors.shape
    t0 = time.perf_counter()
    checksum = vectors_checksum(run)
    seconds = time.perf_counter() - t0
    say(
        f"checksum {vectors.nbytes / 1e6:,.1f} MB of vectors in {seconds:.2f} s "
        f"({vectors.nbytes / 1e6 / max(seconds, 1e-9):,.0f} MB/s)"
    )
    try:
        spec = choose_spec(n, d, settings)
    except ValueError as exc:
        raise PipelineError(f"{run / EMBEDDINGS_FILE}: {exc}") from None
    previous = read_index_record(run)
    reason = _stale_reason(run, previous, checksum, spec) if not force else "forced"
    if reason is None:
        assert previous is not None
        say(f"kept {previous.spec.factory}: built from these vectors ({checksum[:12]})")
        return IndexResult(run, False, previous, f"built from these vectors, {checksum[:12]}")

    say(f"building {spec.kind} index {spec.factory} over {n:,} items ({reason})")

    def stage(name: str, rows: int, secs: float) -> None:
        say(f"{name}: {rows:,} vectors in {secs:.1f} s ({rows / max(secs, 1e-9):,.0f}/s)")

    t0 = time.perf_counter()
    index = build(vectors, spec, settings, seed=seed, on_stage=stage)
    build_seconds = time.perf_counter() - t0

    exact = ExactSearch(vectors)
    tuning, held_out = np.array_split(_queries(run, vectors, 2 * queries, seed), 2)  # (Q, d)
    recall = tune(index, vectors, tuning, kth_scores(exact, tuning, K), settings.target_recall, K)
    say(f"tuned search {index.search_params or '-'}: recall@{K} {recall:.4f} on tuning queries")
    evaluation = evaluate(index, exact, vectors, held_out)
    say(
        f"evaluated on {len(held_out)} held-out queries: recall@{K} "
        f"{evaluation['recall_at_10']:.4f}, p50 {evaluation['index_p50_ms']:.3f} ms "
        f"(exact scan {evaluation['exact_p50_ms']:.3f} ms)"
    )

    index_checksum, index_bytes = write_index(index, run / INDEX_FILE)
    record = IndexRecord(
        spec=spec,
        search=index.search_params,
        vectors_file=EMBEDDINGS_FILE,
        vectors_checksum=checksum,
        index_file=INDEX_FILE,
        index_checksum=index_checksum,
        index_bytes=index_bytes,
        build_seconds=build_seconds,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        settings=asdict(settings),
        evaluation=evaluation,
    )
    write_json(run / INDEX_RECORD_FILE, record.to_json())
    return IndexResult(run, True, record, reason)


def evaluate(
    index: Searcher, exact: ExactSearch, vectors: np.ndarray, queries: np.ndarray
) -> dict[str, Any]:
    """Recall@10 of `index` against `exact` on queries (Q, d), the share of queries with the
    same top-10 rows, and both searches' latency, one query at a time on one thread."""
    exact_scores, exact_rows = exact.search(queries, K)
    _, rows = index.search(queries, K)
    same = float(
        np.mean([set(a) == set(b) for a, b in zip(rows.tolist(), exact_rows.tolist(), strict=True)])
    )
    index_ms = _latencies(index, queries, float("inf"))
    exact_ms = _latencies(exact, queries, EXACT_TIMING_SECONDS)
    return {
        "k": K,
        "queries": len(queries),
        "recall_at_10": recall_at_k(vectors, queries, rows, exact_scores[:, -1]),
        "same_top10": same,
        "index_p50_ms": float(np.percentile(index_ms, 50)),
        "index_p99_ms": float(np.percentile(index_ms, 99)),
        "exact_p50_ms": float(np.percentile(exact_ms, 50)),
        "exact_p99_ms": float(np.percentile(exact_ms, 99)),
        "exact_timed_queries": len(exact_ms),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} logical cores",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _latencies(searcher: Searcher, queries: np.ndarray, budget_s: float) -> np.ndarray:
    """Milliseconds per query, one at a time on one thread, after a few untimed warm-ups;
    stops early (at 5 queries or more) once budget_s is spent."""
    out = []
    with one_thread():
        for q in queries[:3]:
            searcher.search(q[None], K)
        start = time.perf_counter()
        for q in queries:
            t0 = time.perf_counter()
            searcher.search(q[None], K)
            out.append((time.perf_counter() - t0) * 1e3)
            if len(out) >= 5 and time.perf_counter() - start > budget_s:
                break
    return np.array(out)


def _vectors(run: Path) -> np.ndarray:
    """RUN's item vectors, memory-mapped (copy-on-write: writable for torch, never written):
    the build reads them a chunk at a time."""
    path = run / EMBEDDINGS_FILE
    if not path.is_file():
        raise PipelineError(f"{path} not found: train the run first")
    try:
        vectors = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path} is not a .npy array: {exc}") from None
    if vectors.ndim != 2 or vectors.dtype != np.float32 or not len(vectors):
        raise PipelineError(
            f"{path} holds {vectors.dtype} {vectors.shape}, not (items, dim) float32 vectors"
        )
    return vectors


def _queries(run: Path, vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n user vectors (n, d) of random histories (up to 10 catalog items each) through the
    run's ranker: what a query searches with (all ones for popularity, which has none)."""
    cfg, ranker = load_ranker(run)
    if ranker is None:
        return np.ones((n, vectors.shape[1]), dtype=np.float32)
    n_items, T = len(vectors), cfg.max_history
    rng = np.random.default_rng(seed)
    length = min(10, T, n_items)
    history = np.stack([rng.choice(n_items, length, replace=False) for _ in range(n)])
    if length < T:  # left-padded, as the ranker reads histories
        history = np.concatenate([np.full((n, T - length), PAD), history], axis=1)
    users = history_user_vectors(ranker, torch.from_numpy(vectors), history)
    return np.ascontiguousarray(users.numpy(), dtype=np.float32)


def _stale_reason(run: Path, previous: IndexRecord | None, checksum: str, spec: Any) -> str | None:
    """Why the index on disk cannot serve these vectors, or None when it can."""
    if previous is None:
        return "no index yet"
    if previous.vectors_checksum != checksum:
        return "the vectors changed"
    if previous.spec.factory != spec.factory:
        return f"the settings now choose {spec.factory}, not {previous.spec.factory}"
    index_path = run / previous.index_file
    if not index_path.is_file():
        return f"{index_path.name} is missing"
    if file_checksum(index_path) != previous.index_checksum:
        return f"{index_path.name} does not match its record"
    return None
