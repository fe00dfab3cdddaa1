"""Video decoding with decord: T frames sampled uniformly over the whole video, decoded straight
at the model's resolution, and the source file's content hash.

Frame sampling rule (`sample_indices`): the video's n frames are cut into T equal segments and the
frame at the centre of each is taken, index_i = floor((i + 0.5) * n / T) for i = 0..T-1. The first
and last segments are covered as well as the middle; for n >= T the indices are strictly
increasing. A video shorter than T frames (n < T) gets the same rule, which then repeats frames
(e.g. n=3, T=8 -> 0 0 0 1 1 2 2 2): every video yields exactly T frames, in temporal order.

Frames are resized by the decoder itself to size x size (`VideoReader(width=, height=)`), which
stretches rather than crops: the whole picture stays in view, as the LLaVA processors see it.

`decode_clip` also returns where the sampled frames sit in the source (`FrameTiming`: their frame
indices and the video's frame rate). Families that position frames in time (Qwen-VL's M-RoPE,
Qwen3-VL's "<t seconds>" prompt text) read it; the LLaVA families do not.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurizer.errors import one_line


class DecodeError(ValueError):
    """A video that cannot be decoded; the message is one line naming the file and the reason."""


@dataclass(frozen=True)
class VideoBytes:
    """A video's bytes as fetched from where it is stored (an object store), decoded from
    memory; `name` names it in messages, as a file's name does."""

    name: str
    data: bytes


@dataclass(frozen=True)
class FrameTiming:
    """Where T sampled frames sit in their video: frame indices at a frame rate (times in
    seconds are index / fps)."""

    indices: tuple[int, ...]  # (T,) source frame indices, in temporal order
    fps: float  # the source video's average frame rate
    total_frames: int  # frames in the source video

    @classmethod
    def one_per_second(cls, frames: int) -> FrameTiming:
        """The timing assumed for frames that come without a source video: 1 s apart."""
        return cls(indices=tuple(range(frames)), fps=1.0, total_frames=frames)


def sample_indices(n_frames: int, frames: int) -> np.ndarray:
    """The centres of `frames` equal segments over `n_frames` frames (repeats if n < T)."""
    if n_frames <= 0 or frames <= 0:
        raise ValueError(f"need at least one frame to sample from and to: {n_frames}, {frames}")
    i = np.arange(frames, dtype=np.float64)
    idx = np.floor((i + 0.5) * n_frames / frames).astype(np.int64)
    return np.clip(idx, 0, n_frames - 1)


def decode_video(source: Path | VideoBytes, frames: int, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8 RGB frames sampled uniformly over the whole video (a file, or
    its bytes), decoded in one `get_batch` call at the target size. Raises DecodeError for
    anything undecodable."""
    return decode_clip(source, frames, size)[0]


def decode_clip(
    source: Path | VideoBytes, frames: int, size: int
) -> tuple[np.ndarray, FrameTiming]:
    """`decode_video`'s frames and their timing in the source video."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # ffmpeg's own stderr noise; reasons come below
    if isinstance(source, VideoBytes):
        name, size_bytes, opened = source.name, len(source.data), io.BytesIO(source.data)
    else:
        path = Path(source)
        if not path.is_file():
            raise DecodeError(f"{path.name}: cannot decode: no such file")
        name, size_bytes, opened = path.name, path.stat().st_size, str(path)
    if size_bytes == 0:
        raise DecodeError(f"{name}: cannot decode: empty file (0 bytes)")
    try:
        reader = decord.VideoReader(opened, width=size, height=size)
        n = len(reader)
        if n == 0:
            raise DecodeError(f"{name}: cannot decode: the video has no frames")
        indices = sample_indices(n, frames).tolist()
        batch = reader.get_batch(indices).asnumpy()  # (T, H, W, 3)
        fps = float(reader.get_avg_fps())
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - decord raises RuntimeError/DECORDError for bad input
        raise DecodeError(f"{name}: cannot decode: {_reason(exc, source, name)}") from None
    if batch.shape != (frames, size, size, 3) or batch.dtype != np.uint8:
        got = f"{batch.shape} {batch.dtype}"
        raise DecodeError(f"{name}: cannot decode: decoder returned {got}")
    if not fps > 0:  # a stream without a usable rate: frames stay in order, 1 s apart
        fps = 1.0
    return batch, FrameTiming(indices=tuple(int(i) for i in indices), fps=fps, total_frames=n)


# decord prefixes its C++ checks with "[12:34:56] /build/path/src/video/video_reader.cc:151: "
_DECORD_LOCATION = re.compile(r"\[\d{2}:\d{2}:\d{2}\] \S+\.(?:cc|cpp|h):\d+: ")


def _reason(exc: BaseException, source: Path | VideoBytes, name: str) -> str:
    """ffmpeg's own diagnosis through PyAV where that is installed and finds one (e.g. "moov
    atom not found" surfaces as "Invalid data found when processing input", an audio-only file
    as "no video stream"), else decord's message on one line, without its source location
    (decord's own text is often only "Error reading FILE..." or a failed internal check)."""
    detail = _ffmpeg_reason(source)
    if detail:
        return detail
    text = one_line(exc)
    if not isinstance(source, VideoBytes):
        text = text.replace(str(source), name)
    return _DECORD_LOCATION.sub("", text)


def _ffmpeg_reason(source: Path | VideoBytes) -> str | None:
    try:
        import av
    except ImportError:
        return None
    opened = io.BytesIO(source.data) if isinstance(source, VideoBytes) else str(source)
    try:
        with av.open(opened) as container:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                return f"no video stream (streams: {', '.join(kinds)})"
            stream = container.streams.video[0]
            declared = int(stream.frames or 0)
            if declared:
                present = sum(1 for packet in container.demux(stream) if packet.size)
                if present < declared:
                    return f"truncated: {present} of {declared} frames present"
    except Exception as exc:  # noqa: BLE001 - any probe failure is only extra detail
        text = getattr(exc, "strerror", None) or str(exc)
        return " ".join(str(text).split()) or None
    return None


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (never the whole file in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
