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
- Items fall into topics (up to 8), each with its own visual signature: palette, shape and
  motion. Videos of a topic vary in position, size, speed and a little colour, and their
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
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from featurizer.errors import shown
from pipelines.errors import PipelineError

FRAME_SIZE = 96  # pixels, square; even, as yuv420p needs
FPS = 8
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


@dataclass(frozen=True)
class Topic:
    """A visual signature: palette, shape and motion, plus the words its titles use."""

    name: str
    background: tuple[int, int, int]
    foreground: tuple[int, int, int]
    shape: str  # circle | stripes | ring | square | triangle | star | checker | cross
    velocity: tuple[float, float]  # pixels per frame (x, y)
    spin: float  # radians per frame
    pulse: float  # relative size amplitude, one cycle per 2 s
    subjects: tuple[str, ...]
    details: tuple[str, ...]


# Palettes are far apart in mean colour, so even a trivial colour statistic separates topics.
TOPICS: tuple[Topic, ...] = (
    Topic("cooking", (245, 225, 190), (200, 50, 30), "circle", (0.6, 0.2), 0.0, 0.25,
          ("pasta", "ramen", "tomato soup", "pancakes", "curry", "sourdough"),
          ("in 10 minutes", "for beginners", "grandma's recipe", "street-food style")),
    Topic("football", (20, 150, 40), (245, 245, 245), "stripes", (2.0, 0.0), 0.0, 0.0,
          ("free kicks", "goal highlights", "dribbling drills", "penalty shootout", "derby"),
          ("top 10", "slow motion", "training session", "last minute")),
    Topic("ocean", (20, 60, 140), (90, 200, 230), "ring", (0.0, 0.8), 0.0, 0.45,
          ("surfing", "coral reef", "whale watching", "big waves", "scuba dive"),
          ("at sunrise", "drone view", "4k", "off the coast")),
    Topic("gaming", (230, 230, 40), (200, 0, 200), "square", (2.2, 1.6), 0.25, 0.0,
          ("speedrun", "boss fight", "pixel platformer", "ranked match", "level editor"),
          ("no commentary", "world record", "funny moments", "tutorial")),
    Topic("forest", (120, 75, 35), (240, 170, 40), "triangle", (0.0, -0.5), 0.05, 0.1,
          ("autumn hike", "mushroom foraging", "campfire", "pine trail", "owl sounds"),
          ("relaxing", "rainy day", "ASMR", "hidden path")),
    Topic("space", (8, 8, 30), (250, 250, 210), "star", (1.0, 1.0), 0.08, 0.3,
          ("rocket launch", "nebula timelapse", "moon landing", "ISS tour", "black holes"),
          ("explained", "live", "real footage", "in 60 seconds")),
    Topic("fashion", (240, 60, 160), (20, 20, 20), "checker", (0.7, 0.7), 0.03, 0.0,
          ("street style", "runway", "thrift haul", "capsule wardrobe", "sneaker review"),
          ("spring edition", "on a budget", "try-on", "Paris week")),
    Topic("cars", (150, 150, 160), (220, 20, 20), "cross", (-2.4, 0.0), 0.0, 0.0,
          ("drift", "rally stage", "engine swap", "night drive", "track day"),
          ("onboard", "POV", "full build", "at the limit")),
)  # fmt: skip


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
    # pairs.csv last: its presence means the dataset is complete (pipelines.demo relies on it).
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


# --- videos -----------------------------------------------------------------------------------


def render_frames(topic: Topic, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one video in `topic`'s signature, varied by `rng`."""
    size = FRAME_SIZE
    jitter = rng.integers(-8, 9, size=(2, 3))
    bg = np.clip(np.array(topic.background) + jitter[0], 0, 255).astype(np.float32)
    fg = np.clip(np.array(topic.foreground) + jitter[1], 0, 255).astype(np.float32)
    scale = float(rng.uniform(0.85, 1.15))
    radius = size * 0.2 * scale
    speed = float(rng.uniform(0.8, 1.2))
    x0, y0 = rng.uniform(radius, size - radius, size=2)
    angle0 = float(rng.uniform(0, 2 * math.pi))
    phase = float(rng.uniform(0, 2 * math.pi))
    period = float(rng.uniform(10, 16))  # stripes and checker cells, pixels

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # (H, W)
    shade = (1.0 - 0.2 * ys / size)[..., None]  # background: a soft vertical gradient
    background = bg * shade  # (H, W, 3)
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    for t in range(n_frames):
        r = radius * (1 + topic.pulse * math.sin(phase + 2 * math.pi * t / (2 * FPS)))
        cx = x0 + speed * topic.velocity[0] * t
        cy = y0 + speed * topic.velocity[1] * t
        if topic.shape not in ("stripes", "checker"):  # shapes bounce off the edges
            cx, cy = _bounce(cx, r, size - r), _bounce(cy, r, size - r)
        a = angle0 + topic.spin * t
        u = (xs - cx) * math.cos(a) + (ys - cy) * math.sin(a)
        v = -(xs - cx) * math.sin(a) + (ys - cy) * math.cos(a)
        mask = _shape_mask(topic.shape, u, v, r, period)
        frames[t] = np.where(mask[..., None], fg, background).round().astype(np.uint8)
    return frames


def _bounce(x: float, lo: float, hi: float) -> float:
    span = max(hi - lo, 1e-6)
    y = (x - lo) % (2 * span)
    return lo + span - abs(y - span)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float, period: float) -> np.ndarray:
    if shape == "circle":
        return u**2 + v**2 < r**2
    if shape == "ring":
        d = np.sqrt(u**2 + v**2)
        return (d < r) & (d > 0.6 * r)
    if shape == "square":
        return np.maximum(abs(u), abs(v)) < 0.85 * r
    if shape == "star":  # four points: an astroid
        return np.sqrt(abs(u)) + np.sqrt(abs(v)) < math.sqrt(1.2 * r)
    if shape == "triangle":
        return (v < 0.6 * r) & (v > -r + 1.8 * abs(u))
    if shape == "cross":
        return ((abs(u) < r / 3) & (abs(v) < r)) | ((abs(v) < r / 3) & (abs(u) < r))
    if shape == "stripes":
        return np.sin(2 * math.pi * u / period) > 0.45
    if shape == "checker":
        return np.sin(2 * math.pi * u / period) * np.sin(2 * math.pi * v / period) > 0
    raise ValueError(f"unknown shape {shape!r}")


def _codec() -> str:
    import av

    # H.264 (libx264) is what MicroLens ships and every decoder reads; a PyAV wheel built
    # without it still has FFmpeg's native MPEG-4 Part 2 encoder, which decord reads as well.
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as an mp4; same frames, same bytes."""
    import av

    codec = _codec()
    path.parent.mkdir(parents=True, exist_ok=True)
    # bitexact: no encoder version strings in the container, so bytes depend on frames only.
    with av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        # x264's macroblock tree (mbtree) made the bytes of these tiny clips vary from run to
        # run; without it, and with one thread, the same frames give the same bytes.
        options = {"threads": "1"}
        if codec == "libx264":
            options.update({"preset": "veryfast", "crf": "18", "x264-params": "mbtree=0"})
        else:
            options["qscale"] = "3"
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for t, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


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
