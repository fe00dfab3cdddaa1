"""Retrieval at catalog sizes, measured side by side in this one run (ann-benchmarks' protocol:
one query at a time on one thread, recall@10 against the exact scan):

- for each size, synthetic clustered item vectors of the encoder's width d_z (ModelConfig's
  d_model): 1,024 Gaussian centres, each item a centre plus unit Gaussian noise (clusters
  overlap: the noise is as wide as the spread of the centres), held-out queries drawn the same
  way; the vectors are written to a .npy file a chunk at a time and read through a memory map,
  as a run's item_embeddings.npy is;
- the index recmodel.index chooses for that size under the memory budget (exact below
  exact_max_items, HNSW up to hnsw_max_items, IVF over quantized codes beyond), built with
  every core, its search parameters tuned to the target recall on one half of the queries;
- on the other half: recall@10, p50 and p99 of the index, build time, index bytes, and the
  exact scan's p50 and p99 (faiss's blocked inner products over the same memory map; timed on
  fewer queries where one takes long), with the peak resident memory so far.

Targets (issue 26): at 1M recall@10 >= 0.95 and p50 <= 1 ms; at 10M recall@10 >= 0.9 and
p50 <= 2 ms with peak RSS well under the machine's memory. Everything it writes is deleted.

    python bench/retrieval.py [--sizes 100000,1000000,10000000] [--queries 200]
                              [--memory-budget 1GiB] [--dir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {1_000_000: (0.95, 1.0), 10_000_000: (0.90, 2.0)}  # recall@10 >=, p50 ms <=
CLUSTERS = 1024
CHUNK = 1 << 20


def centres(d: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((CLUSTERS, d), dtype=np.float32)


def write_vectors(path: Path, n: int, d: int, seed: int) -> None:
    """n clustered vectors into a .npy file, a chunk at a time (the memory holds one chunk).
    Run in a child process, so the peak RSS printed is the index's, not the generator's."""
    rng = np.random.default_rng(seed)
    centres_ = centres(d)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        out[start : start + rows] = draw(rows, centres_, rng)
    out.flush()
    del out


def draw(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    labels = rng.integers(0, len(centres), n)
    noise = rng.standard_normal((n, centres.shape[1]), dtype=np.float32)
    return centres[labels] + noise  # (n, d)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--queries", type=int, default=200, help="held out (as many tune)")
    parser.add_argument("--memory-budget", default="1GiB", help="the index's memory budget")
    parser.add_argument("--dir", type=Path, default=None, help="scratch (default: a temp dir)")
    args = parser.parse_args()

    import faiss
    import torch

    from pipelines.serving.index import evaluate
    from recmodel.config import ModelConfig, parse_bytes
    from recmodel.index import (
        ExactSearch,
        IndexSettings,
        build,
        choose_spec,
        kth_scores,
        tune,
        write_index,
    )

    d = ModelConfig().d_model
    settings = IndexSettings(memory_budget_bytes=parse_bytes(args.memory_budget))
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    print(
        f"faiss {faiss.__version__}, torch {torch.__version__}; {faiss.omp_get_max_threads()} "
        f"threads for builds, 1 per query; d_z={d}, {CLUSTERS} clusters, "
        f"{args.queries} held-out queries; memory budget {settings.memory_budget_bytes:,} bytes",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-", dir=args.dir))
    rows = []
    try:
        queries = draw(2 * args.queries, centres(d), np.random.default_rng(1))  # (2Q, d)
        tuning, held_out = queries[: args.queries], queries[args.queries :]  # tune on one half
        for n in sizes:
            path = work / f"vectors-{n}.npy"
            t0 = time.perf_counter()
            child = multiprocessing.get_context("spawn").Process(
                target=write_vectors, args=(path, n, d, 2 + n)
            )
            child.start()
            child.join()
            if child.exitcode != 0:
                raise SystemExit(f"writing {n:,} vectors failed (exit {child.exitcode})")
            print(f"[{n:,}] vectors written in {time.perf_counter() - t0:.1f} s", flush=True)
            vectors = np.load(path, mmap_mode="r")
            spec = choose_spec(n, d, settings)

            def stage(name: str, count: int, secs: float, n: int = n) -> None:
                print(
                    f"[{n:,}] {name}: {count:,} vectors in {secs:.1f} s "
                    f"({count / max(secs, 1e-9):,.0f}/s)",
                    flush=True,
                )

            t0 = time.perf_counter()
            index = build(vectors, spec, settings, on_stage=stage)
            build_s = time.perf_counter() - t0
            exact = ExactSearch(vectors)
            t0 = time.perf_counter()
            tuned = tune(index, vectors, tuning, kth_scores(exact, tuning), settings.target_recall)
            print(
                f"[{n:,}] {spec.factory}: tuned {index.search_params or '-'} (recall {tuned:.3f} "
                f"on the tuning half, {time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
            e = evaluate(index, exact, vectors, held_out)
            _, nbytes = write_index(index, work / f"index-{n}.faiss")  # its size as a run has it
            rows.append((n, spec.factory, index.search_params, build_s, nbytes, e))
            print(
                f"[{n:,}] recall@10 {e['recall_at_10']:.4f}, p50 {e['index_p50_ms']:.3f} ms, "
                f"p99 {e['index_p99_ms']:.3f} ms; exact p50 {e['exact_p50_ms']:.2f} ms "
                f"({e['exact_timed_queries']} timed); peak RSS so far "
                f"{peak_rss_gib():.2f} GiB",
                flush=True,
            )
            del index, exact, vectors
            path.unlink()
            (work / f"index-{n}.faiss").unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"{'items':>12} {'index':<24} {'search':<28} {'build s':>8} {'index MB':>9} "
        f"{'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7} {'exact p50':>10} {'exact/index':>11}"
    )
    for n, factory, search, build_s, nbytes, e in rows:
        params = ",".join(f"{k}={v}" for k, v in search.items()) or "-"
        print(
            f"{n:>12,} {factory:<24} {params:<28} {build_s:>8.1f} {nbytes / 1e6:>9.1f} "
            f"{e['recall_at_10']:>9.4f} {e['index_p50_ms']:>7.3f} {e['index_p99_ms']:>7.3f} "
            f"{e['exact_p50_ms']:>10.2f} {e['exact_p50_ms'] / e['index_p50_ms']:>11.1f}"
        )
    for n, *_, e in rows:
        if n in TARGETS:
            recall, p50 = TARGETS[n]
            ok = e["recall_at_10"] >= recall and e["index_p50_ms"] <= p50
            print(
                f"target at {n:,}: recall@10 >= {recall} and p50 <= {p50} ms: "
                f"{'met' if ok else 'MISSED'}"
            )
    print(f"peak RSS {peak_rss_gib():.2f} GiB (the whole run)")


if __name__ == "__main__":
    main()
