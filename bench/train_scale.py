"""Training `full` at a 7B backbone's width, on stores larger than the budget (and than RAM):

- a MicroLens-shaped dataset (users with 5-15 interactions, long-tailed popularity, through
  the real ingest) and a store of random (6, 64, 3584) float16 rows (2.75 MB each) written
  through the store API, for each catalog size (default 3,000 items = 8.3 GB and 11,000 items
  = 30 GB, more than this machine's 24 GiB);
- `linkedout train --variant full --epochs 1` as a user runs it (default budget: half this
  machine's memory): peak resident memory / configured budget, target <= 1.2;
- the cache refresh's read path (the feature bank and background reader, rows in row order,
  no encoding) against a plain sequential read of the same shard objects, both from a cold
  page cache: target >= 0.7;
- on the first store, step time with features streamed from the store / step time with the
  same batches' rows already in memory (every row held before the clock starts), the same
  steps in both, first step of each left out (the pipeline's fill): target >= 0.8;
- items encoded per second, and from the encoder's FLOPs per item (counted by torch's
  FlopCounterMode) and the batch plan of a MicroLens-100K-shaped log, the epoch time projected
  for MicroLens-100K on one H100, labelled as a projection.

Everything it writes goes under --root and is deleted at the end (--keep keeps it).

    python bench/train_scale.py [--items 3000 11000] [--users 2500] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from microlens import write_pairs

REPO = Path(__file__).resolve().parents[1]
SHAPE = (6, 64, 3584)  # LLaVA-OneVision-7B: layers 0,4,...,20; 48 merged + 16 new tokens
LAYERS = (0, 4, 8, 12, 16, 20)
MICROLENS_100K = {"users": 100_000, "items": 19_738}
H100_BF16_FLOPS = 989e12  # dense bf16 peak, SXM
ASSUMED_MFU = 0.3  # the encoder's matmuls are skinny (d = 64 outputs): a modest utilisation
H100_HBM_BYTES_S = 3.35e12
PCIE_BYTES_S = 50e9  # host -> device, PCIe Gen5 x16 in practice


# ---------------------------------------------------------------------------------------------
# Building the inputs


def build_dataset(root: Path, n_users: int, n_items: int, seed: int = 0) -> Path:
    from pipelines.dataset.ingest import ingest

    dataset = root / "dataset"
    write_pairs(dataset, n_users, n_items, n_clusters=max(8, n_items // 100), seed=seed)
    ingest(dataset)
    return dataset


def build_store(root: Path, n_items: int) -> tuple[Path, float]:
    """A CURRENT store version with a random row for every catalog item; returns its path and
    the write rate in bytes/s."""
    from featurizer.config import ExtractorConfig
    from featurizer.store import FeatureStore, set_current

    store = root / "store"
    config = ExtractorConfig(model="bench-random-rows", layers=LAYERS, k_tokens=SHAPE[1])
    version = FeatureStore.create_or_open(store, config, hidden_size=SHAPE[2])
    pool = np.random.default_rng(0).standard_normal((16, *SHAPE)).astype(np.float16)
    started = time.perf_counter()
    with version.writer() as writer:
        rows = writer.allocate(n_items)
        row_writer = writer.row_writer()
        for i, row in enumerate(rows):
            features = pool[i % len(pool)].copy()
            features[0, 0, :8] = i  # every row differs
            row_writer.write(row, features, item=f"v{i:05d}")
            writer.commit(f"v{i:05d}", row, f"bench-{i}", n_old=48, n_new=16)
            if (i + 1) % 1000 == 0:
                writer.publish()
    seconds = time.perf_counter() - started
    set_current(store, config.fingerprint())
    return store, n_items * pool[0].nbytes / seconds


def chunk_files(store: Path) -> list[Path]:
    from featurizer.store import FeatureStore

    version = FeatureStore.open(store)
    array_dir = version.path / "features.zarr" / "features" / "c"
    files = [p for p in array_dir.rglob("*") if p.is_file()]
    return sorted(files, key=lambda p: int(p.relative_to(array_dir).parts[0]))


def drop_page_cache(files: list[Path]) -> None:
    """Evict the files' pages (POSIX_FADV_DONTNEED) so a read comes from the disk."""
    os.sync()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# Reads


