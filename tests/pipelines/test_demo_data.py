"""The synthetic demo dataset: MicroLens layout, deterministic, and content predicts preference."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import decord
import numpy as np
import pytest

from pipelines.demo.generate import make_demo_dataset, read_topics
from pipelines.demo.videos import FRAME_SIZE
from pipelines.errors import PipelineError

SMALL = {"n_videos": 6, "n_users": 10}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _truth(dataset: Path) -> dict[str, dict[str, str]]:
    return {row["item"]: row for row in _rows(dataset / "topics.csv")}


def _sequences(dataset: Path) -> dict[str, list[str]]:
    """user -> items in time order."""
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in _rows(dataset / "pairs.csv"):
        by_user[row["user"]].append((int(row["timestamp"]), row["item"]))
    return {user: [item for _, item in sorted(rows)] for user, rows in by_user.items()}


def _frames(video: Path) -> np.ndarray:
    reader = decord.VideoReader(str(video))
    return reader.get_batch(list(range(len(reader)))).asnumpy()  # (T, H, W, 3)


def test_same_seed_gives_identical_dataset(tmp_path: Path) -> None:
    a = make_demo_dataset(tmp_path / "a", seed=3, **SMALL)
    b = make_demo_dataset(tmp_path / "b", seed=3, **SMALL)

    for name in ("pairs.csv", "titles.csv", "topics.csv"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    videos = sorted(p.name for p in (a.path / "videos").iterdir())
    assert videos == sorted(p.name for p in (b.path / "videos").iterdir())
    for name in videos:
        video_a, video_b = a.path / "videos" / name, b.path / "videos" / name
        assert np.array_equal(_frames(video_a), _frames(video_b)), name
        assert video_a.read_bytes() == video_b.read_bytes(), name


def test_another_seed_gives_different_dataset(tmp_path: Path) -> None:
    a = make_demo_dataset(tmp_path / "a", seed=3, **SMALL)
    b = make_demo_dataset(tmp_path / "b", seed=4, **SMALL)

    assert (a.path / "pairs.csv").read_bytes() != (b.path / "pairs.csv").read_bytes()
    assert (a.path / "titles.csv").read_bytes() != (b.path / "titles.csv").read_bytes()


def test_files_follow_the_microlens_layout(demo_dataset: Path) -> None:
    with (demo_dataset / "pairs.csv").open(encoding="utf-8") as f:
        assert f.readline() == "user,item,timestamp\n"
    with (demo_dataset / "titles.csv").open(encoding="utf-8") as f:
        assert f.readline() == "item,title\n"
    pairs = _rows(demo_dataset / "pairs.csv")
    assert all(row["timestamp"].isdigit() for row in pairs)
    titled = {row["item"] for row in _rows(demo_dataset / "titles.csv")}
    assert {row["item"] for row in pairs} <= titled
    videos = {p.stem for p in (demo_dataset / "videos").glob("*.mp4")}
    assert videos <= titled
    assert all(item.startswith("v") and item[1:].isdigit() for item in titled)


def test_every_video_decodes_with_decord_to_its_frame_count(demo_dataset: Path) -> None:
    truth = _truth(demo_dataset)
    videos = sorted((demo_dataset / "videos").glob("*.mp4"))
    assert len(videos) == 12

    for video in videos:
        frames = _frames(video)
        assert frames.shape == (int(truth[video.stem]["n_frames"]), FRAME_SIZE, FRAME_SIZE, 3)
        assert 16 <= frames.shape[0] <= 24


def test_some_items_have_no_video_but_titles_and_interactions(demo_dataset: Path) -> None:
    truth = _truth(demo_dataset)
    id_only = [item for item, row in truth.items() if row["has_video"] == "0"]
    interacted = {row["item"] for row in _rows(demo_dataset / "pairs.csv")}
    titled = {row["item"] for row in _rows(demo_dataset / "titles.csv")}

    assert id_only
    for item in id_only:
        assert not (demo_dataset / "videos" / f"{item}.mp4").exists()
        assert item in titled and item in interacted


def test_cold_start_items_appear_only_as_last_interactions(demo_dataset: Path) -> None:
    cold = {item for item, row in _truth(demo_dataset).items() if row["cold_start"] == "1"}
    sequences = _sequences(demo_dataset)

    assert cold
    assert all(not cold & set(items[:-1]) for items in sequences.values())
    targets = Counter(items[-1] for items in sequences.values())
    assert all(targets[item] >= 1 for item in cold)
    assert all((demo_dataset / "videos" / f"{item}.mp4").is_file() for item in cold)


def test_users_have_5_to_15_interactions_in_increasing_time(demo_dataset: Path) -> None:
    by_user: dict[str, list[int]] = defaultdict(list)
    for row in _rows(demo_dataset / "pairs.csv"):
        by_user[row["user"]].append(int(row["timestamp"]))

    assert len(by_user) == 40
    for times in by_user.values():
        assert 5 <= len(times) <= 15
        assert len(set(times)) == len(times)  # a strict order: the split is unambiguous


def test_titles_name_the_topic(demo_dataset: Path) -> None:
    topics = read_topics(demo_dataset)

    for row in _rows(demo_dataset / "titles.csv"):
        assert row["title"].startswith(f"{topics[row['item']]}: ")


def test_topics_are_visually_distinct(demo_dataset: Path) -> None:
    topics = read_topics(demo_dataset)
    videos = sorted((demo_dataset / "videos").glob("*.mp4"))
    mean_colour = {v.stem: _frames(v).reshape(-1, 3).mean(axis=0) for v in videos}

    within, across = [], []
    for i, a in enumerate(videos):
        for b in videos[i + 1 :]:
            distance = float(np.linalg.norm(mean_colour[a.stem] - mean_colour[b.stem]))
            (within if topics[a.stem] == topics[b.stem] else across).append(distance)
    assert len(set(topics.values())) >= 3
    assert max(within) < min(across)


def test_next_item_topic_is_mostly_one_seen_in_the_history(demo_dataset: Path) -> None:
    topics = read_topics(demo_dataset)
    sequences = _sequences(demo_dataset).values()

    seen = [topics[items[-1]] in {topics[i] for i in items[:-1]} for items in sequences]
    assert np.mean(seen) >= 0.6  # 3 topics: a random guess would be well below


def test_popularity_is_long_tailed(tmp_path: Path) -> None:
    # 12 videos are too few: users see most of them. 24 leave room for a tail.
    dataset = make_demo_dataset(tmp_path, n_videos=24, n_users=40, seed=0).path
    truth = _truth(dataset)
    counts = Counter(row["item"] for row in _rows(dataset / "pairs.csv"))
    warm = sorted(counts[item] for item, row in truth.items() if row["cold_start"] == "0")

    assert warm[-1] >= 3 * warm[0]
    assert warm[-1] >= 1.5 * warm[len(warm) // 2]


def test_forced_rerun_replaces_the_previous_dataset(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path, n_videos=8, n_users=10, seed=0)
    (tmp_path / "interactions.parquet").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("mine")

    result = make_demo_dataset(tmp_path, n_videos=4, n_users=10, seed=0, force=True)

    assert len(list((tmp_path / "videos").glob("*.mp4"))) == result.n_videos == 4
    assert not (tmp_path / "interactions.parquet").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_describe_is_one_line_with_the_counts(demo_dataset: Path, tmp_path: Path) -> None:
    result = make_demo_dataset(tmp_path, seed=0, **SMALL)

    text = result.describe()
    assert "\n" not in text
    assert f"{result.n_users} users" in text and f"{result.n_interactions} interactions" in text
    assert result.n_items > result.n_videos == 6
    assert result.cold_start_items


def test_too_few_videos_raise_pipeline_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="--videos"):
        make_demo_dataset(tmp_path, n_videos=2, n_users=10)


def test_non_empty_directory_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("user,item,timestamp\nu1,mine,1\n")
    (tmp_path / "videos").mkdir()

    with pytest.raises(
        PipelineError, match=r"is not empty \(it holds pairs.csv, videos/\).*--force"
    ):
        make_demo_dataset(tmp_path, n_videos=4, n_users=10, seed=0)

    assert (tmp_path / "pairs.csv").read_text() == "user,item,timestamp\nu1,mine,1\n"
    assert not list((tmp_path / "videos").iterdir())
