"""What runs on the Ray workers during extraction: the decode task, and the model actor that
captures hidden states and writes each group's shards. The driver side (catalog, allocation,
commits, publishing) is extract.py and pool.py."""

from __future__ import annotations

import errno
import json
import os
import pickle
from typing import Any

import numpy as np

from featurizer.config import ExtractorConfig
from featurizer.decode import FrameTiming
from featurizer.errors import ShardTakenError, StoreFencedError
from featurizer.store import RowWriter, StoreError, StoreIOError
from pipelines.errors import one_line
from pipelines.hooks import WorkerHooks


class DecodeGroup:
    """Ray Data map (a stateless CPU task): a group of videos (the videos whose rows share one
    shard in each prompt's store version) -> the group with each video's sampled frames, stacked
    (n, T, H, W, 3), and each video's frame timing in the source (`frame_indices`, `video_fps`,
    `video_frames`: the Qwen-VL families place frames in time) or the decoder's reason (`error`),
    in the group's JSON `videos`. A video in an object store is fetched here, by the worker; a
    storage that cannot be reached (or refuses the credentials) is the run's error (`fatal`
    "dataset"), not the video's: a missing object is the video's."""

    def __init__(self, frames: int, size: int) -> None:
        self.frames, self.size = frames, size

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        from featurizer.decode import FrameTiming, decode_clip
        from pipelines.dataset.location import fetch_video

        videos = json.loads(record["videos"])
        clips = np.zeros((len(videos), self.frames, self.size, self.size, 3), np.uint8)
        for k, video in enumerate(videos):
            video["error"] = video["fatal"] = ""
            try:
                source = fetch_video(video["path"])
                clips[k], timing = decode_clip(source, self.frames, self.size)
            except StoreIOError as exc:
                timing = FrameTiming.one_per_second(self.frames)
                video["error"], video["fatal"] = one_line(exc, 500), "dataset"
            except Exception as exc:  # noqa: BLE001 - any decoder failure is this video's failure row
                timing = FrameTiming.one_per_second(self.frames)
                video["error"] = one_line(exc, 500)
            video["frame_indices"] = list(timing.indices)
            video["video_fps"] = timing.fps
            video["video_frames"] = timing.total_frames
        record["videos"] = json.dumps(videos)
        record["frames"] = clips
        return record


class ExtractVideos:
    """Ray Data actor: loads the frozen model once; per group of videos (one batch), captures
    each video's hidden states under each prompt its record asks for (a row >= 0 in that prompt's
    store version), merges them to K rows per layer, gathers each prompt's rows, and at the end
    of the group writes each prompt's shard, whole, once (featurizer.store.writing). One result
    row per video: its checksum and offset per prompt, or why it failed.

    Errors of one video become that video's failure row (per prompt where only that prompt's
    row failed). Errors of the run (the model cannot be loaded, the store's storage is full,
    read-only or unreachable) come back in the `fatal` column ("model" or "storage") and the
    driver stops with one line: a model that fails to load is not a failed actor start for Ray
    to retry and report as a traceback."""

    def __init__(
        self,
        config: ExtractorConfig,
        row_writers: list[RowWriter],
        hooks: WorkerHooks | None = None,
    ) -> None:
        import torch

        from featurizer.extractor import VideoLLMExtractor

        # Ray sets OMP_NUM_THREADS to the actor's CPUs; torch does not read it after import.
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or 1)
        self.hooks = hooks  # None unless a test installed some (pipelines.hooks)
        if hooks is not None:
            hooks.worker_started("extract")
        self.templates = [member.prompt_template for member in config.members()]
        self.extractor: Any = None
        self.load_error = ""
        try:
            self.extractor = VideoLLMExtractor(config)
        except Exception as exc:  # noqa: BLE001 - reported by the driver as the run's error
            self.load_error = _model_error(config.model, exc)
        self.row_writers = row_writers

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in _RESULT_COLUMNS}
        for videos, frames in zip(batch["videos"], batch["frames"], strict=True):
            self._group(json.loads(videos), frames, out)
        return {name: _column(name, values) for name, values in out.items()}

    def _group(self, videos: list[dict[str, Any]], frames: np.ndarray, out: dict) -> None:
        P = len(self.templates)
        results = []
        for k, video in enumerate(videos):
            result = _Result(video["item"], P)
            results.append(result)
            rows = video["rows"]
            if self.load_error:
                result.fail("extract", self.load_error, fatal="model")
                continue
            if video["error"]:
                result.fail("decode", video["error"], fatal=video.get("fatal", ""))
                continue
            wanted = [j for j in range(P) if rows[j] >= 0]
            try:
                result.stage = "extract"
                extracted = self.extractor.extract_prompts(
                    frames[k],
                    str(video["title"]),
                    _timing(video),
                    [self.templates[j] for j in wanted],
                )
                if self.hooks is not None:
                    self.hooks.model_called(str(video["item"]))
                result.stage = "write"
                for j, features in zip(wanted, extracted, strict=True):
                    try:
                        result.checksum[j] = self.row_writers[j].write(
                            int(rows[j]), features.features, item=str(video["item"])
                        )
                        result.n_old[j], result.n_new[j] = features.n_old, features.n_new
                    except Exception as exc:  # noqa: BLE001 - this prompt's row only
                        result.member_errors[str(j)] = one_line(exc, 500)
                if len(result.member_errors) == len(wanted):
                    result.fail("write", next(iter(result.member_errors.values())))
                else:
                    result.stage = ""
            except Exception as exc:  # noqa: BLE001 - one video's failure must not stop the others
                result.fail(result.stage, one_line(exc, 500))
        self._flush(videos, results)
        for result in results:
            result.append_to(out)

    def _flush(self, videos: list[dict[str, Any]], results: list[_Result]) -> None:
        """Write each prompt's shard of the group; a prompt whose shard cannot be written takes
        its rows of the group with it (a full disk or an unreachable store stops the run)."""
        for j, writer in enumerate(self.row_writers):
            try:
                offsets = writer.flush()
            except ShardTakenError:  # its rows need a fresh shard: the driver gives them one
                for video, result in zip(videos, results, strict=True):
                    if video["rows"][j] >= 0 and not result.error:
                        result.again = True
                continue
            except (OSError, StoreError) as exc:
                fatal = isinstance(exc, (StoreIOError, StoreFencedError)) or (
                    getattr(exc, "errno", None) in _STORAGE_ERRNOS
                )
                for video, result in zip(videos, results, strict=True):
                    if (
                        video["rows"][j] >= 0
                        and not result.error
                        and str(j) not in result.member_errors
                    ):
                        result.fail("write", one_line(exc, 500), fatal="storage" if fatal else "")
                continue
            for video, result in zip(videos, results, strict=True):
                if video["rows"][j] in offsets:
                    result.offset[j] = offsets[video["rows"][j]]


