"""A deterministic synthetic dataset in MicroLens layout, where content predicts preference.

```
OUT/pairs.csv         user,item,timestamp   (rows in time order; users interleave)
OUT/titles.csv        item,title            (every item, ID-only ones included)
OUT/videos/<item>.mp4 96x96 H.264 clips, 16-24 frames at 8 fps
OUT/topics.csv        item,topic,has_video,cold_start,n_frames
```

`topics.csv` is the generator's ground truth for tests and reports; it is not part of the
MicroLens layout and nothing in the pipeline reads it.

How the data is built:
- Items fall into topics (up to 8), each with its own visual signature (videos.py): palette,
  shape and motion. Videos of a topic vary in position, size, speed and a little colour, and their
  titles name the topic.
- About 5% of the items have no video (ID-only items); they still have titles and interactions.
- About 12% of the videos are cold-start items: they appear only as some users' last
  interaction (the test target), never earlier, so only a content-aware model can rank them.
- Each user prefers 1-3 topics; the weights drift along the sequence (the topic the user
  likes most at the start is liked least at the end), with 10% exploration of other topics.
  Within a topic, popularity is Zipf-like. Users have 5-15 interactions, no item twice.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurizer.errors import shown
from pipelines.demo.videos import FPS, TOPICS, Topic, render_frames, write_mp4
from pipelines.errors import PipelineError

MIN_FRAMES, MAX_FRAMES = 16, 24
MIN_SEQUENCE, MAX_SEQUENCE = 5, 15  # interactions per user, as in MicroLens
ID_ONLY_SHARE = 0.05
COLD_START_SHARE = 0.125
COLD_TARGET_PROB = 0.3  # chance that a user's test target is a cold-start item of its topic
EXPLORATION = 0.1  # chance that an interaction comes from a topic the user does not prefer
ZIPF_EXPONENT = 1.2
BASE_TIMESTAMP = 1_700_000_000  # seconds; 2023-11-14

TOPICS_FILE = "topics.csv"
_ITEM_FILE = re.compile(r"v\d{4,}\.mp4")


@dataclass
class DemoDataset:
    """What `make_demo_dataset` wrote."""

    path: Path
    n_videos: int
    n_items: int
    n_users: int
    n_interactions: int
    cold_start_items: list[str]
    topics: list[str] = field(default_factory=list)
    seed: int = 0

    def describe(self) -> str:
        id_only = self.n_items - self.n_videos
        return (
            f"demo dataset (seed {self.seed}) written to {self.path}: {self.n_items} items "
            f"({self.n_videos} videos, {id_only} ID-only) in {len(self.topics)} topics, "
            f"{self.n_users} users, {self.n_interactions} interactions, "
            f"{len(self.cold_start_items)} cold-start items"
        )


@dataclass
class _Item:
    item: str
    topic: int  # index into the chosen topics
    has_video: bool
    cold_start: bool = False
    n_frames: int = 0
    title: str = ""


def make_demo_dataset(
    out: Path, n_videos: int = 48, n_users: int = 160, seed: int = 0, force: bool = False
) -> DemoDataset:
    """Write a synthetic MicroLens-layout dataset to `out`; same seed, same bytes.

    `out` must be missing or empty: a directory with anything in it may be a user's dataset,
    and is refused (PipelineError) unless `force`. With `force`, the files this generator owns
    (the CSVs, `videos/v*.mp4`, a stale `interactions.parquet`) are replaced and anything else
    in `out` is left alone.
    """
    if n_videos < 4:
        raise PipelineError(f"n_videos (--videos) must be at least 4, got {n_videos}")
    if n_users < 1:
        raise PipelineError(f"n_users (--users) must be at least 1, got {n_users}")
    out = Path(out)
    _refuse_non_empty(out, force)
    rng = np.random.default_rng(seed)

    topics = [TOPICS[i] for i in sorted(rng.permutation(len(TOPICS))[: _n_topics(n_videos)])]
    items = _make_items(rng, n_videos, len(topics))
    for it in items:
        it.title = _title(rng, topics[it.topic])
        if it.has_video:
            it.n_frames = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    pairs = _make_pairs(rng, items, len(topics), n_users)

    _prepare(out)
    videos = out / "videos"
    for it in items:
        if it.has_video:
            frames = render_frames(topics[it.topic], it.n_frames, rng)
            write_mp4(videos / f"{it.item}.mp4", frames, fps=FPS)
    _write_csv(out / "titles.csv", ["item", "title"], [(it.item, it.title) for it in items])
    _write_csv(
        out / TOPICS_FILE,
        ["item", "topic", "has_video", "cold_start", "n_frames"],
        [
            (it.item, topics[it.topic].name, int(it.has_video), int(it.cold_start), it.n_frames)
            for it in items
        ],
    )
    # pairs.csv last: its presence means the dataset is complete (pipelines.demo.dataset relies on it).
    _write_csv(out / "pairs.csv", ["user", "item", "timestamp"], pairs)
    return DemoDataset(
        path=out,
        n_videos=n_videos,
        n_items=len(items),
        n_users=n_users,
        n_interactions=len(pairs),
        cold_start_items=[it.item for it in items if it.cold_start],
        topics=[t.name for t in topics],
        seed=seed,
    )


def read_topics(dataset: Path) -> dict[str, str]:
    """item -> topic name, from the generator's ground truth `topics.csv`."""
    path = Path(dataset) / TOPICS_FILE
    if not path.is_file():
        raise PipelineError(
            f"{path} not found: only datasets made by `linkedout demo-data` have it"
        )
    with path.open(newline="", encoding="utf-8") as f:
        return {row["item"]: row["topic"] for row in csv.DictReader(f)}


