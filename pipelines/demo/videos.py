"""The demo's videos: topics with distinct visual signatures (palette, shape, motion), drawn as
96x96 frames and encoded as H.264 MP4 clips. Palettes are far apart in mean colour, so even a
trivial colour statistic separates topics: content predicts preference by construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

FRAME_SIZE = 96  # pixels, square; even, as yuv420p needs
FPS = 8


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