def plain_read_rate(files: list[Path]) -> float:
    """Bytes/s of reading every shard object whole, in row order, into one reused buffer of a
    shard's rows (a shard holds up to 64 rows and its index)."""
    view = memoryview(bytearray(64 * math.prod(SHAPE) * 2))
    total, started = 0, time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while read := f.readinto(view):
                total += read
    return total / (time.perf_counter() - started)


def refresh_read_rate(store: Path, dataset: Path) -> float:
    """Bytes/s of the cache refresh's read path: every item with features, in row order, in
    encode-sized chunks through the feature bank and the background reader."""
    from featurizer.store import FeatureStore
    from pipelines.dataset.ingest import read_interactions
    from pipelines.training.inputs import store_features
    from recmodel.data import build_splits
    from recmodel.features import ItemFeatureBank
    from recmodel.memory import default_budget, plan_memory
    from recmodel.prefetch import Prefetcher

    catalog = sorted(set(FeatureStore.open(store).index()))
    build_splits(read_interactions(dataset), catalog)  # the catalog is valid for the dataset
    features = store_features(store, catalog)
    plan = plan_memory(default_budget(), SHAPE, 64, 256)
    bank = ItemFeatureBank(features, "tokens", hot_bytes=0)
    order = np.argsort(features.item_rows, kind="stable")
    chunks = [order[s : s + plan.encode_batch] for s in range(0, len(order), plan.encode_batch)]
    total, started = 0, time.perf_counter()
    with Prefetcher(bank, chunks, plan.readahead_bytes) as reader:
        for block in reader:
            total += block.nbytes
    return total / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# Training runs, each in its own process (its own peak RSS)


def timed_steps(dataset: Path, store: Path, steps: int, in_memory: bool) -> dict:
    """Run in a child: `steps` optimizer steps of `full` with cached negatives; per-step wall
    times. in_memory: every row is read into memory before the clock starts."""
    here = str(Path(__file__).parent)
    call = f"_steps_child({str(dataset)!r}, {str(store)!r}, {steps}, {in_memory})"
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import train_scale; "
        f"print(json.dumps(train_scale.{call}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _steps_child(dataset: str, store: str, steps: int, in_memory: bool) -> dict:
    import torch

    from featurizer.store import FeatureStore
    from pipelines.dataset.ingest import read_interactions
    from pipelines.training.inputs import store_features
    from recmodel.config import ModelConfig, TrainConfig
    from recmodel.data import build_splits
    from recmodel.features import ItemFeatureBank
    from recmodel.plan import feature_bank, plan_training
    from recmodel.train import fit

    table = read_interactions(Path(dataset))
    catalog = sorted(set(table.column("item").to_pylist()) | set(FeatureStore.open(store).index()))
    splits = build_splits(table, catalog)
    features = store_features(Path(store), catalog)
    L, K, D = SHAPE
    model_cfg = ModelConfig(
        variant="full", n_items=len(catalog), n_layers=L, n_tokens=K, feature_dim=D, n_new=16
    )
    train = TrainConfig(epochs=1, max_steps=steps, negatives="cached")
    plan = plan_training(model_cfg, train, splits, features.shape)
    if in_memory:
        bank = ItemFeatureBank(features, "tokens", hot_bytes=1 << 62)  # every row, read now
    else:
        drop_page_cache(chunk_files(Path(store)))
        bank = feature_bank(features, model_cfg, plan.memory, splits)
    times: list[float] = []

    def on_step(epoch: int, step: int, n: int) -> None:
        times.append(time.perf_counter())

    started = time.perf_counter()
    result = fit(model_cfg, plan.train, splits, bank, None, memory=plan.memory, on_step=on_step)
    log = result.history[0]
    # the refresh runs before step 1; step i's time is the gap between its end and the last
    starts = [started + log.refresh_seconds, *times[:-1]]
    return {
        "step_seconds": [t - s for s, t in zip(starts, times, strict=True)],
        "items_encoded": log.items_encoded,
        "train_seconds": log.train_seconds,
        "refresh_seconds": log.refresh_seconds,
        "io_wait_seconds": log.io_wait_seconds,
        "micro_batch": plan.memory.micro_batch,
        "threads": torch.get_num_threads(),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def cli_epoch(dataset: Path, store: Path, out: Path) -> dict:
    """`linkedout train --variant full --epochs 1` as a child; its peak RSS from wait4."""
    argv = [
        str(Path(sys.executable).parent / "linkedout"),
        "train", "--dataset", str(dataset), "--store", str(store), "--out", str(out),
        "--variant", "full", "--epochs", "1",
    ]  # fmt: skip
    started = time.perf_counter()
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as f:
        process = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"linkedout train exited {code}; see {log}:\n{log.read_text()[-2000:]}")
    config = json.loads((out / "config.json").read_text())
    return {
        "seconds": seconds,
        "peak_rss": usage.ru_maxrss * 1024,
        "budget": config["train"]["memory_budget_bytes"],
        "negatives": config["train"]["negatives"],
        "plan": config["memory_plan"],
        "log": log.read_text(),
    }


