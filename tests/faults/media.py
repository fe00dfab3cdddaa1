"""Video files with faults, made with PyAV (ffmpeg): each writer makes a real container."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def gradient_frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """n smooth RGB frames (small when encoded), frame i's green level 10*i: the sampled frame
    can be told from its mean green."""
    ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    frames = []
    for i in range(n):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = ramp
        frame[..., 1] = (10 * i) % 256
        frames.append(frame)
    return frames


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int = 8,
    pts_ms: list[int] | None = None,
    faststart: bool = False,
) -> Path:
    """H.264 in MP4. `pts_ms`: each frame's timestamp in milliseconds (variable frame rate);
    `faststart`: the index (moov) before the frames, as streaming files have it."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        height, width = frames[0].shape[:2]
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An MP4 with one AAC audio stream (a 440 Hz tone) and no video stream."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        n = int(seconds * rate)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)[None, :]
        for start in range(0, n, 1024):
            chunk = np.ascontiguousarray(tone[:, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
