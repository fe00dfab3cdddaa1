"""What runs on the Ray workers during extraction: the decode task, the model actor that
captures hidden states and writes each video's row, and the test-only fault injection they
honour. The driver side (catalog, allocation, commits, publishing) is pipelines.extract."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurizer.config import ExtractorConfig
from featurizer.decode import FrameTiming
from featurizer.store import RowWriter
from pipelines.errors import PipelineError, one_line

# Test-only instrumentation and fault injection (tests/faults). Unset in normal use, and then
# nothing below does anything. The driver reads them and hands them to the actors (an actor's
# environment is the Ray node's, fixed when Ray started, not this process's current one).
INVOCATION_LOG_ENV = "LINKEDOUT_INVOCATION_LOG"  # FILE: "<item>\n" appended after each model call
KILL_ITEMS_ENV = "LINKEDOUT_FAULT_KILL_ITEMS"  # a,b: the actor dies (os._exit) on these, every time
KILL_ONCE_ITEMS_ENV = "LINKEDOUT_FAULT_KILL_ONCE_ITEMS"  # a,b: ... only the first time, which
FAULT_MARKER_DIR_ENV = "LINKEDOUT_FAULT_MARKER_DIR"  # is remembered by a marker file in this dir


@dataclass(frozen=True)
class FaultInjection:
    """Test-only hooks of the extraction actors, from the environment variables above: count
    model calls, and die the way a segfaulting decoder or an OOM-killed worker would (a hard
    process exit in the middle of a batch: after the model call, before the row is written)."""

    invocation_log: str | None = None
    kill_items: frozenset[str] = frozenset()
    kill_once_items: frozenset[str] = frozenset()
    marker_dir: str | None = None

    @classmethod
    def from_env(cls) -> FaultInjection | None:
        env = os.environ
        faults = cls(
            invocation_log=env.get(INVOCATION_LOG_ENV) or None,
            kill_items=frozenset(_csv(env.get(KILL_ITEMS_ENV, ""))),
            kill_once_items=frozenset(_csv(env.get(KILL_ONCE_ITEMS_ENV, ""))),
            marker_dir=env.get(FAULT_MARKER_DIR_ENV) or None,
        )
        if faults.kill_once_items and not faults.marker_dir:
            raise PipelineError(f"{KILL_ONCE_ITEMS_ENV} needs {FAULT_MARKER_DIR_ENV}")
        return faults if faults != cls() else None

    def after_model_call(self, item: str) -> None:
        if self.invocation_log:
            fd = os.open(self.invocation_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{item}\n".encode())
            finally:
                os.close(fd)
        if item in self.kill_items:
            os._exit(1)
        if item in self.kill_once_items and self.marker_dir:
            marker = Path(self.marker_dir) / hashlib.sha256(item.encode()).hexdigest()
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                return
            os._exit(1)


def _csv(value: str) -> list[str]:
    return [v for v in (s.strip() for s in value.split(",")) if v]


class DecodeVideo:
    """Ray Data map (a stateless CPU task): a record → the record with its sampled frames and
    their timing in the source (`frame_indices`, `video_fps`, `video_frames`: the Qwen-VL
    families place frames in time), or with the decoder's reason in `error`."""

    def __init__(self, frames: int, size: int) -> None:
        self.frames, self.size = frames, size

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        from featurizer.decode import FrameTiming, decode_clip

        try:
            record["frames"], timing = decode_clip(Path(record["path"]), self.frames, self.size)
            record["error"] = ""
        except Exception as exc:  # noqa: BLE001 - any decoder failure is this video's failure row
            record["frames"] = np.zeros((self.frames, self.size, self.size, 3), np.uint8)
            timing = FrameTiming.one_per_second(self.frames)
            record["error"] = one_line(exc, 500)
        record["frame_indices"] = np.asarray(timing.indices, np.int64)
        record["video_fps"] = timing.fps
        record["video_frames"] = timing.total_frames
        return record


