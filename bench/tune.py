"""`linkedout tune` on the demo dataset as `make demo` builds it, one search per variant:

- the wall time of the search (16 trials, default space, as many at once as the CPUs allow)
  against a 30-minute budget (target <= 1);
- the best trial's validation NDCG@10 against the base trial's (the defaults), both from the
  same search, and the defaults' test NDCG@10 beside the best's (reported, not chosen on);
- `train --config best.yaml` retrained in this process: its validation NDCG@10 against the
  best trial's (the same settings and seed: the same figure up to thread round-off).

    python bench/tune.py [--variants id_only full] [--trials 16]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

BUDGET_S = 30 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["id_only", "full"])
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()

    from defaults import DEMOS, build_demo

    from pipelines.training.run import train_run
    from pipelines.tuning.search import tune_search

    work = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    try:
        dataset, store = build_demo(work / "demo", *DEMOS["demo"])
        for variant in args.variants:
            started = time.perf_counter()
            search = tune_search(
                dataset, store, work / f"search-{variant}", variant, trials=args.trials
            )
            seconds = time.perf_counter() - started
            table, best = search.table, search.best
            base = table[table["baseline"]].iloc[0]
            rerun = train_run(
                dataset, store, work / f"best-{variant}", variant,
                config=search.best_config, progress=False,
            )  # fmt: skip
            again = rerun.metrics["training"]["best_valid_ndcg@10"]
            print(f"\n{variant}: {len(table)} trials in {seconds:.0f} s; ratio to the 30-minute "
                  f"budget {seconds / BUDGET_S:.2f} (target <= 1)")  # fmt: skip
            if base["status"] != "finished":  # ASHA may stop the base trial too
                print(f"{variant}: the defaults' trial was {base['status']} at epoch "
                      f"{base['epochs']}: compare with bench/defaults.py's full runs")  # fmt: skip
            print(
                f"{variant}: best trial {best['trial']} validation NDCG@10 "
                f"{best['valid_ndcg@10']:.4f} vs the defaults' {base['valid_ndcg@10']:.4f} "
                f"(ratio {best['valid_ndcg@10'] / base['valid_ndcg@10']:.3f}); test NDCG@10 "
                f"{best['test_ndcg@10']:.4f} vs {base['test_ndcg@10']:.4f} (not chosen on)"
            )
            print(
                f"{variant}: train --config best.yaml: validation NDCG@10 {again:.4f} vs the "
                f"trial's {best['valid_ndcg@10']:.4f} (difference {again - best['valid_ndcg@10']:+.4f})",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
