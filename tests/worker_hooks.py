"""The tests' worker hooks (pipelines.hooks), driven by environment variables so that a test can
switch them on for an extraction in this process or in a `linkedout` process it starts (through
`python -m tests.worker_hooks ARGV`, the CLI with these hooks installed). Unset, they do
nothing. The driver reads the variables when it starts the workers and hands them what they
say (an actor's environment is its Ray node's, fixed when Ray started)."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.hooks import WorkerHooks

INVOCATION_LOG_ENV = "LINKEDOUT_INVOCATION_LOG"  # FILE: "<item>\n" appended after each model call
KILL_ITEMS_ENV = "LINKEDOUT_FAULT_KILL_ITEMS"  # a,b: the actor dies (os._exit) on these, every time
KILL_ONCE_ITEMS_ENV = "LINKEDOUT_FAULT_KILL_ONCE_ITEMS"  # a,b: ... only the first time, which
FAULT_MARKER_DIR_ENV = "LINKEDOUT_FAULT_MARKER_DIR"  # is remembered by a marker file in this dir
DELAY_ENV = "LINKEDOUT_FAULT_DELAY_S"  # S: a model call takes S seconds longer (a slow model)
NODE_LOG_ENV = "LINKEDOUT_NODE_LOG"  # FILE: "<role> <node id>" per worker started


class EnvHooks(WorkerHooks):
    """What the tests install: the workers get the Faults the variables describe, or nothing."""

    def for_workers(self) -> Faults | None:
        return Faults.from_env()


@dataclass(frozen=True)
class Faults(WorkerHooks):
    """Count model calls and log where workers run; die the way a segfaulting decoder or an
    OOM-killed worker would (a hard process exit in the middle of a batch: after the model
    call, before the row is written)."""

    invocation_log: str | None = None
    kill_items: frozenset[str] = frozenset()
    kill_once_items: frozenset[str] = frozenset()
    marker_dir: str | None = None
    delay_s: float = 0.0
    node_log: str | None = None

    @classmethod
    def from_env(cls) -> Faults | None:
        env = os.environ
        faults = cls(
            invocation_log=env.get(INVOCATION_LOG_ENV) or None,
            kill_items=frozenset(_csv(env.get(KILL_ITEMS_ENV, ""))),
            kill_once_items=frozenset(_csv(env.get(KILL_ONCE_ITEMS_ENV, ""))),
            marker_dir=env.get(FAULT_MARKER_DIR_ENV) or None,
            delay_s=float(env.get(DELAY_ENV) or 0.0),
            node_log=env.get(NODE_LOG_ENV) or None,
        )
        if faults.kill_once_items and not faults.marker_dir:
            raise ValueError(f"{KILL_ONCE_ITEMS_ENV} needs {FAULT_MARKER_DIR_ENV}")
        return faults if faults != cls() else None

    def worker_started(self, role: str) -> None:
        if self.node_log:
            import ray

            _append(self.node_log, f"{role} {ray.get_runtime_context().get_node_id()}")

    def model_called(self, item: str) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.invocation_log:
            _append(self.invocation_log, item)
        if item in self.kill_items:
            os._exit(1)
        if item in self.kill_once_items and self.marker_dir:
            marker = Path(self.marker_dir) / hashlib.sha256(item.encode()).hexdigest()
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                return
            os._exit(1)


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _csv(value: str) -> list[str]:
    return [v for v in (s.strip() for s in value.split(",")) if v]


if __name__ == "__main__":  # the CLI with these hooks installed
    from pipelines import hooks
    from pipelines.cli import main

    hooks.install(EnvHooks())
    sys.exit(main(sys.argv[1:]))