class ExtractVideos:
    """Ray Data actor: loads the frozen model once; per video captures the hidden states under
    each prompt its record asks for (a row >= 0 in that prompt's store version), merges them to
    K rows per layer and writes each prompt's row (its own chunk) into that prompt's version.

    Errors of one video become that video's failure row (per prompt where only that prompt's
    row failed). Errors of the run (the model cannot be loaded, the store's disk is full or
    read-only) come back in the `fatal` column ("model" or "storage") and the driver stops with
    one line: a model that fails to load is not a failed actor start for Ray to retry and
    report as a traceback."""

    def __init__(
        self,
        config: ExtractorConfig,
        row_writers: list[RowWriter],
        faults: FaultInjection | None = None,
    ) -> None:
        import torch

        from featurizer.extractor import VideoLLMExtractor

        # Ray sets OMP_NUM_THREADS to the actor's CPUs; torch does not read it after import.
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or 1)
        self.templates = [member.prompt_template for member in config.members()]
        self.extractor: Any = None
        self.load_error = ""
        try:
            self.extractor = VideoLLMExtractor(config)
        except Exception as exc:  # noqa: BLE001 - reported by the driver as the run's error
            self.load_error = _model_error(config.model, exc)
        self.row_writers = row_writers
        self.faults = faults  # None unless a test injects faults

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, P = len(batch["item"]), len(self.templates)
        stage = np.array(["decode" if batch["error"][i] else "" for i in range(n)], dtype=object)
        error = np.array([str(e) for e in batch["error"]], dtype=object)
        n_old = np.zeros((n, P), np.int64)
        n_new = np.zeros((n, P), np.int64)
        checksum = np.zeros((n, P), np.uint64)
        member_errors = np.array(["{}"] * n, dtype=object)  # JSON: prompt -> its row's error
        fatal = np.array([""] * n, dtype=object)
        for i in range(n):
            if self.load_error:
                stage[i], error[i], fatal[i] = "extract", self.load_error, "model"
                continue
            if error[i]:
                continue
            rows = np.asarray(batch["rows"][i])
            wanted = [j for j in range(P) if rows[j] >= 0]
            try:
                stage[i] = "extract"
                videos = self.extractor.extract_prompts(
                    batch["frames"][i],
                    str(batch["title"][i]),
                    _timing(batch, i),
                    [self.templates[j] for j in wanted],
                )
                if self.faults is not None:
                    self.faults.after_model_call(str(batch["item"][i]))
                stage[i] = "write"
                failed: dict[str, str] = {}
                for j, video in zip(wanted, videos, strict=True):
                    try:
                        checksum[i, j] = self.row_writers[j].write(int(rows[j]), video.features)
                        n_old[i, j], n_new[i, j] = video.n_old, video.n_new
                    except OSError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - this prompt's row only
                        failed[str(j)] = one_line(exc, 500)
                if failed and len(failed) == len(wanted):
                    error[i] = next(iter(failed.values()))
                else:
                    member_errors[i] = json.dumps(failed)
                    stage[i] = ""
            except OSError as exc:
                error[i] = one_line(exc, 500)
                # No space or quota left, or a read-only store: not this video's fault, and
                # every other video would fail the same way; the driver stops the run.
                if exc.errno in _STORAGE_ERRNOS:
                    fatal[i] = "storage"
            except Exception as exc:  # noqa: BLE001 - one video's failure must not stop the others
                error[i] = one_line(exc, 500)
        return {
            "item": batch["item"],
            "checksum": checksum,
            "n_old": n_old,
            "n_new": n_new,
            "member_errors": member_errors,
            "stage": stage,
            "error": error,
            "fatal": fatal,
        }


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _timing(batch: dict[str, np.ndarray], i: int) -> FrameTiming:
    return FrameTiming(
        indices=tuple(int(j) for j in batch["frame_indices"][i]),
        fps=float(batch["video_fps"][i]),
        total_frames=int(batch["video_frames"][i]),
    )


def _model_error(model: str, exc: BaseException) -> str:
    """One line for a model that cannot be loaded. A pickled weight file that holds more than
    tensors is refused by torch.load(weights_only=True) (transformers loads .bin files that
    way), whose own message advises loading it with weights_only=False: not repeated here."""
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        calls = f" (it calls {found.group(1)})" if found else ""
        return (
            f"model {model}: refused to load a pickled weight file that holds more than tensors"
            f"{calls}; it was read with weights_only=True, so nothing in it ran"
        )
    text = one_line(exc, 500)
    return text if str(model) in text else f"model {model}: cannot load: {text}"
