"""A MicroLens-shaped interaction log for the training benchmarks: users with 5-15
interactions, items in clusters with Zipf-like popularity inside each, users whose cluster
preference drifts over time, and some exploration."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def item_clusters(n_items: int, n_clusters: int, seed: int) -> np.ndarray:
    """(n_items,) the cluster of each item, as write_pairs draws it for the same seed."""
    return np.random.default_rng(seed).integers(0, n_clusters, n_items)


def write_pairs(root: Path, n_users: int, n_items: int, n_clusters: int, seed: int) -> int:
    """MicroLens-layout pairs.csv (items v00000...); returns the number of interactions."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, n_clusters, n_items)  # item_clusters' draw
    members = [np.flatnonzero(clusters == c) for c in range(n_clusters)]
    # Zipf-like popularity inside each cluster
    weights = [1.0 / np.arange(1, len(m) + 1) ** 1.1 for m in members]
    weights = [w / w.sum() for w in weights]
    root.mkdir(parents=True, exist_ok=True)
    n_rows = 0
    with open(root / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp"])
        for u in range(n_users):
            liked = rng.choice(n_clusters, int(rng.integers(1, 4)), replace=False)
            n = int(rng.integers(5, 16))
            drift = np.linspace(0.0, 1.0, n)
            seen: set[int] = set()
            t = 1_600_000_000 + int(rng.integers(0, 10_000_000))
            for step in range(n):
                if rng.random() < 0.1:  # exploration
                    cluster = int(rng.integers(n_clusters))
                else:  # the first liked cluster fades, the last one grows
                    p = np.linspace(1.0 - drift[step], drift[step], len(liked)) + 0.2
                    cluster = int(liked[rng.choice(len(liked), p=p / p.sum())])
                for _ in range(10):
                    item = int(rng.choice(members[cluster], p=weights[cluster]))
                    if item not in seen:
                        break
                if item in seen:
                    continue
                seen.add(item)
                t += int(rng.integers(60, 86_400))
                writer.writerow([f"u{u:06d}", f"v{item:05d}", t])
                n_rows += 1
    return n_rows


def write_cluster_store(
    root: Path,
    n_items: int,
    n_clusters: int,
    seed: int,
    *,
    layers: tuple[int, ...] = (0, 4, 8),
    k_tokens: int = 6,
    hidden: int = 16,
) -> Path:
    """A feature store (through the real writer, CURRENT set) with a row for every item of
    write_pairs' catalog: Gaussian noise with the item's cluster showing in one hidden unit, so
    content carries what ID embeddings must learn from interactions."""
    from featurizer.config import ExtractorConfig
    from featurizer.store import FeatureStore, set_current

    clusters = item_clusters(n_items, n_clusters, seed)
    config = ExtractorConfig(
        model="microlens-shaped", layers=layers, k_tokens=k_tokens, new_tokens=2, prompts=()
    )
    rng = np.random.default_rng(seed + 1)
    store = FeatureStore.create_or_open(root, config, hidden_size=hidden)
    with store.writer() as writer:
        rows = writer.allocate(n_items)
        row_writer = writer.row_writer()
        for i, row in enumerate(rows):
            item = f"v{i:05d}"
            features = rng.standard_normal((len(layers), k_tokens, hidden)).astype(np.float16)
            features[:, :, clusters[i] % hidden] += 1.0 + clusters[i] // hidden
            row_writer.write(row, features, item=item)
            writer.commit(
                item,
                row,
                source_sha256=f"sha-{item}",
                n_old=k_tokens - 2,
                n_new=2,
                prompt_sha256=config.prompt_sha256(""),
            )
    set_current(root, config.fingerprint())
    return root
