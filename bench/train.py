"""Training speed of the ID-only ranker (SASRec) on a MicroLens-sized ID-only dataset:

- a generated dataset in MicroLens layout (pairs.csv; no videos), ~100k interactions of
  users with 5-15 interactions each, items in clusters with Zipf-like popularity and users whose
  cluster preference drifts; then the real ingest (validation + leave-one-out split);
- `id_only` trained through pipelines.training.run.train_run with the demo's settings
  (pipelines/training/configs/demo.yaml: lr 1e-3 both groups after a 10-step warmup, patience 10),
  one process;
- training sequences/s (optimizer steps only), time to the best validation NDCG@10 (training and
  validation time up to the end of the best epoch), and the ratio time-to-best / 120 s budget
  (target <= 1), all measured in this one run.

    python bench/train.py [--users 10000] [--items 4000] [--epochs 40]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from microlens import write_pairs

BUDGET_S = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=4_000)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the dataset and run directory")
    args = parser.parse_args()

    import torch

    from pipelines.dataset.ingest import ingest
    from pipelines.training.run import train_run

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        t0 = time.perf_counter()
        n_rows = write_pairs(work / "dataset", args.users, args.items, args.clusters, args.seed)
        ingested = ingest(work / "dataset")
        print(f"dataset: {n_rows} pairs written, {ingested.describe()} ", end="")
        print(f"({time.perf_counter() - t0:.1f} s)")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

        result = train_run(
            work / "dataset", None, work / "run", "id_only", epochs=args.epochs, config="demo"
        )
        training = result.metrics["training"]
        time_to_best = training["time_to_best_s"]
        test = result.metrics["test"]["overall"]
        print()
        print(
            f"loss: {training['loss']}; epochs run {training['epochs_run']}, "
            f"best epoch {training['best_epoch']}, stopped early: {training['stopped_early']}"
        )
        print(
            f"best validation NDCG@10: {training['best_valid_ndcg@10']:.4f}; "
            f"test HR@10 {test['hr@10']:.4f} NDCG@10 {test['ndcg@10']:.4f}"
        )
        print(
            f"training throughput: {training['sequences_per_s']:.0f} sequences/s "
            "(optimizer steps only)"
        )
        print(
            f"time to best validation NDCG@10: {time_to_best:.1f} s "
            f"(training + per-epoch validation, to the end of epoch {training['best_epoch']})"
        )
        print(
            f"ratio time-to-best / {BUDGET_S:.0f} s budget: {time_to_best / BUDGET_S:.2f} "
            "(target <= 1)"
        )
        if args.keep:
            print(f"kept {work}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
