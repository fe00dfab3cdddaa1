"""A small ID dataset where each user watches one topic (item % n_topics): enough structure for
a ranker to learn, written in MicroLens layout and ingested."""

import csv
from pathlib import Path

import numpy as np

from pipelines.ingest import ingest


def write_topic_dataset(
    root: Path,
    *,
    n_users: int,
    n_items: int,
    n_topics: int,
    seed: int = 0,
    per_user: tuple[int, int] = (4, 8),
    user_digits: int = 3,
) -> Path:
    """pairs.csv with `per_user` (low, high) interactions per user, drawn without repeats from
    the user's topic (user % n_topics); then the real ingest."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    with open(root / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp"])
        for u in range(n_users):
            pool = np.arange(u % n_topics, n_items, n_topics)
            for t, item in enumerate(rng.choice(pool, int(rng.integers(*per_user)), replace=False)):
                writer.writerow([f"u{u:0{user_digits}d}", f"i{item:03d}", 1_700_000_000 + t])
    ingest(root)
    return root