# ---------------------------------------------------------------------------------------------
# The projection


def encoder_flops_per_item() -> float:
    """Forward FLOPs of the `full` item encoder for one (6, 64, 3584) item, counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from recmodel.config import ModelConfig
    from recmodel.model import build_model

    L, K, D = SHAPE
    cfg = ModelConfig(variant="full", n_items=8, n_layers=L, n_tokens=K, feature_dim=D, n_new=16)
    model = build_model(cfg).eval()
    batch = 8
    x = torch.randn(batch, *SHAPE).half()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.items(torch.arange(batch), x, torch.ones(batch, dtype=torch.bool))
    return counter.get_total_flops() / batch


def microlens_items_per_epoch(root: Path, batch_size: int = 256) -> tuple[int, int]:
    """(steps, items encoded with gradients) of one epoch with cached negatives on a
    MicroLens-100K-shaped log: the unique history and target items of each batch."""
    from pipelines.dataset.ingest import read_interactions
    from recmodel.data import PAD, batch_order, build_splits, training_examples

    dataset = build_dataset(root, MICROLENS_100K["users"], MICROLENS_100K["items"], seed=1)
    splits = build_splits(read_interactions(dataset))
    x, y = training_examples(splits.train_sequences, 10)
    steps = items = 0
    for batch in batch_order(len(x), batch_size, np.random.default_rng(42)):
        xb, yb = x[batch], y[batch]
        items += len(np.unique(np.concatenate([xb[xb != PAD], yb[yb != PAD]])))
        steps += 1
    shutil.rmtree(dataset)
    return steps, items


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[3000, 11000])
    parser.add_argument("--users", type=int, default=2500)
    parser.add_argument("--steps", type=int, default=6, help="timed steps, streamed vs memory")
    parser.add_argument("--root", type=Path, default=None, help="scratch directory")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="bench-train-scale-", dir=args.root))
    gib = 1 << 30
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; scratch {work}")
    rows: list[str] = []
    measured_rate = None
    try:
        for n_items in args.items:
            root = work / f"items-{n_items}"
            t0 = time.perf_counter()
            dataset = build_dataset(root, args.users, n_items)
            store, write_rate = build_store(root, n_items)
            files = chunk_files(store)
            size = sum(f.stat().st_size for f in files)
            print(
                f"\n== {n_items} items: store {size / 1e9:.1f} GB written at "
                f"{write_rate / 1e9:.2f} GB/s ({time.perf_counter() - t0:.0f} s with the dataset)"
            )

            drop_page_cache(files)
            plain = plain_read_rate(files)
            drop_page_cache(files)
            refresh = refresh_read_rate(store, dataset)
            ratio = refresh / plain
            print(
                f"cache-refresh read {refresh / 1e9:.2f} GB/s / plain sequential read "
                f"{plain / 1e9:.2f} GB/s (both from a cold page cache) = {ratio:.2f} "
                f"(target >= 0.7)"
            )
            rows.append(f"{n_items} items: refresh read / plain read = {ratio:.2f}")

            if n_items == args.items[0]:
                streamed = timed_steps(dataset, store, args.steps, in_memory=False)
                memory = timed_steps(dataset, store, args.steps, in_memory=True)
                s = float(np.mean(streamed["step_seconds"][1:]))
                m = float(np.mean(memory["step_seconds"][1:]))
                step_ratio = m / s
                measured_rate = streamed["items_encoded"] / streamed["train_seconds"]
                print(
                    f"step time, rows in memory {m:.1f} s / streamed from the store {s:.1f} s "
                    f"= {step_ratio:.2f} (target >= 0.8; steps 2-{args.steps}, micro-batch "
                    f"{streamed['micro_batch']} items; streamed run waited "
                    f"{streamed['io_wait_seconds']:.1f} s for features in all)"
                )
                print(
                    f"items encoded with gradients: {measured_rate:.1f} items/s "
                    f"({streamed['items_encoded']} in {streamed['train_seconds']:.0f} s, "
                    f"{streamed['threads']} threads; cache refresh "
                    f"{n_items / streamed['refresh_seconds']:.0f} items/s)"
                )
                rows.append(f"{n_items} items: step time in memory / streamed = {step_ratio:.2f}")

            run = cli_epoch(dataset, store, root / "run")
            ratio = run["peak_rss"] / run["budget"]
            print(
                f"linkedout train --variant full --epochs 1: {run['seconds']:.0f} s, peak RSS "
                f"{run['peak_rss'] / gib:.2f} GiB / budget {run['budget'] / gib:.2f} GiB = "
                f"{ratio:.2f} (target <= 1.2); negatives {run['negatives']}, micro-batch "
                f"{run['plan']['micro_batch']} items, hot rows {run['plan']['hot_bytes'] / gib:.1f} GiB"
            )
            for line in run["log"].splitlines():
                if " epoch " in line or "evaluated" in line:
                    print(f"  | {line}")
            rows.append(f"{n_items} items: peak RSS / budget = {ratio:.2f}")
            if not args.keep:
                shutil.rmtree(root)

        flops = encoder_flops_per_item()
        steps, items = microlens_items_per_epoch(work)
        train_flops = 4 * flops * items  # pass 1, pass 2 forward, backward (~2 forwards)
        catalog_flops = 2 * flops * MICROLENS_100K["items"]  # refresh + validation
        compute_s = (train_flops + catalog_flops) / (H100_BF16_FLOPS * ASSUMED_MFU)
        row_bytes = math.prod(SHAPE) * 2
        moved = (items + 2 * MICROLENS_100K["items"]) * row_bytes
        transfer_s = moved / PCIE_BYTES_S
        hbm_s = 4 * moved * 4 / H100_HBM_BYTES_S  # ~4 passes over each row per forward pass
        print(
            f"\nencoder forward: {flops / 1e6:.0f} MFLOP per item (FlopCounterMode); "
            f"measured here: {measured_rate or float('nan'):.1f} items/s trained on "
            f"{torch.get_num_threads()} CPU threads"
        )
        print(
            f"PROJECTION (not a measurement) for MicroLens-100K (100,000 users, 19,738 items) on "
            f"one H100: {steps} steps of 256 encode {items:,} items with gradients an epoch "
            f"(counted on a generated log of that shape) plus 2 catalog passes; compute "
            f"{compute_s:.1f} s at {ASSUMED_MFU:.0%} of bf16 peak, HBM traffic {hbm_s:.1f} s, "
            f"host->device {moved / 1e9:.0f} GB at {PCIE_BYTES_S / 1e9:.0f} GB/s = "
            f"{transfer_s:.0f} s; epoch ~ {max(compute_s, hbm_s, transfer_s):.0f} s, bound by "
            f"{'the PCIe transfer of rows' if transfer_s >= max(compute_s, hbm_s) else 'compute'}"
        )
        print("\n" + "\n".join(rows))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
