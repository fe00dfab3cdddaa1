"""A small ID dataset where each user watches one topic (item % n_topics): enough structure for
a ranker to learn, written in MicroLens layout and ingested."""

import csv
from pathlib import Path

import numpy as np

from pipelines.dataset.ingest import ingest


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


def write_topic_store(
    root: Path,
    items: list[str],
    *,
    n_topics: int,
    failed: tuple[str, ...] = (),
    layers: tuple[int, ...] = (0, 4, 8),
    k_tokens: int = 6,
    hidden: int = 8,
    prompts: int = 1,
    model: str = "synthetic-test",
) -> Path:
    """A feature store written through the real FeatureStore writer, CURRENT set: a row for each
    of `items` (ids "i<number>") whose topic (number % n_topics) shows in the features, and a
    decode failure for each of `failed`. With `prompts` > 1, a prompt bank of that many prompts
    (one version each, the topic showing in prompt 0's rows only; CURRENT names the bank).
    Another `model` name writes another version of the same shape."""
    from featurizer.config import ExtractorConfig
    from featurizer.store import FeatureStore, set_current
    from featurizer.store.bank import create_bank

    templates = tuple(f"<video>\nPrompt {p}: {{title}}" for p in range(prompts))
    config = ExtractorConfig(
        model=model,
        layers=layers,
        k_tokens=k_tokens,
        new_tokens=2,
        prompts=templates if prompts > 1 else (),
    )
    rng = np.random.default_rng(0)
    for p, member in enumerate(config.members()):
        store = FeatureStore.create_or_open(root, member, hidden_size=hidden)
        with store.writer() as writer:
            rows = writer.allocate(len(items))
            row_writer = writer.row_writer()
            for item, row in zip(items, rows, strict=True):
                features = rng.standard_normal((len(layers), k_tokens, hidden)).astype(np.float16)
                if p == 0:
                    features[:, :, int(item[1:]) % n_topics] += 3.0
                row_writer.write(row, features, item=item)
                writer.commit(
                    item,
                    row,
                    source_sha256=f"sha-{item}",
                    n_old=k_tokens - 2,
                    n_new=2,
                    prompt_sha256=member.prompt_sha256(""),
                )
            for item in failed:
                writer.fail(item, "decode", "Error reading video")
    if config.is_bank:
        create_bank(root, config, hidden)
    set_current(root, config.fingerprint())
    return root


def write_topic_workspace(
    root: Path, *, n_users: int = 40, n_items: int = 24, n_topics: int = 3
) -> Path:
    """root/dataset and root/store (every item has a row), as an orchestration test's paths."""
    write_topic_dataset(root / "dataset", n_users=n_users, n_items=n_items, n_topics=n_topics)
    write_topic_store(root / "store", [f"i{i:03d}" for i in range(n_items)], n_topics=n_topics)
    return root