_RESULT_COLUMNS = (
    "item", "checksum", "offset", "n_old", "n_new", "member_errors", "stage", "error", "fatal",
    "again",
)  # fmt: skip


class _Result:
    """One video's outcome in the group, as the driver reads it."""

    def __init__(self, item: str, prompts: int) -> None:
        self.item, self.stage, self.error, self.fatal = item, "", "", ""
        self.again = False  # a shard of its group was taken: extract it again in a fresh one
        self.checksum = np.zeros(prompts, np.uint64)
        self.offset = np.full(prompts, -1, np.int64)
        self.n_old = np.zeros(prompts, np.int64)
        self.n_new = np.zeros(prompts, np.int64)
        self.member_errors: dict[str, str] = {}

    def fail(self, stage: str, error: str, fatal: str = "") -> None:
        self.stage, self.error = stage, error
        self.fatal = self.fatal or fatal

    def append_to(self, out: dict[str, list[Any]]) -> None:
        out["item"].append(self.item)
        out["checksum"].append(self.checksum)
        out["offset"].append(self.offset)
        out["n_old"].append(self.n_old)
        out["n_new"].append(self.n_new)
        out["member_errors"].append(json.dumps(self.member_errors))
        out["stage"].append(self.stage if self.error else "")
        out["error"].append(self.error)
        out["fatal"].append(self.fatal)
        out["again"].append(self.again)


def _column(name: str, values: list[Any]) -> np.ndarray:
    if name in ("checksum", "offset", "n_old", "n_new"):
        return np.stack(values) if values else np.zeros((0, 1), np.int64)
    return np.array(values, dtype=object)


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _timing(video: dict[str, Any]) -> FrameTiming:
    return FrameTiming(
        indices=tuple(int(j) for j in video["frame_indices"]),
        fps=float(video["video_fps"]),
        total_frames=int(video["video_frames"]),
    )


def _model_error(model: str, exc: BaseException) -> str:
    """One line for a model that cannot be loaded. A pickled weight file that holds more than
    tensors is refused by torch.load(weights_only=True) (transformers loads .bin files that
    way)."""
    if isinstance(exc, pickle.UnpicklingError):
        from recmodel.runfiles import refused_pickle

        return refused_pickle(f"model {model}", exc, what="a pickled weight file")
    text = one_line(exc, 500)
    return text if str(model) in text else f"model {model}: cannot load: {text}"
