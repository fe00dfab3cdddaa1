"""Training without `--config` against the demo's tuned settings (and against Table 6, the old
defaults), on datasets the defaults were not chosen on:

- `demo`: the demo dataset as `make demo` builds it (96 videos, 480 users, dataset seed 0),
  features from the tiny checkpoint; `demo-small` / `demo-large`: other sizes and dataset seeds;
- `microlens`: the MicroLens-shaped generator (bench/microlens.py: 20,000 users, 4,000 items
  in 40 drifting clusters), with a synthetic store whose rows show each item's cluster;
- `movielens`: MovieLens-100K, read from the copy inside RecBole's wheel (bench/movielens.py),
  ID-only (it has no videos).

Settings that resolve to the same values as settings already trained (the defaults are the
demo's tuned values) are not trained again: the same settings and seed train the same run, so
their figures are reused and the line says so. Each (dataset, variant, settings) is trained
with three training seeds through train_run, one
process; the figures are the mean test NDCG@10 over the seeds and the mean wall time of a
whole `train` (training, evaluation, export). Per dataset and variant it prints the ratios
defaults / demo-tuned (targets: quality >= 0.97, time <= 1.2) and defaults / paper.

`demo-tuned` is what pipelines/training/configs/demo.yaml held when issue #25 was filed (lr 1e-3
both groups, a 10-step warmup, 80 epochs, patience 10), kept here so that the comparison means
the same after the defaults moved.

    python bench/defaults.py [--datasets demo microlens movielens] [--variants id_only full]
                             [--seeds 42 1 2] [--settings defaults demo-tuned paper]
                             [--microlens-users 20000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

SETTINGS: dict[str, tuple[str | None, dict]] = {
    "defaults": (None, {}),
    "demo-tuned": (
        None,
        {"lr_encoder": 1e-3, "lr_head": 1e-3, "warmup_steps": 10, "epochs": 80, "patience": 10},
    ),
    "paper": ("paper", {}),
}
DEMOS = {  # name: (videos, users, dataset seed)
    "demo": (96, 480, 0),
    "demo-small": (48, 160, 1),
    "demo-large": (192, 960, 2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["demo", "microlens", "movielens"])
    parser.add_argument("--variants", nargs="+", default=["id_only", "full"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["defaults", "demo-tuned"])
    parser.add_argument("--microlens-users", type=int, default=20_000)
    parser.add_argument("--microlens-items", type=int, default=4_000)
    args = parser.parse_args()

    from pipelines.training.run import train_run

    # resolved settings -> (test NDCG@10, seconds, validation NDCG@10)
    trained: dict[str, tuple[float, float, float]] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-defaults-"))
    table: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    try:
        for name in args.datasets:
            started = time.perf_counter()
            dataset, store = _prepare(name, work / name, args)
            print(f"{name}: prepared in {time.perf_counter() - started:.0f} s", flush=True)
            for variant in args.variants:
                if variant != "id_only" and store is None:
                    print(f"{name}: skipping {variant}: no videos, no store", flush=True)
                    continue
                for setting in args.settings:
                    config, overrides = SETTINGS[setting]
                    for seed in args.seeds:
                        values = {**overrides, "seed": seed}
                        same = _resolved(name, variant, config, values)
                        if same in trained:  # the same settings train the same run
                            table.setdefault((name, variant, setting), []).append(trained[same])
                            print(
                                f"{name:<10} {variant:<8} {setting:<10} seed {seed:>3}: the "
                                "same settings as a run above (not trained again)",
                                flush=True,
                            )
                            continue
                        run = work / name / "runs" / f"{variant}-{setting}-{seed}"
                        t0 = time.perf_counter()
                        result = train_run(
                            dataset, store, run, variant, config=config,
                            train_overrides=values, progress=False,
                        )  # fmt: skip
                        seconds = time.perf_counter() - t0
                        ndcg = result.metrics["test"]["overall"]["ndcg@10"]
                        valid = result.metrics["training"]["best_valid_ndcg@10"]
                        trained[same] = (ndcg, seconds, valid)
                        table.setdefault((name, variant, setting), []).append(trained[same])
                        print(
                            f"{name:<10} {variant:<8} {setting:<10} seed {seed:>3}: test NDCG@10 "
                            f"{ndcg:.4f}  {seconds:6.1f} s  ({result.epochs_run} epochs, best "
                            f"{result.best_epoch}; valid NDCG@10 {valid:.4f})",
                            flush=True,
                        )
                        shutil.rmtree(run, ignore_errors=True)
            _summary(table, name, args.variants, args.settings)
        print("\nall datasets:")
        for name in args.datasets:
            _summary(table, name, args.variants, args.settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _resolved(dataset: str, variant: str, config: str | None, values: dict) -> str:
    """Every training value a setting resolves to, as text (equal text: the same run)."""
    import json

    from pipelines.training.settings import resolve_settings
    from recmodel.config import TrainConfig

    resolved = resolve_settings(config, train_overrides=values)
    every = {"train": TrainConfig(**resolved.train).to_dict(), "model": resolved.model}
    return json.dumps([dataset, variant, every], sort_keys=True)


def _prepare(name: str, root: Path, args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The dataset (ingested) and its store (None: ID-only)."""
    from pipelines.dataset.ingest import ingest

    dataset = root / "dataset"
    if name in DEMOS:
        videos, users, seed = DEMOS[name]
        return build_demo(root, videos, users, seed)
    if name == "microlens":
        from microlens import write_cluster_store, write_pairs

        n_clusters = 40
        write_pairs(dataset, args.microlens_users, args.microlens_items, n_clusters, 0)
        ingest(dataset)
        store = write_cluster_store(root / "store", args.microlens_items, n_clusters, 0)
        return dataset, store
    if name == "movielens":
        from movielens import write_movielens_pairs

        write_movielens_pairs(dataset)
        ingest(dataset)
        return dataset, None
    raise SystemExit(
        f"unknown dataset {name!r}: demo, demo-small, demo-large, microlens, movielens"
    )


