"""Quality of `full` trained through the scale path (cached negatives, micro-batched exact
gradients) against exact full-softmax training, on the demo dataset as `make demo` builds it,
for several training seeds, with id_only beside them:

- per seed, test HR@10 / NDCG@10 overall and HR@10 on cold-start targets of each path;
- per path, the mean and standard deviation over the seeds (the seed noise), and the
  difference of the two paths' means, which should fall within that noise;
- whether each path keeps the demo's claims (full > id_only overall, >= 2x on cold start).

Any change to the random stream (even the same gradients in micro-batches, which draw dropout
masks per micro-batch) moves the demo's HR@10 by a few hundredths: its ~100-item catalog gives
2-3 optimizer steps an epoch. So compare means over seeds, not single runs.

    python bench/negatives_quality.py [--seeds 42 1 2 3 4 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

PATHS = {
    "exact": {"negatives": "exact"},
    # the scale path: negatives from the item-vector cache, refreshed every 2 steps (the demo
    # has ~13 steps an epoch), and gradient-carrying items in micro-batches of 16
    "cached": {"negatives": "cached", "cache_refresh_steps": 2, "micro_batch_items": 16},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4, 5])
    args = parser.parse_args()

    import ray

    from featurizer.config import load_preset
    from featurizer.tiny_model import build_tiny_checkpoint
    from pipelines.dataset.ingest import ingest
    from pipelines.demo.dataset import DEMO_SEED, DEMO_USERS, DEMO_VIDEOS
    from pipelines.demo.generate import make_demo_dataset
    from pipelines.extraction.extract import extract_catalog
    from pipelines.ray_runtime import ensure_ray
    from pipelines.training.run import train_run
    from pipelines.training.settings import DEMO_CONFIG

    work = Path(tempfile.mkdtemp(prefix="bench-negatives-"))
    try:
        dataset, store = work / "dataset", work / "store"
        make_demo_dataset(dataset, n_videos=DEMO_VIDEOS, n_users=DEMO_USERS, seed=DEMO_SEED)
        ingest(dataset)
        model = build_tiny_checkpoint(work / "tiny-model")
        ensure_ray()
        try:
            extract_catalog(dataset, store, load_preset("demo").replace(model=str(model)))
        finally:
            ray.shutdown()

        table: dict[tuple[str, int], dict] = {}
        for seed in args.seeds:
            for name, values in [("id_only", {}), *PATHS.items()]:
                variant = "id_only" if name == "id_only" else "full"
                result = train_run(
                    dataset, store, work / "runs" / f"{name}-{seed}", variant,
                    config=DEMO_CONFIG, train_overrides={"seed": seed, **values},
                    progress=False,
                )  # fmt: skip
                table[name, seed] = result.metrics["test"]
                print(f"seed {seed:>3} {name:<8} {_figures(table[name, seed])}", flush=True)

        print("\nmean +- sd over seeds " + ", ".join(map(str, args.seeds)) + ":")
        for group, key, label in (
            ("overall", "hr@10", "HR@10"),
            ("overall", "ndcg@10", "NDCG@10"),
            ("cold_start", "hr@10", "cold-start HR@10"),
        ):
            stats = {}
            for name in ("id_only", *PATHS):
                values = np.array([table[name, s][group][key] for s in args.seeds])
                stats[name] = (values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0)
            diff = stats["cached"][0] - stats["exact"][0]
            noise = max(stats["cached"][1], stats["exact"][1])
            shown = "  ".join(f"{n} {m:.4f} +- {sd:.4f}" for n, (m, sd) in stats.items())
            print(
                f"  {label:<17} {shown}  cached - exact {diff:+.4f}: "
                f"{'within' if abs(diff) <= noise else 'OUTSIDE'} the seed noise ({noise:.4f})"
            )
        for name in PATHS:
            claims = all(
                table[name, s]["overall"]["hr@10"] > table["id_only", s]["overall"]["hr@10"]
                and table[name, s]["cold_start"]["hr@10"]
                >= 2 * table["id_only", s]["cold_start"]["hr@10"]
                for s in args.seeds
            )
            print(
                f"{name}: full > id_only overall and >= 2x on cold start for every seed: {claims}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _figures(test: dict) -> str:
    o, c = test["overall"], test["cold_start"]
    return f"HR@10 {o['hr@10']:.4f}  NDCG@10 {o['ndcg@10']:.4f}  cold HR@10 {c['hr@10']:.4f}"


if __name__ == "__main__":
    main()