# --- items, titles and interactions ---------------------------------------------------------


def _n_topics(n_videos: int) -> int:
    return min(len(TOPICS), max(2, n_videos // 4))


def _make_items(rng: np.random.Generator, n_videos: int, n_topics: int) -> list[_Item]:
    n_id_only = max(1, round(ID_ONLY_SHARE * n_videos))
    kinds = [(i % n_topics, True) for i in range(n_videos)]
    kinds += [(i % n_topics, False) for i in range(n_id_only)]
    # Shuffle the ids over the items, so that neither topic nor kind can be read off an id.
    order = rng.permutation(len(kinds))
    items = [_Item(f"v{n + 1:04d}", *kinds[k]) for n, k in enumerate(order)]

    # Cold-start items: spread over the topics, each topic keeping at least two warm videos.
    n_cold = max(1, round(COLD_START_SHARE * n_videos))
    videos_by_topic = [
        [it for it in items if it.has_video and it.topic == t] for t in range(n_topics)
    ]
    topic_order = rng.permutation(n_topics)
    for k in range(n_cold * n_topics):  # round-robin until n_cold are chosen or none can be
        if sum(it.cold_start for it in items) == n_cold:
            break
        pool = videos_by_topic[topic_order[k % n_topics]]
        warm = [it for it in pool if not it.cold_start]
        if len(warm) > 2:
            warm[int(rng.integers(len(warm)))].cold_start = True
    return items


def _title(rng: np.random.Generator, topic: Topic) -> str:
    subject = topic.subjects[int(rng.integers(len(topic.subjects)))]
    detail = topic.details[int(rng.integers(len(topic.details)))]
    episode = int(rng.integers(1, 100))
    return f"{topic.name}: {subject}, {detail} #{episode}"


def _make_pairs(
    rng: np.random.Generator, items: list[_Item], n_topics: int, n_users: int
) -> list[tuple[str, str, int]]:
    warm_by_topic: list[list[int]] = []
    popularity: list[np.ndarray] = []
    cold_by_topic: list[list[int]] = []
    for t in range(n_topics):
        warm = [i for i, it in enumerate(items) if it.topic == t and not it.cold_start]
        warm = [warm[k] for k in rng.permutation(len(warm))]  # popularity rank order
        warm_by_topic.append(warm)
        popularity.append(1.0 / np.arange(1, len(warm) + 1) ** ZIPF_EXPONENT)
        cold_by_topic.append([i for i, it in enumerate(items) if it.topic == t and it.cold_start])
    n_warm = sum(len(w) for w in warm_by_topic)

    sequences: list[list[int]] = []
    last_topics: list[int] = []
    preferred: list[np.ndarray] = []
    for _ in range(n_users):
        k = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
        prefs = rng.choice(n_topics, size=min(k, n_topics), replace=False)
        start = np.sort(rng.dirichlet(np.full(len(prefs), 2.0)))[::-1]
        end = start[::-1]  # drift: the favourite at the start is the least liked at the end
        length = min(MIN_SEQUENCE + min(int(rng.geometric(0.2)) - 1, 10), n_warm + 1)
        used: set[int] = set()
        seq: list[int] = []
        topic = int(prefs[0])
        for step in range(length):
            s = step / max(1, length - 1)
            if rng.random() < EXPLORATION:
                topic = int(rng.integers(n_topics))
            else:
                topic = int(rng.choice(prefs, p=(1 - s) * start + s * end))
            if step == length - 1 and cold_by_topic[topic] and rng.random() < COLD_TARGET_PROB:
                seq.append(cold_by_topic[topic][int(rng.integers(len(cold_by_topic[topic])))])
                break
            order = [topic] + [int(p) for p in prefs if p != topic] + list(range(n_topics))
            for t in order:  # fall back to other topics when this one is used up
                ranked = zip(warm_by_topic[t], popularity[t], strict=True)
                free = [(i, w) for i, w in ranked if i not in used]
                if free:
                    p = np.array([w for _, w in free])
                    pick = free[int(rng.choice(len(free), p=p / p.sum()))][0]
                    used.add(pick)
                    seq.append(pick)
                    break
        sequences.append(seq)
        last_topics.append(topic)
        preferred.append(prefs)

    # Every cold-start item is the test target of at least one user, preferably one whose last
    # step was in the item's topic, else one who prefers that topic, else anyone.
    targeted = {seq[-1] for seq in sequences if items[seq[-1]].cold_start}
    for i, it in enumerate(items):
        if not it.cold_start or i in targeted:
            continue
        free_users = [u for u, seq in enumerate(sequences) if not items[seq[-1]].cold_start]
        for candidates in (
            [u for u in free_users if last_topics[u] == it.topic],
            [u for u in free_users if it.topic in preferred[u]],
            free_users,
        ):
            if candidates:
                sequences[candidates[int(rng.integers(len(candidates)))]][-1] = i
                break

    pairs: list[tuple[str, str, int]] = []
    width = max(4, len(str(n_users)))
    for u, seq in enumerate(sequences):
        t = BASE_TIMESTAMP + int(rng.integers(0, 30 * 86_400))
        for i in seq:
            t += int(rng.integers(60, 2 * 86_400))
            pairs.append((f"u{u + 1:0{width}d}", items[i].item, t))
    pairs.sort(key=lambda row: (row[2], row[0]))
    return pairs


# --- files --------------------------------------------------------------------------------------


def _refuse_non_empty(out: Path, force: bool) -> None:
    if force or not out.exists():
        return
    if not out.is_dir():
        raise PipelineError(f"{out} exists and is not a directory")
    held = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    if held:
        raise PipelineError(
            f"{out} is not empty (it holds {shown(held)}): demo-data would replace pairs.csv, "
            "titles.csv and videos/v*.mp4 there; pass --force to do that, or choose an empty "
            "directory"
        )


def _prepare(out: Path) -> None:
    """Create `out` and remove what an earlier run of this generator left there."""
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for stale in (out / "videos").iterdir():
        if stale.is_file() and _ITEM_FILE.fullmatch(stale.name):
            stale.unlink()
    (out / "pairs.csv").unlink(missing_ok=True)  # written last: absent until the run completes
    (out / "interactions.parquet").unlink(missing_ok=True)  # derived from the old pairs.csv


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
