"""Decoding: T frames sampled at segment centres, decoded at the target size; bad files are
DecodeErrors that name the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from featurizer.decode import DecodeError, decode_video, sample_indices, sha256_file

LEVEL = 8  # frame i of a test video is a flat grey of brightness i * LEVEL


def write_video(path: Path, n_frames: int, width: int = 64, height: int = 48) -> Path:
    """A small H.264 mp4 whose frame i is flat grey i * LEVEL, so a frame's index is readable."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            image = np.full((height, width, 3), i * LEVEL, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_indices(frames: np.ndarray) -> list[int]:
    return [int(round(float(f.mean()) / LEVEL)) for f in frames]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    good = write_video(root / "thirty.mp4", 30)
    short = write_video(root / "five.mp4", 5)
    data = good.read_bytes()
    bad = {
        "zero_byte.mp4": b"",
        "truncated.mp4": data[: len(data) // 2],
        "random_bytes.mp4": np.random.default_rng(0).bytes(4096),
        "text_file.mp4": b"this is not a video\n" * 20,
    }
    for name, content in bad.items():
        (root / name).write_bytes(content)
    return {"thirty": good, "five": short, **{name: root / name for name in bad}}


def test_decode_returns_T_frames_at_size_as_uint8(videos: dict[str, Path]) -> None:
    frames = decode_video(videos["thirty"], frames=8, size=32)

    assert frames.shape == (8, 32, 32, 3)
    assert frames.dtype == np.uint8


def test_frames_are_sampled_at_the_centres_of_equal_segments(videos: dict[str, Path]) -> None:
    frames = decode_video(videos["thirty"], frames=8, size=32)

    assert frame_indices(frames) == [1, 5, 9, 13, 16, 20, 24, 28]  # floor((i + .5) * 30 / 8)


def test_video_shorter_than_T_repeats_frames_in_order(videos: dict[str, Path]) -> None:
    frames = decode_video(videos["five"], frames=8, size=32)

    assert frames.shape == (8, 32, 32, 3)
    assert frame_indices(frames) == [0, 0, 1, 2, 2, 3, 4, 4]


@pytest.mark.parametrize(
    ("n", "t", "expected"),
    [
        (8, 8, list(range(8))),
        (30, 8, [1, 5, 9, 13, 16, 20, 24, 28]),
        (3, 8, [0, 0, 0, 1, 1, 2, 2, 2]),
    ],
)
def test_sample_indices_are_segment_centres(n: int, t: int, expected: list[int]) -> None:
    assert sample_indices(n, t).tolist() == expected


@pytest.mark.parametrize(
    "name", ["zero_byte.mp4", "truncated.mp4", "random_bytes.mp4", "text_file.mp4"]
)
def test_undecodable_file_raises_decode_error_naming_the_file(
    videos: dict[str, Path], name: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode_video(videos[name], frames=8, size=32)

    message = str(info.value)
    assert name in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_missing_file_raises_decode_error(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="nothing.mp4: cannot decode: no such file"):
        decode_video(tmp_path / "nothing.mp4", frames=8, size=32)


def test_sha256_file_is_the_hash_of_the_bytes(videos: dict[str, Path]) -> None:
    path = videos["thirty"]

    assert sha256_file(path, chunk_bytes=100) == hashlib.sha256(path.read_bytes()).hexdigest()