def build_demo(root: Path, videos: int, users: int, seed: int) -> tuple[Path, Path]:
    import ray

    from featurizer.config import load_preset
    from featurizer.tiny_model import build_tiny_checkpoint
    from pipelines.dataset.ingest import ingest
    from pipelines.demo.generate import make_demo_dataset
    from pipelines.extraction.extract import extract_catalog
    from pipelines.ray_runtime import ensure_ray

    dataset, store = root / "dataset", root / "store"
    make_demo_dataset(dataset, n_videos=videos, n_users=users, seed=seed)
    ingest(dataset)
    model = build_tiny_checkpoint(root / "tiny-model")
    ensure_ray()
    try:
        preset = load_preset("demo").replace(model=str(model))
        extract_catalog(dataset, store, preset, progress=False)
    finally:
        ray.shutdown()
    return dataset, store


def _summary(table: dict, name: str, variants: list[str], settings: list[str]) -> None:
    for variant in variants:
        rows = {
            s: np.array(table[name, variant, s]) for s in settings if (name, variant, s) in table
        }
        if not rows:
            continue
        shown = "  ".join(
            f"{s} test NDCG@10 {r[:, 0].mean():.4f} +- {_sd(r[:, 0]):.4f} (valid "
            f"{r[:, 2].mean():.4f} +- {_sd(r[:, 2]):.4f}) in {r[:, 1].mean():.0f} s"
            for s, r in rows.items()
        )
        print(f"{name} {variant}: {shown}")
        base = rows.get("defaults")
        for other, target in (("demo-tuned", True), ("paper", False)):
            if base is None or other not in rows:
                continue
            quality = base[:, 0].mean() / max(rows[other][:, 0].mean(), 1e-12)
            seconds = base[:, 1].mean() / rows[other][:, 1].mean()
            goal = "  (targets: quality >= 0.97, time <= 1.2)" if target else ""
            print(
                f"  {name} {variant} defaults / {other}: quality {quality:.3f}, time "
                f"{seconds:.2f}{goal}",
                flush=True,
            )


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


if __name__ == "__main__":
    main()
